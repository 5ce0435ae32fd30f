"""Bring-your-own models served over real sockets: OIP v2 and KServe v1 round trips equal the in-process
Predictor, rows of a second dynamic axis batch by shape, bad tensors get a 422 naming them without
disturbing the good requests beside them; and the openai client works with any model name."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from rich.console import Console
from tests.grpc_calls import grpc_error, grpc_infer

import inferopt
from inferopt.artifact import load_artifact
from inferopt.config import OptimizeConfig
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.int8_dynamic import DynamicInt8Config
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread, fake_embedding, fake_model
from inferopt.serve.wire.oip_v2 import decode_outputs, encode_infer_request
from inferopt.tasks.base import ModelOptions
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.slow


def optimized(tmp_path_factory: pytest.TempPathFactory, model: str, example: str) -> Path:
    out = tmp_path_factory.mktemp("byo") / "out"
    recipes = (GraphConfig(), DynamicInt8Config(name="int8-dynamic", graph="plain"))
    config = OptimizeConfig(
        model=model, model_options=ModelOptions(example=example), out=out, quick=True, recipes=recipes
    )
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


@pytest.fixture(scope="module")
def two_headed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return optimized(tmp_path_factory, "tests.byo_models:two_headed", "tests.byo_models:two_headed_examples")


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return optimized(tmp_path_factory, "tests.byo_models:lstm_classifier", "tests.byo_models:lstm_examples")


def serve_artifact(path: Path, **config: object) -> ServerThread:
    model = ServingModel.from_artifact(load_artifact(path))
    return ServerThread(model, ServeConfig(**({"access_log": False} | config)), ready_timeout_s=60)  # type: ignore[arg-type]


def rows(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((n, 16)).astype(np.float32),
        "ids": rng.integers(0, 50, (n, 3)).astype(np.int64),
    }


def test_oip_v2_and_kserve_v1_equal_the_in_process_predictor(two_headed: Path) -> None:
    inputs = rows(5, 6)
    with inferopt.Predictor.from_artifact(two_headed) as predictor:
        expected = predictor.outputs([{k: v[i] for k, v in inputs.items()} for i in range(6)])
    name = load_artifact(two_headed).model_name
    with serve_artifact(two_headed) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        metadata = client.get(f"/v2/models/{name}").json()
        inferred = client.post(f"/v2/models/{name}/infer", content=encode_infer_request(inputs))
        instances = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(6)]
        predicted = client.post(f"/v1/models/{name}:predict", json={"instances": instances})
        embeddings = client.post("/v1/embeddings", json={"input": "not a text model"})
    assert [i["name"] for i in metadata["inputs"]] == ["features", "ids"]
    assert [(o["name"], o["shape"]) for o in metadata["outputs"]] == [("output_0", [-1, 4]), ("output_1", [-1])]
    assert inferred.status_code == 200, inferred.text
    got = decode_outputs(inferred.content)
    np.testing.assert_allclose(got["output_0"], expected["output_0"], atol=1e-5)
    np.testing.assert_allclose(got["output_1"], expected["output_1"], atol=1e-5)
    assert predicted.status_code == 200
    first = predicted.json()["predictions"][0]
    np.testing.assert_allclose(first["output_0"], expected["output_0"][0], atol=1e-5)
    assert first["output_1"] == pytest.approx(float(expected["output_1"][0]), abs=1e-5)
    assert embeddings.status_code == 404 and "does not speak openai-embeddings" in embeddings.json()["error"]["message"]


def test_grpc_over_tcp_and_a_unix_socket_equals_the_in_process_predictor(two_headed: Path, tmp_path: Path) -> None:
    inputs = rows(6, 5)
    with inferopt.Predictor.from_artifact(two_headed) as predictor:
        expected = predictor.outputs([{k: v[i] for k, v in inputs.items()} for i in range(5)])
    name = load_artifact(two_headed).model_name
    sock = tmp_path / "grpc.sock"
    with serve_artifact(two_headed, grpc_port=0, grpc_uds=sock) as server:
        for target in (server.grpc_target, f"unix:{sock}"):
            for raw in (True, False):
                got = grpc_infer(target, name, inputs, raw=raw)
                np.testing.assert_allclose(got["output_0"], expected["output_0"], atol=1e-5)
                np.testing.assert_allclose(got["output_1"], expected["output_1"], atol=1e-5)
        wrong_dtype = grpc_error(
            server.grpc_target, name, {**inputs, "features": inputs["features"].astype(np.float64)}
        )
        missing = grpc_error(server.grpc_target, name, {"features": inputs["features"]})
    assert wrong_dtype == ("INVALID_ARGUMENT", "input 'features' is FP64; this model takes FP32")
    assert missing[0] == "INVALID_ARGUMENT" and "takes the inputs ['features', 'ids']" in missing[1]


BAD_TENSORS = [
    ("wrong dtype", {"features": rows(1, 2)["features"].astype(np.float64), "ids": rows(1, 2)["ids"]},
     "input 'features' is FP64; this model takes FP32"),
    ("wrong shape", {"features": np.zeros((2, 15), np.float32), "ids": rows(1, 2)["ids"]},
     "input 'features' has shape [15] per row; this model takes [16]"),
    ("unknown name", {"feats": rows(1, 2)["features"], "ids": rows(1, 2)["ids"]}, "takes the inputs"),
    ("missing input", {"features": rows(1, 2)["features"]}, "takes the inputs ['features', 'ids']"),
    ("text for tensors", {"features": ["a", "b"], "ids": rows(1, 2)["ids"]}, "must be FP32, not BYTES"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "tensors", "words"), BAD_TENSORS, ids=[c[0] for c in BAD_TENSORS])
def test_bad_tensors_are_422_naming_them_and_good_requests_beside_them_are_answered(
    two_headed: Path, case: str, tensors: dict, words: str
) -> None:
    name = load_artifact(two_headed).model_name
    good = rows(9, 4)
    with serve_artifact(two_headed) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        url = f"/v2/models/{name}/infer"
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client.post, url, content=encode_infer_request(good)) for _ in range(6)]
            bad = client.post(url, content=encode_infer_request(tensors))
            answers = [f.result() for f in futures]
    assert bad.status_code == 422 and words in bad.json()["error"], bad.text
    assert {a.status_code for a in answers} == {200}
    first = decode_outputs(answers[0].content)
    for answer in answers[1:]:
        np.testing.assert_allclose(decode_outputs(answer.content)["output_0"], first["output_0"], atol=1e-5)


def test_kserve_bad_instances_name_the_field(two_headed: Path) -> None:
    name = load_artifact(two_headed).model_name
    good = {"features": [0.0] * 16, "ids": [1, 2, 3]}
    with serve_artifact(two_headed) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        url = f"/v1/models/{name}:predict"
        text = client.post(url, json={"instances": [good, "a text"]})
        missing = client.post(url, json={"instances": [{"features": [0.0] * 16}]})
        short = client.post(url, json={"instances": [good | {"ids": [1, 2]}]})
        empty = client.post(url, json={"instances": []})
    assert text.status_code == 422 and "instances[1] must be an object" in text.json()["error"]
    assert missing.status_code == 422 and "missing ['ids']" in missing.json()["error"]
    assert short.status_code == 422 and "instances[0].ids has shape [2]" in short.json()["error"]
    assert empty.status_code == 422 and "empty list" in empty.json()["error"]


def test_rows_of_a_second_dynamic_axis_batch_by_shape(lstm: Path) -> None:
    rng = np.random.default_rng(4)
    short, long = rng.integers(0, 50, (3, 5)), rng.integers(0, 50, (3, 11))
    with inferopt.Predictor.from_artifact(lstm) as predictor:
        expected_short = predictor.outputs([{"tokens": row} for row in short])["output"]
        expected_long = predictor.outputs([{"tokens": row} for row in long])["output"]
    name = load_artifact(lstm).model_name
    with serve_artifact(lstm, cache="off") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        url = f"/v2/models/{name}/infer"
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(client.post, url, content=encode_infer_request({"tokens": short}))
            b = pool.submit(client.post, url, content=encode_infer_request({"tokens": long}))
            answers = [a.result(), b.result()]
    assert [r.status_code for r in answers] == [200, 200]
    np.testing.assert_allclose(decode_outputs(answers[0].content)["output"], expected_short, atol=1e-4)
    np.testing.assert_allclose(decode_outputs(answers[1].content)["output"], expected_long, atol=1e-4)


def test_the_openai_client_works_with_any_model_name(task: TextEmbeddingTask) -> None:
    import openai

    with ServerThread(fake_model(task=task)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        for model in ("text-embedding-3-small", "default"):
            response = client.embeddings.create(model=model, input=["one text", "another"])
            assert response.model == model
            np.testing.assert_array_equal(
                np.asarray(response.data[1].embedding, np.float32), fake_embedding(task, "another")
            )


def test_load_and_profile_speak_each_protocol_to_a_tensor_model(two_headed: Path, tmp_path: Path) -> None:
    from inferopt.bench.loadgen import LoadConfig, run_load
    from inferopt.bench.profile import profile_artifact, profile_url

    inputs = tmp_path / "rows.npz"
    np.savez(inputs, **rows(11, 40))
    name = load_artifact(two_headed).model_name
    with serve_artifact(two_headed) as server:
        v2 = run_load(
            LoadConfig(f"{server.url}/v2/models/{name}/infer", rate=80, duration_s=2, warmup_s=0.5, inputs=inputs)
        )
        v1 = run_load(
            LoadConfig(f"{server.url}/v1/models/{name}:predict", rate=80, duration_s=2, warmup_s=0.5, inputs=inputs)
        )
        profiled = profile_url(
            f"{server.url}/v2/models/{name}/infer",
            [{k: v[i] for k, v in rows(12, 30).items()} for i in range(30)],
            25,
            warmup=5,
        )
    for result in (v2, v1):
        assert result.errors == {} and result.measured >= 80  # ~120 requests were due in the 1.5 s measured
    breakdown = {row["stage"]: row for row in profiled.breakdown()}
    assert breakdown["inference"]["p50_ms"] > 0  # every row distinct: each request ran the model
    in_process = profile_artifact(two_headed, None, 40, warmup=5)  # no inputs: the artifact's own examples
    assert in_process.requests == 40 and in_process.stage_sum_ratio() == pytest.approx(1.0, abs=0.1)


def test_generated_input_on_every_route_never_gets_a_5xx(two_headed: Path) -> None:
    from tests.fuzz import everything

    with serve_artifact(two_headed, grpc_port=0) as server:
        seen = everything(server, examples=30)
    assert seen["POST /v2/models/{name}/infer"][422] > 0 and seen["oip_v2"][200] > 0
    assert seen["grpc"]["INVALID_ARGUMENT"] > 0
