"""A self-contained report.html: plots embedded as data URIs, tables inline, no external assets."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from inferopt.report import plots
from inferopt.report.tables import CSV_COLUMNS, csv_row
from inferopt.results import RunResult

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}tr.chosen{background:#e8f7e8}img{max-width:100%}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return html.escape("" if value is None else str(value))


def _table(result: RunResult) -> str:
    head = "".join(f"<th>{c}</th>" for c in CSV_COLUMNS)
    rows = []
    chosen = result.selection.chosen if result.selection else None
    for v in result.variants:
        row = csv_row(result, v)
        cls = ' class="chosen"' if v.name == chosen else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in CSV_COLUMNS) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def write_html(result: RunResult, path: Path) -> Path:
    chosen = result.selection.chosen if result.selection else None
    failures = result.selection.failures if result.selection else {}
    verdict = (
        f"Chosen: <b>{html.escape(chosen)}</b>"
        if chosen
        else "<b>No variant met the budget</b>: no artifact was written"
    )
    misses = "".join(f"<li>{html.escape(n)}: {html.escape('; '.join(m))}</li>" for n, m in failures.items())
    figures = ""
    if result.measured:
        figures = (
            _img(plots.accuracy_vs_throughput(result), "accuracy vs throughput")
            + _img(plots.throughput_vs_batch(result), "throughput vs batch size")
            + _img(plots.latency_distribution(result), "latency distribution")
        )
    title = f"inferopt report: {html.escape(result.model_name)}"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>inferopt optimize: {html.escape(result.model_name)}</h1>
<p>Eval data: {html.escape(result.data_name)} ({result.data_texts} texts, {result.data_pairs} scored pairs).
Budget: <code>{html.escape(json.dumps(result.budget))}</code>. {verdict}. Run time {result.seconds:.0f} s.</p>
<ul>{misses}</ul>
<h2>Variants</h2>{_table(result)}
<h2>Plots</h2>{figures}
<h2>Environment</h2><pre>{html.escape(json.dumps(result.environment, indent=2))}</pre>
<h2>Export</h2><pre>{html.escape(json.dumps(result.export, indent=2))}</pre>
</body></html>"""
    path.write_text(body, encoding="utf-8")
    return path
