"""The GPU recipes as optimize plans them: offered only with the providers this machine has, each variant
carrying the placement it is benchmarked on, and measured as GPU sessions (one CPU thread each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferopt.accuracy.budget import Budget
from inferopt.bench.harness import thread_layouts
from inferopt.hardware import CpuInfo
from inferopt.recipes.base import config_from_dict, config_to_dict, onnx_variant
from inferopt.recipes.gpu import GpuConfig
from inferopt.recipes.presets import default_recipes
from inferopt.runtime.placement import CPU, CUDA, TENSORRT, Placement

CPU_ONLY = CpuInfo("test cpu", frozenset({"avx2"}), 4, 4)


def names(gpu: tuple[str, ...], *, quick: bool = False) -> list[str]:
    return [r.name for r in default_recipes(CPU_ONLY, "bert", Budget(), quick=quick, torch=True, gpu=gpu)]


def test_gpu_variants_join_the_cpu_ones_only_where_the_providers_are() -> None:
    cpu_only = names(())
    assert not any("cuda" in n or "tensorrt" in n for n in cpu_only)
    assert names((CUDA,)) == [*cpu_only, "onnx-fp32-cuda", "onnx-fp16-cuda"]
    assert names((TENSORRT, CUDA)) == [*cpu_only, "onnx-fp32-cuda", "onnx-fp16-cuda", "tensorrt-fp16"]
    assert names((TENSORRT, CUDA), quick=True) == [*names((), quick=True), "onnx-fp16-cuda", "tensorrt-fp16"]


@pytest.mark.parametrize(
    ("config", "placement"),
    [
        (GpuConfig(), Placement.cuda()),
        (GpuConfig(name="tensorrt-fp16", provider="tensorrt", device_id=1), Placement.tensorrt(1, precision="fp16")),
    ],
)
def test_a_gpu_config_round_trips_and_names_its_placement(config: GpuConfig, placement: Placement) -> None:
    assert config_from_dict(config_to_dict(config)) == config
    assert config.placement == placement


@pytest.mark.parametrize(
    ("fields", "message"), [({"provider": "rocm"}, "cuda, tensorrt"), ({"precision": "int4"}, "fp32 or fp16")]
)
def test_a_gpu_config_that_cannot_be_is_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GpuConfig(**fields)  # type: ignore[arg-type]


def test_gpu_variants_are_measured_as_one_or_two_sessions_of_one_thread(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not opened here")
    on_gpu = onnx_variant("g", GpuConfig(), model, placement=Placement.cuda())
    on_cpu = onnx_variant("c", GpuConfig(), model)
    assert on_cpu.placement.providers == (CPU,) and on_gpu.placement.on_gpu
    assert thread_layouts(on_gpu, cores=16) == [(1, 1), (2, 1)]
    assert thread_layouts(on_cpu, cores=16) == [(1, 16), (16, 1)]
    assert not on_gpu.multi_session and on_cpu.multi_session


def test_the_final_rounds_run_a_contender_where_it_was_benchmarked(tmp_path: Path) -> None:
    from inferopt.optimize import _onnx_variant
    from inferopt.results import VariantResult

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not opened here")
    measured = VariantResult("onnx-fp16-cuda", {}, "onnxruntime", True, model_path=model)
    measured.placement = Placement.tensorrt(1).to_dict()
    assert _onnx_variant(measured).placement == Placement.tensorrt(1)
