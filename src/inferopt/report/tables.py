"""report.json and results.csv."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from inferopt.accuracy.report import ALL_MEASURES
from inferopt.results import RunResult, VariantResult

MEASURE_COLUMNS = tuple(m.name for m in ALL_MEASURES)
CSV_COLUMNS = (
    "variant",
    "runtime",
    "servable",
    "within_budget",
    "chosen",
    *MEASURE_COLUMNS,
    "metric",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p99_9_ms",
    "best_items_per_s",
    "best_sessions",
    "best_threads",
    "best_batch",
    "final_rounds_median",
    "size_mb",
    "peak_rss_mb",
    "added_rss_mb",
    "cost_per_million_usd",
    "build_seconds",
    "error",
)


def finite(value: Any) -> Any:
    """JSON has no Infinity: an exact match's SQNR is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def write_json(result: RunResult, path: Path) -> Path:
    path.write_text(json.dumps(finite(result.to_dict()), indent=2) + "\n", encoding="utf-8")
    return path


def csv_row(result: RunResult, variant: VariantResult) -> dict[str, Any]:
    selection = result.selection
    row: dict[str, Any] = {
        "variant": variant.name,
        "runtime": variant.runtime,
        "servable": variant.servable,
        "within_budget": selection.passed(variant.name) if selection and variant.accuracy else None,
        "chosen": bool(selection and selection.chosen == variant.name),
        "build_seconds": round(variant.build_seconds, 2),
        "error": variant.error or "",
    }
    if variant.accuracy:
        row |= {name: finite(variant.accuracy.get(name)) for name in MEASURE_COLUMNS}
        row["metric"] = variant.accuracy.metric
    if variant.bench:
        bench, best = variant.bench, variant.bench.best
        row |= {f"{k}_ms": bench.latency_ms.get(k) for k in ("p50", "p90", "p95", "p99", "p99_9")}
        row |= {
            "best_items_per_s": best.items_per_second,
            "best_sessions": best.sessions,
            "best_threads": best.intra_op_threads,
            "best_batch": best.batch_size,
            "final_rounds_median": statistics.median(bench.rounds) if bench.rounds else None,
            "size_mb": bench.size_bytes / 2**20,
            "peak_rss_mb": bench.peak_rss_mb,
            "added_rss_mb": bench.added_rss_mb,
            "cost_per_million_usd": bench.cost_per_million,
        }
    return row


def write_csv(result: RunResult, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for variant in result.variants:
            writer.writerow(csv_row(result, variant))
    return path
