"""Placement: round trip through the manifest's JSON, what a machine lacks, and the guard against onnxruntime's
silent fall-back to the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferopt.runtime.placement import CPU, CUDA, TENSORRT, Placement, PlacementUnavailable, missing, require


@pytest.mark.parametrize(
    "placement",
    [Placement.cpu(), Placement.cuda(1), Placement.tensorrt(0, precision="int8"), Placement.tensorrt(precision="fp32")],
    ids=["cpu", "cuda", "tensorrt-int8", "tensorrt-fp32"],
)
def test_a_placement_round_trips_through_json(placement: Placement) -> None:
    import json

    assert Placement.from_dict(json.loads(json.dumps(placement.to_dict()))) == placement


def test_labels_and_providers() -> None:
    assert Placement.cpu().label == "cpu" and Placement.cpu().providers == (CPU,)
    assert Placement.cuda(1).label == "cuda:1" and Placement.cuda().providers == (CUDA, CPU)
    trt = Placement.tensorrt(precision="fp16")
    assert trt.label == "tensorrt:0 fp16" and trt.providers == (TENSORRT, CUDA, CPU)
    assert trt.batch_buckets == (1, 2, 4, 8, 16, 32, 64)  # TensorRT builds engines for known shapes


def test_provider_options_follow_the_placement(tmp_path: Path) -> None:
    (trt_name, trt), (cuda_name, cuda), (cpu_name, cpu) = Placement.tensorrt(2, precision="int8").session_providers(
        tmp_path
    )
    assert (trt_name, cuda_name, cpu_name) == (TENSORRT, CUDA, CPU)
    assert trt["device_id"] == "2" and trt["trt_fp16_enable"] == "1" and trt["trt_int8_enable"] == "1"
    assert trt["trt_engine_cache_enable"] == "1" and trt["trt_engine_cache_path"] == str(tmp_path)
    assert cuda["device_id"] == "2" and cpu == {}
    assert Placement.cpu().session_providers() == [(CPU, {})]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"device": "tpu"}, "device must be one of cpu, cuda"),
        ({"device": "cpu", "providers": (CUDA, CPU)}, "runs on CPUExecutionProvider only"),
        ({"device": "cuda", "providers": (CPU,)}, "starts with TensorrtExecutionProvider or CUDAExecutionProvider"),
        ({"providers": ()}, "at least one execution provider"),
        ({"batch_buckets": (4, 2)}, "increasing positive sizes"),
        ({"device_id": "1"}, "device_id must be a whole number >= 0, not '1'"),
        ({"version": -1}, "version must be a whole number"),
        ({"device": "cuda", "providers": (TENSORRT,), "tensorrt_precision": "int4"}, "fp32, fp16 or int8"),
    ],
)
def test_a_placement_that_cannot_be_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Placement(**fields)  # type: ignore[arg-type]


def test_a_manifest_from_a_newer_inferopt_names_the_fields_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown placement fields streams"):
        Placement.from_dict({**Placement.cpu().to_dict(), "streams": 2})


def test_what_a_machine_lacks_is_named() -> None:
    assert missing(Placement.cpu(), [CPU], gpus=0) == []
    assert missing(Placement.cuda(), [CPU], gpus=0) == [
        "onnxruntime's CUDAExecutionProvider",
        "an NVIDIA GPU (nvidia-smi finds none)",
    ]
    assert missing(Placement.tensorrt(), [CUDA, CPU], gpus=1) == ["onnxruntime's TensorrtExecutionProvider"]
    assert missing(Placement.cuda(3), [CUDA, CPU], gpus=2) == [
        "GPU 3 (this process sees 2; CUDA_VISIBLE_DEVICES may narrow them)"
    ]
    assert missing(Placement.cuda(1), [CUDA, CPU], gpus=2) == []


@pytest.mark.parametrize(("visible", "seen"), [(None, 4), ("", 0), ("2", 1), ("0,3", 2), ("1,-1,2", 1), ("-1", 0)])
def test_cuda_visible_devices_narrows_the_gpus(monkeypatch: pytest.MonkeyPatch, visible: str | None, seen: int) -> None:
    from inferopt.runtime.placement import visible_gpus

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus(4) == seen


def test_require_refuses_a_gpu_placement_on_a_machine_without_one() -> None:
    import onnxruntime as ort

    from inferopt.hardware import gpu_info

    if CUDA in ort.get_available_providers() and gpu_info():
        pytest.skip("this machine has a CUDA GPU")
    require(Placement.cpu())  # always there
    with pytest.raises(PlacementUnavailable) as refused:
        require(Placement.cuda(), "build/x")
    text = str(refused.value)
    assert text.startswith("build/x was benchmarked on cuda:0, and this machine lacks ")
    assert "pip install 'inferopt[gpu]'" in text and "--device cpu" in text


def test_a_session_that_falls_back_to_the_cpu_is_refused(tmp_path: Path) -> None:
    """Asked for CUDA where it is missing, onnxruntime warns and runs on the CPU; the backend refuses instead."""
    import onnxruntime as ort

    from inferopt.runtime.onnx import OnnxBackend

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    model = _identity_model(tmp_path / "m.onnx")
    assert OnnxBackend(model).info()["providers"] == [CPU]  # the default placement: the CPU, and only it
    with pytest.raises(PlacementUnavailable, match=r"could not start CUDAExecutionProvider for m\.onnx"):
        OnnxBackend(model, placement=Placement.cuda())


def _identity_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_the_engine_cache_is_keyed_by_the_model_and_the_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferopt.errors import InferoptError
    from inferopt.runtime.placement import engine_cache_dir

    monkeypatch.setenv("INFEROPT_ENGINE_CACHE", str(tmp_path / "engines"))
    model = _identity_model(tmp_path / "m.onnx")
    fp16 = engine_cache_dir(model, Placement.tensorrt(precision="fp16"))
    assert fp16.is_dir() and fp16.parent == tmp_path / "engines"
    assert engine_cache_dir(model, Placement.tensorrt(precision="fp16")) == fp16  # the same engines next time
    assert engine_cache_dir(model, Placement.tensorrt(precision="fp32")) != fp16
    model.write_bytes(model.read_bytes() + b" ")  # another model in the same file
    assert engine_cache_dir(model, Placement.tensorrt(precision="fp16")) != fp16
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("INFEROPT_ENGINE_CACHE", str(tmp_path / "file"))
    with pytest.raises(InferoptError, match=r"engine cache .* cannot be created"):
        engine_cache_dir(model, Placement.tensorrt())
