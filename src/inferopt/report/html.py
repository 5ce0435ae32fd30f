"""A self-contained report.html: the verdict and the budget first, then an accuracy table and a speed table
(each fits the page, scrolling sideways inside itself if it must), the plots, and the run's environment."""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path

from inferopt.bench.stats import format_ms
from inferopt.report import plots
from inferopt.report.columns import budget_text, shown_measures
from inferopt.report.students import student_lines
from inferopt.results import RunResult, VariantResult

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;color:#222;max-width:1100px;padding:0 1rem}
.verdict{font-size:1.1rem;padding:.6rem .9rem;border-radius:6px;background:#e8f7e8;border:1px solid #9c9}
.verdict.none{background:#fdecea;border-color:#e99}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:.4rem 0 1.2rem}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.chosen{background:#e8f7e8}
td.miss{color:#b00}img{max-width:100%;display:block;margin:.5rem 0 1.5rem}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _verdict(result: RunResult, v: VariantResult) -> str:
    selection = result.selection
    if v.error:
        return f'<td class="miss">build failed: {_esc(v.error)}</td>'
    if selection is None or not v.accuracy:
        return "<td>-</td>"
    if selection.chosen == v.name:
        return "<td><b>chosen</b></td>"
    if not selection.passed(v.name):
        return f'<td class="miss">{_esc("; ".join(selection.failures[v.name]))}</td>'
    return "<td>ok</td>" if v.servable else "<td>ok (not servable)</td>"


def _row(result: RunResult, v: VariantResult, cells: list[str]) -> str:
    chosen = result.selection is not None and result.selection.chosen == v.name
    return f"<tr{' class=chosen' if chosen else ''}><td>{_esc(v.name)}</td>{''.join(cells)}</tr>"


def accuracy_table(result: RunResult) -> str:
    measures = shown_measures(result)
    head = "".join(f"<th>{_esc(m.label)}</th>" for m in measures)
    rows = []
    for v in result.variants:
        values = [m.format(v.accuracy.get(m.name)) if v.accuracy else "-" for m in measures]
        metric = f"{v.accuracy.metric:.2f}" if v.accuracy and v.accuracy.metric is not None else "-"
        cells = [f"<td>{_esc(x)}</td>" for x in values] + [f"<td>{metric}</td>", _verdict(result, v)]
        rows.append(_row(result, v, cells))
    metric_head = _esc((result.metric_name or "metric").replace("_x100", " x100").replace("_", " "))
    header = f"<tr><th>variant</th>{head}<th>{metric_head}</th><th>budget</th></tr>"
    return f'<div class="scroll"><table>{header}{"".join(rows)}</table></div>'


def speed_table(result: RunResult) -> str:
    head = ("p50 ms", "p99 ms", "best items/s", "final rounds (median)", "layout", "MB", "peak RSS MB", "$/1M")
    rows = []
    for v in result.variants:
        b = v.bench
        if b is None:
            rows.append(_row(result, v, ['<td colspan="8">-</td>']))
            continue
        values = (
            format_ms(b.latency_ms.get("p50")),
            format_ms(b.latency_ms.get("p99")),
            f"{b.best.items_per_second:,.0f}",
            f"{statistics.median(b.rounds):,.0f}" if b.rounds else "-",
            b.best.settings.label,
            f"{b.size_bytes / 2**20:.1f}",
            f"{b.peak_rss_mb:,.0f}",
            "n/a" if b.cost_per_million is None else f"{b.cost_per_million:.4f}",
        )
        rows.append(_row(result, v, [f"<td>{_esc(x)}</td>" for x in values]))
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<div class="scroll"><table><tr><th>variant</th>{header}</tr>{"".join(rows)}</table></div>'


def students_section(result: RunResult) -> str:
    lines = student_lines(result)
    if not lines:
        return ""
    head = ("student", "then", "pruned", "distilled", "MB", "items/s", "x fastest teacher", "fidelity", "verdict")
    rows = []
    for line in lines:
        values = (
            line.name,
            line.then,
            line.shape,
            line.training,
            "-" if line.size_mb is None else f"{line.size_mb:.1f}",
            "-" if line.items_per_second is None else f"{line.items_per_second:,.0f}",
            "-" if line.speedup is None else f"{line.speedup:.2f}x",
            line.fidelity,
            line.verdict,
        )
        rows.append("<tr>" + "".join(f"<td>{_esc(x)}</td>" for x in values) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return (
        "<h2>Students (pruned + distilled), against the teacher's FP32</h2>"
        f'<div class="scroll"><table><tr>{header}</tr>{"".join(rows)}</table></div>'
    )


def _verdict_line(result: RunResult) -> str:
    selection = result.selection
    budget = _esc(budget_text(result))
    if selection is not None and selection.chosen:
        chosen = result.variant(selection.chosen)
        best = chosen.bench.best if chosen.bench else None
        speed = f", {best.items_per_second:,.0f} items/s ({best.settings.label})" if best else ""
        tied = (
            "<br>Pinned by <code>--variant</code> (inside the budget), not picked by speed."
            if selection.pinned
            else f"<br>Tied on speed within {selection.noise:.1%}: {_esc(', '.join(selection.tied))}; the higher "
            "fidelity won."
            if len(selection.tied) > 1
            else ""
        )
        return f'<p class="verdict">Chosen: <b>{_esc(selection.chosen)}</b>{speed}. Budget: {budget}.{tied}</p>'
    why = _esc(result.export_error) if result.export_error else "no variant met the budget"
    return f'<p class="verdict none"><b>No artifact</b>: {why}. Budget: {budget}.</p>'


def write_html(result: RunResult, path: Path) -> Path:
    figures = ""
    if result.measured:
        figures = (
            _img(plots.accuracy_vs_throughput(result), "accuracy vs throughput")
            + _img(plots.throughput_vs_batch(result), "throughput vs batch size")
            + _img(plots.latency_distribution(result), "latency distribution")
        )
    title = f"inferopt report: {_esc(result.model_name)}"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>inferopt optimize: {_esc(result.model_name)} <small>({_esc(result.task)})</small></h1>
{_verdict_line(result)}
<p>Eval data: {_esc(result.data_name)} ({_esc(result.data_summary)}). Accuracy is the worse of two batchings
(as a busy server groups items, and mixed batches of 64 padded to their longest). Run time {result.seconds:.0f} s.</p>
<h2>Accuracy against FP32</h2>{accuracy_table(result)}
<h2>Speed</h2>{speed_table(result)}
{students_section(result)}
<h2>Plots</h2>{figures}
<h2>Environment</h2><pre>{_esc(json.dumps(result.environment, indent=2))}</pre>
<h2>Export</h2><pre>{_esc(json.dumps(result.export, indent=2))}</pre>
</body></html>"""
    path.write_text(body, encoding="utf-8")
    return path
