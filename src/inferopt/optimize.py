"""`inferopt optimize`: export, build variants, verify each against FP32, benchmark, select, write, for any task.

Everything is written into a staging folder that becomes `--out` only at the end, so a failed or
interrupted run leaves nothing behind. The report is written even when no variant meets the budget (or the
module does not export); the artifact only when one does.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from inferopt.accuracy.budget import Budget
from inferopt.atomic import check_target, cleanup_survives_ctrl_c, staged_directory
from inferopt.config import OptimizeConfig
from inferopt.errors import BudgetNotMet, InputError
from inferopt.hardware import cpu_info, environment, usable_cores
from inferopt.results import RunResult, VariantResult
from inferopt.select import Candidate, select
from inferopt.tasks.base import EvalSet, InvalidInput, Item, Task
from inferopt.tasks.registry import for_model
from inferopt.verify import Reference, verify

CONTENDER_SHARE = 0.85  # variants within 15% of the fastest are re-measured side by side before the pick


@dataclass(frozen=True)
class Outcome:
    out_dir: Path
    artifact_dir: Path | None
    result: RunResult


def run_optimize(config: OptimizeConfig, console: Console | None = None) -> Outcome:
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    started = time.perf_counter()
    task = for_model(config.model, task=config.task, options=config.model_options)
    budget = config.budget.for_task(task.metrics())
    data = task.eval_data(config.data, config.max_eval_texts)
    check_target(config.out, force=config.force)  # before minutes of work, not after
    cpu, cores = cpu_info(), usable_cores()
    console.print(
        f"[bold]inferopt optimize[/] {task.model_name} ({task.name}) on {data.name} ({data.summary}), "
        f"{cores} cores: {cpu.model}"
    )
    with (
        cleanup_survives_ctrl_c(),
        staged_directory(config.out, force=config.force) as staging,
        tempfile.TemporaryDirectory() as tmp,
    ):
        result = _run(config, task, budget, data, Path(tmp), console)
        result.seconds = time.perf_counter() - started
        artifact_dir = _write_outputs(staging, result, task, Path(tmp))
    from inferopt.report.console import print_summary

    print_summary(result, console, config.out)
    if result.export_error is not None:
        from inferopt.export import ExportError

        raise ExportError(
            result.export_error,
            f"the PyTorch variants are measured in {config.out}/report.html; rewrite that op, or export the model "
            "to ONNX yourself and pass the .onnx file",
        )
    if artifact_dir is None and config.variant is not None:
        built = ", ".join(v.name for v in result.measured if v.servable)
        why = "; ".join(result.selection.failures.get(config.variant, [])) if result.selection else ""
        raise BudgetNotMet(
            f"--variant {config.variant} "
            + (f"missed the accuracy budget ({why})" if why else "was not built and measured"),
            f"report written to {config.out}, no artifact; the servable variants were: {built}",
        )
    if artifact_dir is None:
        failures = "; ".join(f"{n}: {', '.join(m)}" for n, m in result.selection.failures.items())  # type: ignore[union-attr]
        flags = ", ".join(f for f in task.metrics().flags)
        raise BudgetNotMet(
            f"No variant met the accuracy budget ({failures}); report written to {config.out}, no artifact",
            f"loosen the budget ({flags}), or accept a slower variant",
        )
    return Outcome(config.out, config.out / "artifact", result)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<42}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _run(config: OptimizeConfig, task: Task, budget: Budget, data: EvalSet, work: Path, console: Console) -> RunResult:
    from inferopt.recipes.base import BuildContext
    from inferopt.recipes.calibration import Calibration
    from inferopt.recipes.presets import default_recipes
    from inferopt.runtime.placement import gpu_providers

    with _progress(console) as progress:
        step = progress.add_task("reference: FP32", total=3)
        source = task.load_source()
        eval_items = _preprocessed(task, list(data.inputs))
        calibration_items = _preprocessed(task, task.calibration_inputs())
        reference = Reference.compute(task, source, eval_items, calibration_items, usable_cores())
        _drift_reference(task, data, eval_items, reference, work, console)
        progress.update(step, advance=1, description="export to ONNX + parity check")
        fp32_onnx, export, export_error = reference.export(work / "model.onnx", eval_items)
        progress.update(step, advance=2, description="reference + export done")
        calibration = Calibration(task, calibration_items, reference.calibration_outputs)
        context = BuildContext(task, source, work, cpu_info(), fp32_onnx or Path(), calibration)
        recipes = (
            list(config.recipes)
            if config.recipes
            else default_recipes(
                context.cpu,
                source.fusion.kind,
                budget,
                quick=config.quick,
                torch=source.module is not None,
                gpu=gpu_providers(),
                distill_minutes=_distill_minutes(config, context),
                seed=config.seed,
            )
        )
        if export_error is not None:
            recipes = [r for r in recipes if _is_torch(r)]
        variants = [_measure(context, recipe, data, eval_items, reference, config, progress) for recipe in recipes]
        result = RunResult(
            task=task.name,
            model_name=task.model_name,
            model_location=source.location,
            data_name=data.name,
            data_summary=data.summary,
            data_items=len(data),
            budget=budget.to_dict(),
            measures=task.metrics().measures,
            environment=environment(),
            export=export,
            variants=variants,
            export_error=export_error,
        )
        _final_rounds(result, task, data, config, progress)
    metrics = task.metrics()
    candidates = [Candidate(v.name, v.accuracy, v.bench, v.servable) for v in result.measured]  # type: ignore[arg-type]
    result.selection = select(candidates, budget, primary=metrics.primary, pinned=config.variant)
    return result


def _distill_minutes(config: OptimizeConfig, context: Any) -> float:
    """The students' training budget; none where they would not be built (a quick run, no unlabeled data).
    The data is read once, into the context the student recipes take it from."""
    if config.quick or not config.distill_minutes:
        return 0.0
    from inferopt.recipes.prune import distillation_inputs

    return config.distill_minutes if distillation_inputs(context) else 0.0


def _drift_reference(
    task: Task, data: EvalSet, eval_items: list[Item], reference: Reference, work: Path, console: Console
) -> None:
    """What the server's drift figures compare live traffic with: the task's signals of the eval data (FP32
    outputs), written for the artifact. A task whose signals cannot be taken still gets its artifact, without."""
    from inferopt.drift.reference import FILE, DriftReference

    try:
        signals = task.drift_signals(eval_items, reference.eval_outputs)
        DriftReference.build(signals, f"{data.name} ({data.summary})").write(work / FILE)
    except Exception as exc:  # a user's module with outputs we cannot read as rows: no drift, said so
        console.print(f"[yellow]no drift reference[/]: {type(exc).__name__}: {exc}; the server will report no drift")


def _preprocessed(task: Task, raws: list[Any]) -> list[Item]:
    """The task's items for its eval or calibration inputs; one it cannot take (a corrupt image in --data) is
    the user's mistake, in one line that names it."""
    try:
        return task.preprocess(raws)
    except InvalidInput as exc:
        raise InputError(f"--data: {exc.message}", "fix or remove that input, then run optimize again") from None


