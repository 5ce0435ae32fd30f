"""The optimize pipeline end to end on a tiny BERT built here: export, fusions, INT8, selection, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tests.tiny_model import build_tiny_bert

import inferopt
from inferopt.artifact import load_artifact
from inferopt.config import Budget, OptimizeConfig
from inferopt.drift.reference import DriftReference
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
    base = {"model": str(tiny_dir), "data": texts_file, "out": out, "quick": True}
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
    assert fused.accuracy is not None and fused.accuracy.get("mean_cosine") > 0.9999
    assert result.variant("torch-fp32").servable is False
    assert result.selection is not None and result.selection.chosen in {"onnx-fused", "int8-per-channel"}
    assert set(result.variant("onnx-fused").accuracy.passes) == {"served", "mixed-64"}  # type: ignore[union-attr]
    for name in ("report.json", "results.csv", "report.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["torch-fp32", "onnx-fused", "int8-per-channel"]
    assert "<img" in (tmp_path / "out" / "report.html").read_text()

    artifact = load_artifact(outcome.artifact_dir)
    assert artifact.manifest["recipe"]["name"] == result.selection.chosen
    assert artifact.manifest["task"]["config"]["max_length"] == 64
    assert artifact.drift_file is not None  # the eval data's input lengths and embedding columns, for serve
    drift = DriftReference.read(artifact.drift_file)
    assert drift.items == result.data_items and len(drift.columns["output.embedding"]) == 8
    assert {"input.tokens", *(f"output.embedding[{j}]" for j in drift.columns["output.embedding"])} == set(
        drift.signals
    )
    with inferopt.Embedder.from_artifact(artifact) as embedder:
        vectors = embedder.embed(["hello there", "a second sentence"])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    with inferopt.Predictor.from_artifact(artifact) as predictor:
        predicted = predictor.predict(["hello there", "a second sentence"])
    np.testing.assert_allclose(np.stack(predicted), vectors, rtol=1e-5)  # the task-neutral API, the same vectors


def test_a_strict_budget_leaves_only_the_fp32_graph_and_it_wins(
    tiny_dir: Path, texts_file: Path, tmp_path: Path
) -> None:
    """INT8 cannot keep 0.99999 of every embedding; the exact FP32 graph can. So the pick is known in advance."""
    config = _config(tiny_dir, texts_file, tmp_path / "out", budget=Budget.of(mean_cosine=0.99999, min_cosine=0.9999))
    outcome = run_optimize(config, Console(quiet=True))
    selection = outcome.result.selection
    assert selection is not None and selection.chosen == "onnx-fused"
    assert "int8-per-channel" in selection.failures and "torch-fp32" not in selection.failures


def test_unmeetable_budget_writes_report_but_no_artifact(tiny_dir: Path, texts_file: Path, tmp_path: Path) -> None:
    config = _config(
        tiny_dir,
        texts_file,
        tmp_path / "out",
        budget=Budget.of(mean_cosine=1.0),
        recipes=(DynamicInt8Config.study_default(),),
    )
    with pytest.raises(BudgetNotMet, match=r"int8-study-default: mean cosine .* < 1.0"):
        run_optimize(config, Console(quiet=True))
    assert (tmp_path / "out" / "report.json").exists()
    assert not (tmp_path / "out" / "artifact").exists()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["selection"]["chosen"] is None
