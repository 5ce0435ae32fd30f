"""The real EfficientNet-Lite0, optimized and served: export parity, a calibrated INT8 variant measured against
FP32, and the photo routes (base64 JSON, multipart upload, OIP v2 BYTES) over a real socket, answering what the
in-process predictor answers, with every bad image refused alone."""

from __future__ import annotations

import base64
import importlib.util
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from rich.console import Console
from tests.grpc_calls import grpc_infer

import inferopt
from inferopt.artifact import load_artifact
from inferopt.config import OptimizeConfig
from inferopt.hardware import cpu_info
from inferopt.optimize import Outcome, run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.int8_static import StaticInt8Config
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import ServerThread
from inferopt.serve.wire.oip_v2 import encode_infer_request

pytest.importorskip("efficientnet_lite_pytorch")
pytestmark = [
    pytest.mark.slow,
    # Found, not imported: foolbox's __init__ needs eagerpy; only its photo files are used.
    pytest.mark.skipif(importlib.util.find_spec("foolbox") is None, reason="the built-in ImageNet photos"),
]
# As optimize's presets build it: per-channel weights, 7-bit on a CPU without VNNI (saturation).
STATIC = StaticInt8Config(name="int8-static-percentile", op_types=(), calibration_method="percentile",
                          calibration_items=64, reduce_range=not cpu_info().has_int8_dot)  # fmt: skip


