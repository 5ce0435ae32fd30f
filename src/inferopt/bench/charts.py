"""The two pictures of load testing: latency vs offered load (find-peak) and where a request's time goes
(profile). PNG via matplotlib's Agg backend (no display needed); `.html` wraps the PNG with the numbers."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from inferopt.bench.peak import PeakResult
from inferopt.bench.profile import ProfileResult
from inferopt.errors import InputError
from inferopt.report.plots import new_figure, png_bytes

CHART_SUFFIXES = (".png", ".html")


def check_chart_path(path: Path) -> None:
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise InputError(f"Cannot write a chart to {path}", f"give a file ending in {' or '.join(CHART_SUFFIXES)}")


def latency_vs_load(peak: PeakResult) -> bytes:
    fig, ax = new_figure((8, 4.8))
    steps = sorted(peak.steps, key=lambda s: s.rate)
    rates = [s.rate for s in steps]
    for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^-")):
        values = [s.result.latency_ms.get(key) for s in steps]
        points = [(r, v) for r, v in zip(rates, values, strict=True) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=key, markersize=4)
    for s in steps:
        if not s.passed and s.result.latency_ms.get("p99") is not None:
            ax.plot([s.rate], [s.result.latency_ms["p99"]], "x", color="red", markersize=9)
    ax.axhline(peak.slo_p99_ms, color="red", linestyle=":", label=f"SLO p99 {peak.slo_p99_ms:g} ms")
    if peak.peak_rate is not None:
        ax.axvline(peak.peak_rate, color="green", linestyle=":", label=f"peak {peak.peak_rate:g} req/s")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title("Latency vs load (x = step over the SLO)")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def stage_bars(profile: ProfileResult) -> bytes:
    """Stacked bars: the typical request and, when there are enough requests, the slow (p99+) one."""
    fig, ax = new_figure((8, 4.8))
    rows = profile.breakdown()
    bars = [("typical (p40-p60)", "typical_ms")]
    if rows and rows[0]["slow_ms"] is not None:
        bars.append(("slow (p99+)", "slow_ms"))
    bottoms = [0.0] * len(bars)
    for row in rows:
        heights = [row[key] for _, key in bars]
        ax.bar([label for label, _ in bars], heights, bottom=bottoms, label=row["stage"], width=0.5)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_ylabel("ms per request")
    ax.set_title(f"Where a request's time goes: {profile.source}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png_bytes(fig)


def write_chart(png: bytes, path: Path, title: str, table: list[dict[str, Any]]) -> Path:
    """`path` ending in .png gets the picture; .html gets the picture and the numbers behind it."""
    check_chart_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
        return path
    img = base64.b64encode(png).decode("ascii")
    header = "".join(f"<th>{html.escape(str(k))}</th>" for k in (table[0] if table else {}))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>" for row in table
    )
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><img alt='{html.escape(title)}' src='data:image/png;base64,{img}'>"
        f"<table border='1' cellpadding='4'><tr>{header}</tr>{body}</table>\n",
        encoding="utf-8",
    )
    return path


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items() if k in ("p50", "p90", "p99", "p99_9"))
    return "n/a" if value is None else str(value)
