"""Smaller models: the best INT8 variant of the original against the best pruned + distilled + INT8 student,
throughput and fidelity side by side, in one run per task:

    python benchmarks/smaller.py [--task text-embedding] [--data sts-dev.csv] [--drop 1/6,1/3]
                                 [--distill-minutes 3] [--json OUT]
    python benchmarks/smaller.py --task image-classification | recommendation | tabular [--model DIR]

Every variant is built by optimize's own recipes and verified like optimize does (the worse of two batchings)
against the teacher's FP32 on the eval data. Students, text: for each share in --drop, the least missed
encoder layers removed (measured), distilled for --distill-minutes on the packaged corpus (Lee news + Python
docs; never the eval data), then fused, and fused + INT8 per-channel. The other tasks: optimize's own student
(a CNN's expanded channels, a recommender's or risk scorer's MLP hidden units) and optimize's INT8 recipes for
the original, the student distilled for --distill-minutes on the task's unlabeled data.
Speed: each variant's best layout from optimize's quick sweep, then the INT8 variants re-measured side by side in
interleaved rounds (the median is what the ratio uses). Target (issue 15, for MiniLM): a student >= 1.5x faster
than the best INT8 original that still meets the default budget (mean cosine >= 0.995, per-item >= 0.98); the
table shows by how much each missed. The recommender and risk models are the ones `make demo-recsys` and
`make demo-risk` train (trained here first if --model is missing). The tensor task (a user's module) has no
unlabeled data, so no student.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
STSB_DEV = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"

from rich.console import Console  # noqa: E402

from inferopt.accuracy.budget import Budget  # noqa: E402
from inferopt.config import BenchPlan  # noqa: E402
from inferopt.hardware import cpu_info, usable_cores  # noqa: E402

console = Console()


TRAINED = {  # the model folder each task's demo trains, and the trainer
    "recommendation": (REPO / "build" / "recsys" / "model", "inferopt.tasks.recommendation.train"),
    "tabular": (REPO / "build" / "risk" / "model", "inferopt.tasks.tabular.train"),
}


def text_recipes(drops: list[float], minutes: float) -> list[Any]:
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_sensitivity import SensitivityInt8Config
    from inferopt.recipes.prune import PruneConfig

    cpu = cpu_info()
    fused = GraphConfig(name="fused", transformer_fusions=True)
    out: list[Any] = [
        GraphConfig(name="onnx-fused", transformer_fusions=True),
        DynamicInt8Config.for_cpu(cpu),
        DynamicInt8Config.smoothquant(cpu, 0.7),
        # optimize's guided recipe: the INT8 that meets the default budget on CPUs without VNNI
        SensitivityInt8Config(reduce_range=not cpu.has_int8_dot),
    ]
    for share in drops:
        student = PruneConfig(
            name=f"student-drop{share:.2f}-fused", drop_layers=share, distill_minutes=minutes, then=fused
        )
        out += [student, replace(student, name=f"student-drop{share:.2f}-int8", then=DynamicInt8Config.for_cpu(cpu))]
    return out


def preset_recipes(task: Any, fusion: str, minutes: float, budget: Budget) -> list[Any]:
    """optimize's full ONNX recipes for this model: the FP32 graph, the INT8 ones and its student's two forms."""
    from inferopt.recipes.presets import default_recipes

    everything = default_recipes(cpu_info(), fusion, budget, quick=False, torch=True, distill_minutes=minutes)
    return [r for r in everything if type(r).kind not in ("torch-eager", "half-autocast")]


def model_for(task_name: str, given: Path | None) -> str | None:
    if task_name not in TRAINED:
        return None if given is None else str(given)
    folder, trainer = TRAINED[task_name]
    folder = given or folder
    if not folder.exists():
        console.print(f"training the {task_name} model into {folder}")
        subprocess.run([sys.executable, "-m", trainer, "--out", str(folder)], check=True)
    return str(folder)


def run(
    task_name: str, model: Path | None, data_path: Path | None, drops: list[float], minutes: float
) -> dict[str, Any]:
    from inferopt.bench.harness import benchmark_variant, interleaved_rounds
    from inferopt.recipes import BuildContext, build
    from inferopt.recipes.calibration import Calibration
    from inferopt.tasks.registry import for_model
    from inferopt.verify import Reference, verify

    task = for_model(model_for(task_name, model), task=task_name)
    data = task.eval_data(data_path if task_name == "text-embedding" else None)
    budget = Budget().for_task(task.metrics())
    # The sweep is optimize's quick one (it picks each variant's layout); the side-by-side rounds decide.
    cores, plan = usable_cores(), replace(BenchPlan.quick(), final_rounds=5)
    source = task.load_source()
    eval_items = task.preprocess(list(data.inputs))
    calibration_items = task.preprocess(task.calibration_inputs())
    console.print(f"reference: {data.name} ({data.summary}), {cores} cores, {cpu_info().model}")
    reference = Reference.compute(task, source, eval_items, calibration_items, cores)
    rows: dict[str, dict[str, Any]] = {}
    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path, _, error = reference.export(work / "model.onnx", eval_items)
        assert error is None and path is not None, error
        calibration = Calibration(task, calibration_items, reference.calibration_outputs)
        context = BuildContext(task, source, work, cpu_info(), path, calibration)
        context.on_progress = lambda share, status: console.print(f"  distill {share:4.0%} {status}")
        chosen = (
            text_recipes(drops, minutes)
            if task_name == "text-embedding"
            else preset_recipes(task, source.fusion.kind, minutes, budget)
        )
        for recipe in chosen:
            console.print(f"[bold]{recipe.name}[/]: build")
            variant = build(context, recipe)
            accuracy = verify(task, variant.make_backend(cores), data, eval_items, reference.eval_outputs)
            bench = benchmark_variant(variant, task, list(data.inputs), plan, cores=cores, price_per_hour=0.05)
            variants[variant.name] = (variant, bench.best.settings)
            rows[variant.name] = _row(variant, accuracy, bench, budget)
            console.print(f"  {_summary(rows[variant.name])}")
        int8 = [name for name in rows if _is_int8(name)]
        console.print(f"[bold]interleaved rounds[/]: {', '.join(int8)}")
        rates = interleaved_rounds({n: variants[n] for n in int8}, task, list(data.inputs), plan)
    for name, values in rates.items():
        rows[name]["rounds_items_per_second"] = [round(v, 1) for v in values]
        rows[name]["median_items_per_second"] = statistics.median(values)
    return {
        "task": task.name,
        "model": task.model_name,
        "data": f"{data.name} ({data.summary})",
        "budget": budget.to_dict(),
        "measures": list(budget.to_dict()),
        "rows": rows,
        **_verdict(rows),
    }


def _row(variant: Any, accuracy: Any, bench: Any, budget: Budget) -> dict[str, Any]:
    from inferopt.report.students import shape

    student = variant.notes.get("student", {})
    return {
        "student": bool(student),
        "shape": shape(student) if student else "the original",
        "distill": student.get("distill"),
        "measures": {name: accuracy.get(name) for name in budget.to_dict()},
        "misses": budget.misses(accuracy),
        "size_mb": variant.size_bytes / 2**20,
        "best_items_per_second": bench.best.items_per_second,
        "best_layout": bench.best.settings.label,
        "p50_ms": bench.latency_ms.get("p50"),
    }


def _summary(row: dict[str, Any]) -> str:
    miss = "; ".join(row["misses"]) or "within budget"
    measures = ", ".join(f"{name} {value:.4f}" for name, value in row["measures"].items() if value is not None)
    return f"{measures}, {row['best_items_per_second']:.0f}/s: {miss}"


def _is_int8(name: str) -> bool:
    return "int8" in name


def _verdict(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fastest INT8 original and student, each the fastest within the budget where one is (else the fastest)."""

    def best(student: bool) -> str:
        pool = [n for n, r in rows.items() if _is_int8(n) and r["student"] == student]
        within = [n for n in pool if not rows[n]["misses"]] or pool
        return max(within, key=lambda n: rows[n]["median_items_per_second"])

    original, student = best(False), best(True)
    ratio = rows[student]["median_items_per_second"] / rows[original]["median_items_per_second"]
    return {"best_int8_original": original, "best_int8_student": student, "speedup": ratio}