@pytest.fixture(scope="module")
def optimized(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out = tmp_path_factory.mktemp("image") / "out"
    config = OptimizeConfig(
        task="image-classification", out=out, quick=True, recipes=(GraphConfig(), STATIC), max_eval_texts=96
    )
    return run_optimize(config, Console(quiet=True))


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    from inferopt.tasks.image_classification.evaldata import builtin_photos

    return [path.read_bytes() for path, _ in builtin_photos()[:6]]


def test_the_export_matches_torch_and_int8_is_measured_against_fp32(optimized: Outcome) -> None:
    result = optimized.result
    export = result.export
    assert export["parity_min_cosine"] > 0.9999, export
    fp32, int8 = result.variant("onnx-fp32"), result.variant("int8-static-percentile")
    assert fp32.accuracy is not None and fp32.accuracy.get("top1_agreement") == 1.0
    assert int8.accuracy is not None and int8.notes["calibration_items"] == 64
    # Calibrated on other photos than these: near FP32 but not at it. Measured on the AVX2 host: top-1
    # agreement 0.95-1.0 (0.95 also when calibrated on the eval photos themselves), top-5 overlap ~0.84.
    assert 0.85 <= int8.accuracy.get("top1_agreement") <= 1.0  # type: ignore[operator]
    assert int8.accuracy.get("top5_overlap") >= 0.65  # type: ignore[operator]
    assert int8.accuracy.get("mean_cosine") >= 0.85  # type: ignore[operator]
    assert result.selection is not None
    chosen = result.variant(result.selection.chosen)  # type: ignore[arg-type]
    assert chosen.accuracy.get("top1_agreement") >= 0.99  # type: ignore[union-attr,operator]
    if int8.accuracy.get("top1_agreement") < 0.99:  # type: ignore[operator]
        assert result.selection.chosen == "onnx-fp32"
    assert result.variant("onnx-fp32").accuracy.metric is not None  # top-1 accuracy on the 20 labelled photos


def test_served_top5_equals_in_process_top5_on_every_route(optimized: Outcome, photos: list[bytes]) -> None:
    artifact = load_artifact(optimized.artifact_dir)  # type: ignore[arg-type]
    with inferopt.Predictor.from_artifact(artifact) as predictor:
        expected = predictor.predict(photos)
    assert expected[0]["top_k"][0]["label"] == "bull mastiff"  # imagenet_00_243.jpg is class 243
    name = artifact.model_name
    from inferopt.tasks.image_classification.evaldata import builtin_photos

    unseen = builtin_photos()[6][0].read_bytes()
    with inferopt.Predictor.from_artifact(artifact) as predictor:
        (unseen_expected,) = predictor.predict([unseen])
    instances = [{"b64": base64.b64encode(p).decode()} for p in photos]
    files = [("images", (f"photo{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]
    served = serve_artifact(optimized.artifact_dir, drift_min_items=8, grpc_port=0)
    with served as server, httpx.Client(base_url=server.url, timeout=60) as client:
        as_json = client.post(f"/v1/models/{name}:predict", json={"instances": instances})
        uploaded = client.post(f"/v1/models/{name}:predict", files=files)
        top2 = client.post(f"/v1/models/{name}:predict?top_k=2", files=files[:1])
        top3 = client.post(f"/v1/models/{name}:predict", json={"instances": instances[:1], "parameters": {"top_k": 3}})
        texts = [base64.b64encode(p).decode() for p in photos]
        v2 = client.post(f"/v2/models/{name}/infer", content=encode_infer_request({"image": texts}))
        metadata = client.get(f"/v2/models/{name}").json()
        drift = client.get("/v1/drift").json()
        # Over gRPC the files travel as raw bytes, not base64: the six (cached by now) and one it has not seen.
        over_grpc = grpc_infer(server.grpc_target, name, {"image": [*photos, unseen]})["logits"]
    # Six photos the model ran, and photo 0 again for each other top_k (a cache hit is not counted).
    assert drift["ready"] and drift["window"]["items"] == 8 and drift["reference"]["items"] == 96, drift
    assert set(drift["signals"]) == {"input.brightness", "input.contrast", "output.top1_probability"}
    for response in (as_json, uploaded, top2, top3, v2):
        assert response.status_code == 200, response.text
    assert as_json.json()["predictions"] == uploaded.json()["predictions"]
    for got, want in zip(as_json.json()["predictions"], expected, strict=True):
        assert [c["index"] for c in got["top_k"]] == [c["index"] for c in want["top_k"]]
        np.testing.assert_allclose([c["score"] for c in got["top_k"]], [c["score"] for c in want["top_k"]], atol=1e-4)
    assert [c["index"] for c in top2.json()["predictions"][0]["top_k"]] == [
        c["index"] for c in expected[0]["top_k"][:2]
    ]
    assert len(top3.json()["predictions"][0]["top_k"]) == 3
    logits = np.asarray(v2.json()["outputs"][0]["data"]).reshape(len(photos), 1000)
    assert [int(i) for i in logits.argmax(axis=1)] == [p["top_k"][0]["index"] for p in expected]
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    np.testing.assert_allclose(over_grpc[:-1], logits, atol=1e-5)
    assert int(over_grpc[-1].argmax()) == unseen_expected["top_k"][0]["index"]


def test_darker_photos_move_the_brightness_drift(optimized: Outcome, photos: list[bytes]) -> None:
    name = load_artifact(optimized.artifact_dir).model_name  # type: ignore[arg-type]
    darker = [
        encoded(ImageEnhance.Brightness(Image.open(io.BytesIO(p)).convert("RGB")).enhance(0.3), "JPEG") for p in photos
    ]
    figures = []
    with serve_artifact(optimized.artifact_dir, cache="off", drift_window=6, drift_min_items=6) as server:
        for sent in (photos, darker):  # the second six replace the first in the window
            instances = [{"b64": base64.b64encode(p).decode()} for p in sent]
            assert (
                httpx.post(f"{server.url}/v1/models/{name}:predict", json={"instances": instances}).status_code == 200
            )
            figures.append(httpx.get(f"{server.url}/v1/drift").json()["signals"]["input.brightness"])
            time.sleep(1.1)  # the figures are recomputed at most once a second
    before, after = figures
    assert after["live_mean"] < before["live_mean"] - 0.5  # normalized pixels: a much darker mean
    assert after["ks"] > before["ks"] + 0.3 and after["ks"] > 0.8


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_each_bad_image_is_a_422_that_names_it_and_disturbs_no_other(optimized: Outcome, photos: list[bytes]) -> None:
    name = load_artifact(optimized.artifact_dir).model_name  # type: ignore[arg-type]
    good = {"b64": base64.b64encode(photos[1]).decode()}
    bad = {
        "truncated": {"b64": base64.b64encode(photos[0][:2000]).decode()},
        "not an image": {"b64": base64.b64encode(b"%PDF-1.7 hello").decode()},
        "1x1": {"b64": base64.b64encode(encoded(Image.new("RGB", (1, 1)), "PNG")).decode()},
        "not valid base64": {"b64": "@@@"},
        'must be {"b64"': {"image": "x"},
    }
    with (
        serve_artifact(optimized.artifact_dir, max_wait_ms=20) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        url = f"/v1/models/{name}:predict"

        def send(body: dict) -> httpx.Response:
            return c.post(url, json=body)

        with ThreadPoolExecutor(8) as pool:  # good and bad requests land in the same batches
            good_calls = [pool.submit(send, {"instances": [good]}) for _ in range(6)]
            bad_calls = {reason: pool.submit(send, {"instances": [good, body]}) for reason, body in bad.items()}
        empty = c.post(url, json={"instances": []})
        form_without_files = c.post(url, data={"top_k": "2"}, files={})
        bad_k = c.post(url, json={"instances": [good], "parameters": {"top_k": 0}})
    assert all(call.result().status_code == 200 for call in good_calls)
    for reason, call in bad_calls.items():
        response = call.result()
        assert response.status_code == 422, (reason, response.text)
        assert reason in response.json()["error"] and "instances[1]" in response.json()["error"]
    assert empty.status_code == 422 and "empty" in empty.json()["error"]
    assert form_without_files.status_code in (400, 422)
    assert bad_k.status_code == 422 and "top_k" in bad_k.json()["error"]


def serve_artifact(path: Path | None, **config: object) -> ServerThread:
    assert path is not None
    model = ServingModel.from_artifact(load_artifact(path))
    return ServerThread(model, ServeConfig(**({"access_log": False} | config)), ready_timeout_s=120)  # type: ignore[arg-type]


def test_generated_input_on_every_route_never_gets_a_5xx(optimized: Outcome) -> None:
    from tests.fuzz import everything

    with serve_artifact(optimized.artifact_dir, grpc_port=0) as server:
        seen = everything(server, examples=20)
    assert seen["POST /v1/models/{name}:predict"][422] > 0
    assert seen["grpc"]["INVALID_ARGUMENT"] > 0
