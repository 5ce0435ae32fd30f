"""The GPU path on a real GPU: the GPU recipes build, run where their placement says, keep their fidelity to
PyTorch FP32, and the artifact is served on the GPU it was measured on. Skipped without a CUDA device
(tests/conftest.py); run with `pytest -m gpu` on a GPU machine with `inferopt[gpu]`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from inferopt.artifact import load_artifact
from inferopt.config import OptimizeConfig
from inferopt.engine import Embedder
from inferopt.optimize import run_optimize
from inferopt.recipes.gpu import GpuConfig
from inferopt.runtime.placement import CUDA, TENSORRT, Placement, gpu_providers

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
TEXTS = ["A man is playing a guitar.", "Three dogs run on the beach.", "The stock market fell sharply today."]


def _optimized(tmp_path: Path, recipe: GpuConfig) -> Path:
    config = OptimizeConfig(out=tmp_path / "out", quick=True, recipes=(recipe,), max_eval_texts=64)
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp16_on_cuda_is_recorded_served_there_and_keeps_fidelity(tmp_path: Path, minilm_artifact: Path) -> None:
    artifact = load_artifact(_optimized(tmp_path, GpuConfig()))
    assert artifact.placement == Placement.cuda()
    assert artifact.manifest["environment"]["gpus"], "the environment record names the GPU"
    with Embedder.from_artifact(artifact) as on_gpu, Embedder.from_artifact(minilm_artifact) as on_cpu:
        assert on_gpu.backends[0].info()["providers"][0] == CUDA
        cosines = _cosines(on_gpu.embed(TEXTS), on_cpu.embed(TEXTS))
    assert cosines.min() >= 0.9995


def test_tensorrt_pads_to_its_buckets_and_keeps_fidelity(tmp_path: Path, minilm_artifact: Path) -> None:
    if TENSORRT not in gpu_providers():
        pytest.skip("this onnxruntime has no TensorRT provider")
    artifact = load_artifact(_optimized(tmp_path, GpuConfig(name="tensorrt-fp16", provider="tensorrt")))
    assert artifact.placement.providers[0] == TENSORRT
    with Embedder.from_artifact(artifact) as on_trt, Embedder.from_artifact(minilm_artifact) as on_cpu:
        info = on_trt.backends[0].info()
        assert info["providers"][0] == TENSORRT and info["batch_buckets"] == [1, 2, 4, 8, 16, 32, 64]
        cosines = _cosines(on_trt.embed(TEXTS * 5), on_cpu.embed(TEXTS * 5))
    assert cosines.min() >= 0.999
