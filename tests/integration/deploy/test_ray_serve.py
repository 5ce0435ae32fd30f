"""A real text artifact deployed on a real local Ray (in this process, on loopback): requests through Ray Serve's HTTP
proxy get the answers `inferopt serve` gives for the same artifact, over REST and gRPC, on every protocol's route,
with inferopt's health, metadata, errors and /metrics; texts sent one per request are batched with strangers and
still equal. The artifact is a tiny BERT (random weights, MiniLM's real tokenizer) optimized here: a real
text-embedding artifact in ~15 s, where the MiniLM one takes a minute."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from rich.console import Console
from tests.tiny_model import build_tiny_bert

from inferopt import Embedder
from inferopt.artifact import load_artifact
from inferopt.config import OptimizeConfig
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread, free_port

if TYPE_CHECKING:
    from inferopt.deploy.ray import RayDeployment

# Not imported here: deploy.ray.start imports it, after asking for a local cluster on loopback (read on import).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("ray") is None, reason="needs the [ray] extra: pip install 'inferopt[ray]'"),
]

TEXTS = [
    "A man is playing a guitar.",
    "hello there",
    "Ray Serve routes this request to a replica, which batches it with others.",
    "short",
    "The quick brown fox jumps over the lazy dog " * 3,
    "Une phrase en français, pour le tokenizer.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray([item["embedding"] for item in response.json()["data"]], np.float32)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer_file: Path) -> Path:
    work = tmp_path_factory.mktemp("ray-tiny")
    model = build_tiny_bert(work / "model", minilm_tokenizer_file)
    texts = work / "texts.txt"
    texts.write_text("\n".join(f"sentence {i} about " + "things " * (i % 9) for i in range(40)), encoding="utf-8")
    config = OptimizeConfig(model=str(model), data=texts, out=work / "out", quick=True, recipes=(GraphConfig(),))
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


@pytest.fixture(scope="module")
def reference(artifact: Path) -> np.ndarray:
    with Embedder.from_artifact(artifact) as embedder:
        return embedder.embed(TEXTS)


@pytest.fixture(scope="module")
def deployed(artifact: Path) -> Iterator[RayDeployment]:
    """The artifact on Ray Serve: a local cluster started here, one replica, Ray's proxy on a free loopback port.
    Serve and Ray are shut down however the tests end."""
    from inferopt.deploy.ray import RayDeployConfig, start

    replica = ServeConfig(artifact=artifact, cache="off", access_log=False)
    config = RayDeployConfig(serve=replica, port=free_port(), metrics_port=free_port())
    with start(config) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def ray_url(deployed: RayDeployment) -> str:
    return deployed.url


@pytest.fixture(scope="module")
def served(artifact: Path) -> Iterator[ServerThread]:
    """inferopt serve's own server for the same artifact (REST, and gRPC on a free port), in a thread."""
    model = ServingModel.from_artifact(load_artifact(artifact))
    config = ServeConfig(cache="off", access_log=False, grpc_port=0)
    with ServerThread(model, config, ready_timeout_s=60) as server:
        yield server


def test_embeddings_through_ray_equal_inferopt_serve_and_the_in_process_embedder(
    ray_url: str, served: ServerThread, reference: np.ndarray
) -> None:
    with httpx.Client(base_url=ray_url, timeout=30) as ray, httpx.Client(base_url=served.url, timeout=30) as rest:
        through_ray = vectors(ray.post("/v1/embeddings", json={"input": TEXTS}))
        through_rest = vectors(rest.post("/v1/embeddings", json={"input": TEXTS}))
    assert through_ray.shape == reference.shape
    assert cosines(through_ray, reference).min() > 0.9999
    assert cosines(through_ray, through_rest).min() > 0.9999


def test_single_texts_sent_at_once_are_batched_in_the_replica_and_still_equal(
    ray_url: str, reference: np.ndarray
) -> None:
    texts = TEXTS * 4

    def one(text: str) -> np.ndarray:
        with httpx.Client(base_url=ray_url, timeout=30) as client:
            return vectors(client.post("/v1/embeddings", json={"input": text}))[0]

    with ThreadPoolExecutor(len(texts)) as pool:
        got = np.stack(list(pool.map(one, texts)))
    assert cosines(got, np.concatenate([reference] * 4)).min() > 0.9999
    metrics = httpx.get(f"{ray_url}/metrics", timeout=30).text
    count = next(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("inferopt_batch_size_count")
    )
    assert count >= 1  # the replica's own batcher ran them (and its metrics are inferopt's)


def test_kserve_v1_and_oip_v2_through_ray_equal_rest(ray_url: str, served: ServerThread, reference: np.ndarray) -> None:
    name = served.state.require_ready().model.public_name
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]}
    answers = {}
    for where, url in (("ray", ray_url), ("rest", served.url)):
        with httpx.Client(base_url=url, timeout=30) as client:
            predicted = client.post(f"/v1/models/{name}:predict", json={"instances": TEXTS})
            inferred = client.post(f"/v2/models/{name}/infer", json=v2)
        assert predicted.status_code == 200 and inferred.status_code == 200, (where, predicted.text, inferred.text)
        output = inferred.json()["outputs"][0]
        answers[where] = (
            np.asarray(predicted.json()["predictions"], np.float32),
            np.asarray(output["data"], np.float32).reshape(output["shape"]),
        )
    for got in (*answers["ray"], *answers["rest"]):
        assert cosines(got, reference).min() > 0.9999


