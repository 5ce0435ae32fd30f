"""The optimize pipeline end to end on a tiny BERT built here: export, fusions, INT8, selection, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tests.tiny_model import build_tiny_bert

from inferopt.artifact import load_artifact
from inferopt.config import Budget, OptimizeConfig
from inferopt.engine import Embedder
from inferopt.errors import BudgetNotMet
from inferopt.hardware import cpu_info
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.int8_dynamic import DynamicInt8Config
from inferopt.recipes.torch_eager import TorchEagerConfig


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer_file: Path) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), minilm_tokenizer_file)


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "texts.txt"
    path.write_text("\n".join(f"sentence {i} about " + "things " * (i % 9) for i in range(40)), encoding="utf-8")
    return path


def _config(tiny_dir: Path, texts_file: Path, out: Path, **kw: object) -> OptimizeConfig:
    base = {"model_dir": tiny_dir, "data": texts_file, "out": out, "quick": True}
    recipes = (
        TorchEagerConfig(),
        GraphConfig(name="onnx-fused", transformer_fusions=True),
        DynamicInt8Config.for_cpu(cpu_info()),
    )
    return OptimizeConfig(**(base | {"recipes": recipes} | kw))  # type: ignore[arg-type]


def test_tiny_model_end_to_end(tiny_dir: Path, texts_file: Path, tmp_path: Path) -> None:
    outcome = run_optimize(_config(tiny_dir, texts_file, tmp_path / "out"), Console(quiet=True))
    assert outcome.artifact_dir is not None
    result = outcome.result
    assert result.export["parity_mean_cosine"] >= 0.9999
    fused = result.variant("onnx-fused")
    assert fused.notes["fused_ops"] == {
        "Attention": 2,
        "LayerNormalization": 4,
        "SkipLayerNormalization": 0,
        "BiasGelu": 2,
        "EmbedLayerNormalization": 1,
    }
    assert fused.accuracy is not None and fused.accuracy.fidelity.mean_cosine > 0.9999
    assert result.variant("torch-fp32").servable is False
    assert result.selection is not None and result.selection.chosen in {"onnx-fused", "int8-per-channel"}
    for name in ("report.json", "results.csv", "report.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["torch-fp32", "onnx-fused", "int8-per-channel"]
    assert "<img" in (tmp_path / "out" / "report.html").read_text()

    artifact = load_artifact(outcome.artifact_dir)
    assert artifact.manifest["recipe"]["name"] == result.selection.chosen
    assert artifact.manifest["preprocessing"]["max_length"] == 64
    with Embedder.from_artifact(artifact) as embedder:
        vectors = embedder.embed(["hello there", "a second sentence"])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_unmeetable_budget_writes_report_but_no_artifact(tiny_dir: Path, texts_file: Path, tmp_path: Path) -> None:
    config = _config(
        tiny_dir,
        texts_file,
        tmp_path / "out",
        budget=Budget(1.0, None, None),
        recipes=(DynamicInt8Config.study_default(),),
    )
    with pytest.raises(BudgetNotMet, match=r"int8-study-default: mean cosine .* < 1.0"):
        run_optimize(config, Console(quiet=True))
    assert (tmp_path / "out" / "report.json").exists()
    assert not (tmp_path / "out" / "artifact").exists()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["selection"]["chosen"] is None
