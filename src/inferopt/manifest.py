"""The manifest an optimize run writes for its chosen variant (schema 2: docs/ARCHITECTURE.md, artifact.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from inferopt import __version__
from inferopt.report.tables import finite
from inferopt.results import RunResult, VariantResult
from inferopt.runtime.onnx import DISABLED_OPTIMIZERS
from inferopt.runtime.placement import Placement
from inferopt.tasks.base import Task


def path_file(name: str) -> str:
    """Where a model path's graph lies in the artifact."""
    return f"paths/{name}.onnx"


def build_manifest(
    result: RunResult,
    variant: VariantResult,
    task: Task,
    assets: list[str],
    paths: dict[str, VariantResult] | None = None,
) -> dict[str, Any]:
    """The manifest of `variant` (the default model path) and of the variants on the task's other paths."""
    assert variant.bench is not None and variant.accuracy is not None
    best = variant.bench.best
    placement = Placement.from_dict(variant.placement)
    return {
        "inferopt_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "task": {
            "name": task.name,
            "version": task.version,
            "protocols": list(task.protocols),
            "config": task.config(),
            "assets": assets,
        },
        "model_name": result.model_name,
        "source": result.model_location,
        "recipe": variant.recipe,
        "recipe_notes": variant.notes,
        "runtime": {
            "kind": "onnxruntime",
            "model_file": "model.onnx",
            "providers": list(placement.providers),
            "placement": placement.to_dict(),
            "session_options": {
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "execution_mode": "sequential",
                "inter_op_threads": 1,
                "disabled_optimizers": [] if placement.on_gpu else list(DISABLED_OPTIMIZERS),
            },
            "settings": best.settings.to_dict(),
            "paths": {name: _path_entry(name, v) for name, v in (paths or {}).items()},
        },
        "io": task.io_schema().to_dict(),
        "accuracy": {
            "data": result.data_name,
            "summary": result.data_summary,
            "items": result.data_items,
            "budget": result.budget,
            **finite(variant.accuracy.to_dict()),
        },
        "benchmark": _benchmark_summary(result, variant),
        "environment": result.environment,
    }


def _path_entry(name: str, variant: VariantResult) -> dict[str, Any]:
    assert variant.bench is not None and variant.accuracy is not None
    return {
        "model_file": path_file(name),
        "variant": variant.name,
        "recipe": variant.recipe,
        "placement": variant.placement,
        "settings": variant.bench.best.settings.to_dict(),
        "accuracy": finite(variant.accuracy.measures),
        "items_per_second": variant.bench.best.items_per_second,
    }


def _benchmark_summary(result: RunResult, variant: VariantResult) -> dict[str, Any]:
    assert variant.bench is not None
    bench = variant.bench
    baseline = next((v.bench for v in result.measured if v.name == "torch-fp32"), None)
    summary: dict[str, Any] = {
        "latency_ms_batch1": bench.latency_ms,
        "best": {"items_per_second": bench.best.items_per_second, **bench.best.settings.to_dict()},
        "final_rounds_items_per_second": bench.rounds,
        "size_bytes": bench.size_bytes,
        "peak_rss_mb": bench.peak_rss_mb,
        "cost_per_million_usd": bench.cost_per_million,
        "price_per_hour_usd": bench.price_per_hour,
    }
    if baseline is not None:
        summary["torch_fp32_items_per_second"] = baseline.best.items_per_second
        summary["speedup_vs_torch_fp32"] = bench.best.items_per_second / baseline.best.items_per_second
    return summary