def test_ray_answers_equal_grpc_ones(ray_url: str, served: ServerThread) -> None:
    grpc_calls = pytest.importorskip("tests.grpc_calls")
    name = served.state.require_ready().model.public_name
    through_grpc = grpc_calls.grpc_infer(served.grpc_target, name, {"text": TEXTS})["embeddings"]
    through_ray = vectors(httpx.post(f"{ray_url}/v1/embeddings", json={"input": TEXTS}, timeout=30))
    assert cosines(np.asarray(through_grpc, np.float32), through_ray).min() > 0.9999


def test_health_metadata_errors_and_metrics_are_inferopts(ray_url: str, served: ServerThread) -> None:
    name = served.state.require_ready().model.public_name
    same = ("/health/live", "/health/ready", "/v2/health/ready", "/v1/models", f"/v2/models/{name}", "/v2/models/nope")
    with httpx.Client(base_url=ray_url, timeout=30) as ray, httpx.Client(base_url=served.url, timeout=30) as rest:
        for path in same:
            via_ray, direct = ray.get(path), rest.get(path)
            assert (via_ray.status_code, via_ray.json()) == (direct.status_code, direct.json()), path
        for body in (b"{not json", b'{"input": 5}'):
            via_ray = ray.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
            direct = rest.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
            assert via_ray.status_code == direct.status_code and via_ray.status_code in (400, 422)
            assert via_ray.json() == direct.json()
        unknown = ray.post("/v1/models/nope:predict", json={"instances": ["x"]})
        assert (
            unknown.status_code == 404
            and unknown.json() == rest.post("/v1/models/nope:predict", json={"instances": ["x"]}).json()
        )
        metrics = ray.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'inferopt_request_duration_seconds_count{route="/v1/embeddings",status="200"}' in metrics.text


def test_with_metrics_port_the_replica_is_scraped_apart_from_the_proxy(deployed: RayDeployment) -> None:
    port = deployed.config.metrics_port
    assert port is not None
    httpx.post(f"{deployed.url}/v1/embeddings", json={"input": "counted"}, timeout=30).raise_for_status()
    direct = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)  # the one replica: local rank 0
    assert direct.status_code == 200 and direct.headers["content-type"].startswith("text/plain")
    line = 'inferopt_request_duration_seconds_count{route="/v1/embeddings",status="200"}'
    assert line in direct.text and "inferopt_batch_size_bucket" in direct.text


def test_under_a_route_prefix_the_same_routes_answer_below_it(deployed: RayDeployment, reference: np.ndarray) -> None:
    from ray import serve

    from inferopt.deploy.ray import application

    config = replace(deployed.config, name="prefixed", route_prefix="/embed", metrics_port=None)
    serve.run(application(config), name=config.name, route_prefix=config.route_prefix)  # a second app, same cluster
    try:
        with httpx.Client(base_url=config.url, timeout=30) as client:
            embedded = vectors(client.post("/v1/embeddings", json={"input": TEXTS}))
            ready = client.get("/health/ready")
            docs = client.get("/docs")
            schema = client.get("/openapi.json")
    finally:
        serve.delete(config.name)
    assert config.url.endswith("/embed") and cosines(embedded, reference).min() > 0.9999
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert docs.status_code == 200 and "/embed/openapi.json" in docs.text  # GETs keep Ray's root_path
    assert schema.status_code == 200 and "/v1/embeddings" in schema.json()["paths"]


def test_a_replica_that_cannot_load_its_artifact_fails_the_deployment_in_one_line(
    deployed: RayDeployment, artifact: Path, tmp_path: Path
) -> None:
    from ray import serve

    from inferopt.deploy.ray import application, replica_failure

    broken = Path(shutil.copytree(artifact, tmp_path / "artifact"))
    model = next(broken.glob("*.onnx"))
    model.write_bytes(model.read_bytes()[:-8] + b"tampered")  # the replica's hash check refuses it
    config = replace(
        deployed.config, name="broken", route_prefix="/broken", metrics_port=None, num_cpus=0.5,
        serve=replace(deployed.config.serve, artifact=broken),
    )  # fmt: skip
    try:
        with pytest.raises(RuntimeError) as failed:
            serve.run(application(config), name=config.name, route_prefix=config.route_prefix)
        reason = replica_failure(serve, config.name, failed.value)
    finally:
        serve.delete(config.name)
    assert "does not match its sha256" in reason and "\n" not in reason
    assert httpx.get(f"{deployed.url}/health/ready", timeout=30).status_code == 200  # the good app still serves