def _megabytes(size: float) -> str:
    return f"{size:.1f}" if size >= 1 else f"{size:.3f}"


def markdown(result: dict[str, Any]) -> str:
    rate = result["rows"][result["best_int8_original"]].get("median_items_per_second")
    measures = result["measures"]
    lines = [
        f"| variant | shape | {' | '.join(measures)} | MB | best items/s (layout) | interleaved median | "
        "x best INT8 original | budget |",
        "|---|---|" + "---:|" * (len(measures) + 4) + "---|",
    ]
    for name, r in result["rows"].items():
        median = r.get("median_items_per_second")
        values = " | ".join("-" if r["measures"][m] is None else f"{r['measures'][m]:.4f}" for m in measures)
        lines.append(
            f"| {name} | {r['shape']} | {values} | "
            f"{_megabytes(r['size_mb'])} | {r['best_items_per_second']:.0f} ({r['best_layout']}) | "
            f"{'-' if median is None else f'{median:.0f}'} | {'-' if median is None else f'{median / rate:.2f}x'} | "
            f"{'; '.join(r['misses']) or 'met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="text-embedding", help="text-embedding, image-classification, ...")
    parser.add_argument("--model", type=Path, help="the model folder (recommendation, tabular: the demo's)")
    parser.add_argument("--data", type=Path, default=STSB_DEV if STSB_DEV.exists() else None, help="text only")
    parser.add_argument("--drop", default="1/6,1/3", help="text: shares of encoder layers to remove, one student each")
    parser.add_argument("--distill-minutes", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    drops = [float(Fraction(part)) for part in args.drop.split(",")]
    result = run(args.task, args.model, args.data, drops, args.distill_minutes)
    for row in result["rows"].values():
        if row["distill"]:
            console.print(row["distill"])
    print(markdown(result))
    print(
        f"\nbest INT8 student {result['best_int8_student']} vs best INT8 original {result['best_int8_original']}: "
        f"{result['speedup']:.2f}x (interleaved medians)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