def _is_torch(recipe: Any) -> bool:
    return type(recipe).kind in ("torch-eager", "half-autocast")


def _measure(
    context: Any,
    recipe: Any,
    data: EvalSet,
    eval_items: list[Item],
    reference: Reference,
    config: OptimizeConfig,
    progress: Progress,
) -> VariantResult:
    from inferopt.bench.harness import benchmark_variant, steps_for
    from inferopt.recipes.base import build, config_to_dict

    cores, plan = usable_cores(), config.bench_plan
    task = progress.add_task(f"{recipe.name}: build", total=None)
    context.on_progress = lambda share, status: progress.update(task, description=f"{recipe.name}: distill, {status}")
    try:
        variant = build(context, recipe)
        backend = variant.make_backend(cores)  # a graph the runtime refuses to load fails here, as a build
    except Exception as exc:  # a recipe this model or machine cannot take is reported, not fatal
        progress.update(task, total=1, completed=1, description=f"{recipe.name}: [red]build failed")
        return VariantResult(
            recipe.name, config_to_dict(recipe), "onnxruntime", False, error=f"{type(exc).__name__}: {exc}"
        )
    result = VariantResult(
        variant.name, config_to_dict(recipe), variant.runtime, variant.servable, variant.build_seconds, variant.notes
    )
    result.placement = variant.placement.to_dict()
    progress.update(task, total=1 + steps_for(variant, plan, cores), completed=1, description=f"{recipe.name}: verify")
    result.accuracy = verify(context.task, backend, data, eval_items, reference.eval_outputs)
    progress.update(task, description=f"{recipe.name}: benchmark")
    result.bench = benchmark_variant(
        variant,
        context.task,
        list(data.inputs),
        plan,
        cores=cores,
        price_per_hour=config.price_per_hour,
        advance=lambda: progress.advance(task),
    )
    result.model_path = variant.model_path
    progress.update(task, description=f"{recipe.name}: done")
    return result


