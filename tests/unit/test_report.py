"""The report: the verdict and the budget first, the task's own measures as columns, tables that fit the page,
and plot labels that do not overlap."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from matplotlib.text import Text

from inferopt.accuracy.report import AccuracyReport
from inferopt.bench.harness import BenchResult, SweepPoint
from inferopt.report.html import write_html
from inferopt.report.plots import new_figure, place_labels
from inferopt.results import RunResult, VariantResult
from inferopt.select import Selection
from inferopt.tasks.tensor.metrics import TensorMetrics
from inferopt.tasks.text_embedding.metrics import TextEmbeddingMetrics


def variant(name: str, mean: float, speed: float, **extra: float | None) -> VariantResult:
    measures = {"mean_cosine": mean, "p1_cosine": mean, "min_cosine": mean - 0.01, "sqnr_db": 30.0} | extra
    bench = BenchResult(
        {"p50": 1.0, "p99": 2.0}, [1.0, 1.1, 0.9], [SweepPoint(1, 2, 32, speed, 100, 1.0)], 1, 1.0, 1.0, 0.05
    )
    return VariantResult(
        name, {"kind": "graph"}, "onnxruntime", True, accuracy=AccuracyReport(measures, n=10), bench=bench
    )


def run_result(metrics: object, variants: list[VariantResult], chosen: str | None, **budget: float) -> RunResult:
    return RunResult(
        task="tensor",
        model_name="m",
        model_location="x",
        data_name="d",
        data_summary="10 rows",
        data_items=10,
        budget=budget or {"mean_cosine": 0.995, "min_cosine": 0.98},
        measures=metrics.measures,  # type: ignore[attr-defined]
        environment={},
        export={},
        variants=variants,
        selection=Selection(chosen, {v.name: ["mean cosine short"] for v in variants if v.name != chosen}),
    )


def test_the_verdict_and_the_budget_come_before_any_table(tmp_path: Path) -> None:
    result = run_result(TensorMetrics(), [variant("onnx-fp32", 1.0, 100.0, argmax_agreement=1.0)], "onnx-fp32")
    page = write_html(result, tmp_path / "r.html").read_text()
    verdict, first_table = page.index('class="verdict"'), page.index("<table")
    assert verdict < first_table
    assert "Chosen: <b>onnx-fp32</b>" in page[verdict:first_table]
    assert "mean cosine &gt;= 0.995, min cosine &gt;= 0.98" in page[verdict:first_table]
    assert page.count('<div class="scroll"><table>') == 2  # accuracy and speed, each scrolling inside itself
    assert "<th>argmax agree</th>" in page  # the tensor task's own measure


def test_text_reports_show_the_task_metric_and_no_argmax(tmp_path: Path) -> None:
    fp32 = variant("onnx-fp32", 1.0, 100.0, metric_drop=0.0, max_abs_error=0.0)
    result = run_result(TextEmbeddingMetrics(), [fp32], "onnx-fp32")
    page = write_html(result, tmp_path / "r.html").read_text()
    assert "<th>metric Δ</th>" in page and "argmax" not in page


def test_no_artifact_says_why_first(tmp_path: Path) -> None:
    result = run_result(TensorMetrics(), [variant("int8", 0.9, 100.0)], None)
    page = write_html(result, tmp_path / "r.html").read_text()
    assert page.index("<b>No artifact</b>") < page.index("<table")


@pytest.mark.parametrize("spread", [0.0, 0.0004, 0.003])
def test_labels_of_crowded_points_do_not_overlap(spread: float) -> None:
    fig, ax = new_figure((8.5, 5.0))
    # The demo's situation: a dozen variants, several within 1% of each other in both accuracy and speed.
    points = [(1800 + 15 * i, 0.995 + spread * (i % 3), f"int8-variant-number-{i}") for i in range(8)]
    points += [(400.0, 1.0, "torch-fp32"), (800.0, 1.0, "onnx-fp32"), (820.0, 1.0, "onnx-fused")]
    for x, y, _ in points:
        ax.scatter([x], [y])
    ax.margins(x=0.18, y=0.12)
    place_labels(fig, ax, points)
    fig.canvas.draw()  # as saved: measure where the labels really are, not where the placer thought
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text() in {p[2] for p in points}]
    assert sorted(t.get_text() for t in labels) == sorted(p[2] for p in points)
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    overlapping = [
        (labels[a].get_text(), labels[b].get_text())
        for a, b in itertools.combinations(range(len(boxes)), 2)
        if boxes[a].overlaps(boxes[b])
    ]
    assert overlapping == []
