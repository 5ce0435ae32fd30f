"""The real MiniLM artifact behind HTTP: the served embeddings equal the in-process Embedder's, whether texts
come alone (and are batched with strangers) or as one list; and `inferopt serve` works end to end."""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.grpc_calls import grpc_infer

from inferopt import Embedder
from inferopt.artifact import load_artifact
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread, free_port, wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def sts_sentences(path: Path, count: int) -> list[str]:
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        columns = line.split("\t")
        for sentence in columns[5:7]:
            seen.setdefault(sentence.strip(), None)
        if len(seen) >= count:
            break
    return list(seen)[:count]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_http_embeddings_equal_in_process_ones(minilm_artifact: Path, stsb_dev: Path) -> None:
    texts = [*sts_sentences(stsb_dev, 63), "an over-long text " * 120]  # the last one is truncated both ways
    with Embedder.from_artifact(minilm_artifact) as embedder:
        reference = embedder.embed(texts)
    model = ServingModel.from_artifact(load_artifact(minilm_artifact))
    config = ServeConfig(cache="off", access_log=False)
    with (
        ServerThread(model, config, ready_timeout_s=120) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        with ThreadPoolExecutor(16) as pool:
            singles = list(pool.map(lambda t: client.post("/v1/embeddings", json={"input": t}), texts))
        listed = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
    assert {r.status_code for r in singles} == {200} and listed.status_code == 200
    alone = np.array([r.json()["data"][0]["embedding"] for r in singles], dtype=np.float32)
    as_list = np.array([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in listed.json()["data"]])
    assert alone.shape == reference.shape == (64, 384)
    assert cosines(alone, reference).min() > 0.9999
    assert cosines(as_list, reference).min() > 0.9999
    assert listed.headers["x-truncated-inputs"] == "1"


def test_grpc_embeddings_equal_in_process_ones(minilm_artifact: Path, stsb_dev: Path) -> None:
    texts = sts_sentences(stsb_dev, 32)
    with Embedder.from_artifact(minilm_artifact) as embedder:
        reference = embedder.embed(texts)
    model = ServingModel.from_artifact(load_artifact(minilm_artifact))
    config = ServeConfig(cache="off", access_log=False, grpc_port=0)
    with ServerThread(model, config, ready_timeout_s=120) as server:
        listed = grpc_infer(server.grpc_target, model.public_name, {"text": texts})["embeddings"]
        singles = np.concatenate(
            [grpc_infer(server.grpc_target, model.public_name, {"text": [t]})["embeddings"] for t in texts[:4]]
        )
    assert listed.shape == (32, 384)
    assert cosines(listed, reference).min() > 0.9999
    assert cosines(singles, reference[:4]).min() > 0.9999


def test_inferopt_serve_command_end_to_end(minilm_artifact: Path) -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFEROPT_CACHE": "off"}
    process = subprocess.Popen(
        [sys.executable, "-m", "inferopt", "serve", str(minilm_artifact), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=120, what="ready")
            response = client.post("/v1/embeddings", json={"input": ["A man is playing a guitar."]})
            models = client.get("/v1/models").json()
            name = models["data"][0]["id"]
            predicted = client.post(f"/v1/models/{name}:predict", json={"instances": ["A man is playing a guitar."]})
            inferred = client.post(
                f"/v2/models/{name}/infer",
                json={
                    "inputs": [
                        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["A man is playing a guitar."]}
                    ]
                },
            )
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=30)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384
    vector = np.asarray(response.json()["data"][0]["embedding"], np.float32)
    # The same text through all three protocols: the same vector (the second and third are cache hits, cache off
    # here: computed again, so equal to float32 rounding of the same run).
    assert predicted.status_code == 200 and inferred.status_code == 200
    np.testing.assert_allclose(np.asarray(predicted.json()["predictions"][0], np.float32), vector, atol=1e-6)
    output = inferred.json()["outputs"][0]
    assert output["name"] == "embeddings" and output["shape"] == [1, 384] and output["datatype"] == "FP32"
    np.testing.assert_allclose(np.asarray(output["data"], np.float32), vector, atol=1e-6)
    assert models["data"][0]["artifact_id"] == load_artifact(minilm_artifact).artifact_id
    assert "ready:" in stderr and '"status":200' in stderr  # the startup line and a JSON access-log line


def test_a_grpc_port_already_taken_ends_inferopt_serve_with_one_line_and_exit_2(minilm_artifact: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "inferopt", "serve", str(minilm_artifact), "--port", str(free_port()),
             "--grpc-port", str(grpc_port), "--no-access-log"],
            cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"error: The server stopped: gRPC could not listen on 127.0.0.1:{grpc_port}" in run.stderr
    assert "Traceback" not in run.stderr


def test_serve_pinned_to_another_artifact_id_refuses_to_start(minilm_artifact: Path) -> None:
    actual = load_artifact(minilm_artifact).artifact_id
    run = subprocess.run(
        [sys.executable, "-m", "inferopt", "serve", str(minilm_artifact), "--port", str(free_port()),
         "--require-id", "0123456789abcdef"],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"--require-id 0123456789abcdef: this artifact is {actual}" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def _measured_on_cuda(artifact: Path, tmp_path: Path) -> Path:
    """The artifact as a GPU host's optimize would have written it: the same files, a CUDA placement."""
    import json
    import shutil

    from inferopt.artifact import write_manifest
    from inferopt.runtime.placement import Placement

    copy = tmp_path / "on-cuda"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    placement = Placement.cuda()
    manifest["runtime"] |= {"placement": placement.to_dict(), "providers": list(placement.providers)}
    write_manifest(copy, manifest)
    return copy


def test_a_gpu_measured_artifact_is_refused_without_a_gpu_and_runs_on_the_cpu_when_asked(
    minilm_artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from inferopt.runtime.placement import Placement, gpu_providers

    if gpu_providers():
        pytest.skip("this machine has a CUDA GPU")
    cpu_measured = load_artifact(minilm_artifact)
    assert cpu_measured.placement == Placement.cpu()  # recorded by optimize, read back
    assert cpu_measured.manifest["runtime"]["placement"]["providers"] == ["CPUExecutionProvider"]
    on_cuda = _measured_on_cuda(minilm_artifact, tmp_path)
    assert load_artifact(on_cuda).placement == Placement.cuda()

    refused = subprocess.run(
        [sys.executable, "-m", "inferopt", "serve", str(on_cuda), "--port", str(free_port()), "--no-access-log"],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "was benchmarked on cuda:0, and this machine lacks onnxruntime's CUDAExecutionProvider" in refused.stderr
    assert "--device cpu" in refused.stderr and "Traceback" not in refused.stderr

    texts = ["A man is playing a guitar.", "Three dogs run on the beach."]
    caplog.set_level(logging.WARNING, logger="inferopt.runtime.placement")
    with Embedder.from_artifact(minilm_artifact) as expected, Embedder.from_artifact(on_cuda, device="cpu") as moved:
        np.testing.assert_allclose(moved.embed(texts), expected.embed(texts), atol=1e-6)
    assert "runs on the CPU (--device cpu): its measured speed no longer applies" in caplog.text
    with pytest.raises(Exception, match="--device 'cuda' is not a choice"):
        Embedder.from_artifact(on_cuda, device="cuda")