def _final_rounds(result: RunResult, task: Task, data: EvalSet, config: OptimizeConfig, progress: Progress) -> None:
    """Re-measure the fastest servable variants within budget side by side, so that the pick is decided by
    ratios measured in one stretch of time, not by which variant ran while the host was quiet."""
    from inferopt.bench.harness import interleaved_rounds

    budget = Budget(tuple(result.budget.items()))
    within = [
        v
        for v in result.measured
        if v.servable and not budget.misses(v.accuracy)  # type: ignore[arg-type]
    ]
    if len(within) < 2:
        return
    fastest = max(v.bench.best.items_per_second for v in within)  # type: ignore[union-attr]
    contenders = [v for v in within if v.bench.best.items_per_second >= CONTENDER_SHARE * fastest]  # type: ignore[union-attr]
    if len(contenders) < 2:
        return
    plan = config.bench_plan
    step = progress.add_task(f"final rounds: {len(contenders)} fastest side by side", total=plan.final_rounds)
    built = {v.name: (_onnx_variant(v), v.bench.best.settings) for v in contenders}  # type: ignore[union-attr]
    rates = interleaved_rounds(built, task, list(data.inputs), plan, advance=lambda: progress.advance(step))
    for v in contenders:
        v.bench.rounds = rates[v.name]  # type: ignore[union-attr]


def _onnx_variant(result: VariantResult) -> Any:
    from inferopt.recipes.base import onnx_variant
    from inferopt.runtime.placement import Placement

    assert result.model_path is not None  # servable variants have one
    # On the placement it was benchmarked on: the final rounds decide the pick, and the manifest carries them.
    return onnx_variant(result.name, None, result.model_path, placement=Placement.from_dict(result.placement))


def _write_outputs(staging: Path, result: RunResult, task: Task, work: Path) -> Path | None:
    from inferopt.report import write_reports

    write_reports(result, staging)
    chosen = result.selection.chosen if result.selection else None
    if chosen is None:
        return None
    from inferopt.artifact import write_artifact
    from inferopt.manifest import build_manifest, path_file

    variant = result.variant(chosen)
    assert variant.model_path is not None  # only servable variants are chosen
    assets = task.assets(work)
    paths = _model_paths(result, task)
    files = {"model.onnx": variant.model_path, **assets}
    from inferopt.drift.reference import FILE as DRIFT_FILE

    if (work / DRIFT_FILE).exists():
        files[DRIFT_FILE] = work / DRIFT_FILE
    files.update({path_file(name): v.model_path for name, v in paths.items()})  # type: ignore[misc]
    manifest = build_manifest(result, variant, task, sorted(assets), paths)
    return write_artifact(staging / "artifact", manifest, files).parent


def _model_paths(result: RunResult, task: Task) -> dict[str, VariantResult]:
    """The variants of the task's other model paths, from this run: each must have been built and measured."""
    paths = {}
    for name, wanted in task.model_paths().items():
        found = next((v for v in result.measured if v.name == wanted and v.servable and v.model_path), None)
        if found is None:
            raise InputError(
                f"The {name!r} model path runs variant {wanted!r}, which this run did not build and measure",
                f"keep {wanted} among the recipes",
            )
        paths[name] = found
    return paths
