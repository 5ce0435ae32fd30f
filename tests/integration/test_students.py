"""Students through the whole optimize pipeline: a pruned, distilled all-MiniLM-L6-v2 is exported, fused and
quantized like the original, verified against the teacher's FP32 (not its own), and reported with why it lost;
a model without unlabeled data or without a prunable structure is skipped with the reason; Ctrl-C while a
student trains leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferopt.config import OptimizeConfig
from inferopt.optimize import run_optimize
from inferopt.recipes.graph import GraphConfig
from inferopt.recipes.prune import PruneConfig

pytestmark = pytest.mark.slow
STEPS = 8


@pytest.fixture(scope="module")
def student_run(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> tuple[Path, dict]:
    student = PruneConfig(
        name="student-fused",
        drop_layers=1 / 3,
        distill_minutes=5.0,
        max_steps=STEPS,
        then=GraphConfig(name="fused", transformer_fusions=True),
    )
    # The INT8 form of a student is checked in test_minilm_recipes.py, where nothing is benchmarked.
    recipes = (GraphConfig(name="onnx-fused", transformer_fusions=True), student)
    out = tmp_path_factory.mktemp("students") / "out"
    config = OptimizeConfig(model=str(minilm_dir), out=out, quick=True, recipes=recipes, max_eval_texts=96)
    run_optimize(config)
    return out, json.loads((out / "report.json").read_text())


def test_a_student_is_measured_against_the_teachers_fp32(student_run: tuple[Path, dict]) -> None:
    _, report = student_run
    variants = {v["name"]: v for v in report["variants"]}
    fused = variants["student-fused"]
    notes = fused["notes"]["student"]
    assert notes["layers"] == [4, 6] and len(notes["dropped_layers"]) == 2
    assert notes["parameters"] < notes["teacher_parameters"]
    assert notes["distill"]["steps"] == STEPS and notes["distill"]["stopped"] == "budget"
    assert notes["distill"]["held_out_best"] < notes["distill"]["held_out_before"]
    # Fusions reach the student's 4 layers, and the fused graph is exactly the student's export: yet its
    # fidelity is far below 1, so it is measured against the teacher, not against the student's own FP32.
    assert fused["notes"]["fused_ops"]["Attention"] == 4 and fused["notes"]["fusion_complete"] is True
    assert 0.5 < fused["accuracy"]["measures"]["mean_cosine"] < 0.99
    assert report["selection"]["chosen"] == "onnx-fused"
    assert "student-fused" in report["selection"]["failures"]
    assert notes["export_parity"]["mean_cosine"] >= 0.9999  # the export computes what the student module does


def test_the_report_says_why_each_student_lost(student_run: tuple[Path, dict]) -> None:
    out, _ = student_run
    html = (out / "report.html").read_text()
    assert "Students (pruned + distilled), against the teacher" in html
    assert "4 of 6 layers" in html and f"{STEPS} steps" in html
    assert html.count("lost: missed the budget (mean cosine") == 1


def _two_headed_with(student: PruneConfig, out: Path) -> tuple[dict, dict]:
    """optimize's report for the two-headed tensor module with the FP32 graph and `student`: (report, student)."""
    from inferopt.tasks.base import ModelOptions

    config = OptimizeConfig(
        model="tests.byo_models:two_headed",
        out=out,
        quick=True,
        recipes=(GraphConfig(), student),
        model_options=ModelOptions(example="tests.byo_models:two_headed_examples"),
    )
    run_optimize(config)
    report = json.loads((out / "report.json").read_text())
    return report, next(v for v in report["variants"] if v["name"] == student.name)


def test_a_task_without_unlabeled_data_skips_its_student(tmp_path: Path) -> None:
    report, student = _two_headed_with(PruneConfig(name="student", drop_hidden=0.5), tmp_path / "out")
    assert "the tensor task has no unlabeled data to distill a student on" in student["error"]
    assert report["selection"]["chosen"] == "onnx-fp32"


def test_a_structure_that_cannot_be_pruned_is_named(tmp_path: Path) -> None:
    pruned_only = PruneConfig(name="student", drop_layers=0.5, distill_minutes=0)
    _, student = _two_headed_with(pruned_only, tmp_path / "out")
    assert "TwoHeaded has no list of transformer blocks" in student["error"]


def test_ctrl_c_while_a_student_trains_leaves_nothing_behind(
    tmp_path: Path, risk_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the risk scorer (its whole optimize run takes seconds); the training loop is the same for every task."""
    import inferopt.recipes.distill as distill

    checks = []
    measured = distill._held_out_distance

    def interrupted(*args: object) -> float:
        checks.append(1)
        if len(checks) == 2:  # the first check after training began
            raise KeyboardInterrupt
        return measured(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(distill, "_held_out_distance", interrupted)
    monkeypatch.setattr(distill, "CHECK_STEPS", 2)
    out = tmp_path / "out"
    student = PruneConfig(name="student", drop_hidden=0.5, distill_minutes=5.0)
    config = OptimizeConfig(model=str(risk_model), out=out, quick=True, recipes=(GraphConfig(), student))
    with pytest.raises(KeyboardInterrupt):
        run_optimize(config)
    assert len(checks) == 2
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_a_recommender_student_thins_its_mlp_and_merges_its_rarest_users(tmp_path: Path, recsys_model: Path) -> None:
    from rich.console import Console

    from inferopt.recipes.embedding_int8 import EmbeddingInt8Config

    both = EmbeddingInt8Config(name="int8-tables-matmul", tables=True, linear=True, reduce_range=True)
    student = PruneConfig(name="student", drop_hidden=0.5, drop_rows=0.2, distill_minutes=5.0, max_steps=50, then=both)
    out = tmp_path / "out"
    config = OptimizeConfig(model=str(recsys_model), out=out, quick=True, recipes=(GraphConfig(), student))
    run_optimize(config, Console(quiet=True))
    report = json.loads((out / "report.json").read_text())
    variant = next(v for v in report["variants"] if v["name"] == "student")
    notes = variant["notes"]["student"]
    assert notes["hidden_widths"] == [32, 16]  # NeuMF's MLP, a ModuleList: 64 -> 32 -> 16 became 32 -> 16 -> 16
    # A fifth of the users (the least drawn) share one fallback row; the item tables score the whole catalogue
    # and keep every row.
    assert notes["embedding_rows"] == {"user_gmf": [755, 943], "user_mlp": [755, 943]}
    assert notes["distill"]["steps"] == 50 and notes["distill"]["held_out_best"] < notes["distill"]["held_out_before"]
    assert notes["export_parity"]["min_cosine"] >= 0.9999
    assert set(variant["notes"]["int8_tables"]) == {"user_gmf.table", "user_mlp.table", "item_mlp.weight"}
    overlap = variant["accuracy"]["measures"]["top10_overlap"]
    assert 0.3 < overlap < 0.98  # against the teacher's FP32 top 10, so far from the student's own 1.0
    assert report["selection"]["chosen"] == "onnx-fp32" and "student" in report["selection"]["failures"]
