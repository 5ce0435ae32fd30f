"""`inferopt optimize`: export, build variants, verify each against FP32, benchmark, select, write.

Everything is written into a staging folder that becomes `--out` only at the end, so a failed or
interrupted run leaves nothing behind. The report is written even when no variant meets the budget;
the artifact only when one does.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from inferopt.accuracy import evaluate
from inferopt.atomic import check_target, cleanup_survives_ctrl_c, staged_directory
from inferopt.config import Budget, OptimizeConfig
from inferopt.errors import BudgetNotMet
from inferopt.evaldata import EvalData, builtin_corpus, load_eval_data
from inferopt.hardware import CpuInfo, cpu_info, environment, usable_cores
from inferopt.results import RunResult, VariantResult
from inferopt.select import Candidate, select
from inferopt.tasks.text_embedding import (
    ModelSpec,
    TextTokenizer,
    default_model_dir,
    load_source_model,
    read_model_spec,
)

EVAL_BATCH = 32
SMOOTHING_CANDIDATES = (0.6, 0.7, 0.8)
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Outcome:
    out_dir: Path
    artifact_dir: Path | None
    result: RunResult


def default_recipes(cpu: CpuInfo, budget: Budget, *, quick: bool) -> list[Any]:
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.half import HalfPrecisionConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_sensitivity import SensitivityInt8Config
    from inferopt.recipes.int8_static import StaticInt8Config
    from inferopt.recipes.torch_eager import TorchEagerConfig

    fused = GraphConfig(name="onnx-fused", transformer_fusions=True)
    if quick:
        return [TorchEagerConfig(), fused, DynamicInt8Config.study_default(), DynamicInt8Config.smoothquant(cpu, 0.7)]
    # The guided recipe aims a little above the budget: it calibrates on the built-in corpus, not the eval data.
    sensitivity = SensitivityInt8Config(
        reduce_range=not cpu.has_int8_dot,
        target_mean_cosine=max(0.995, budget.min_mean_cosine + 0.001),
        target_min_cosine=max(0.98, (budget.min_item_cosine or 0.0) + 0.005),
    )
    recipes: list[Any] = [TorchEagerConfig()]
    if HalfPrecisionConfig.available(cpu):
        recipes.append(HalfPrecisionConfig())
    return [
        *recipes,
        GraphConfig(),
        fused,
        DynamicInt8Config.study_default(),
        DynamicInt8Config.for_cpu(cpu),
        DynamicInt8Config.matmul_only(cpu),
        # Smoothing strengths are candidates, not a tuned constant: the eval data decides among them.
        *(DynamicInt8Config.smoothquant(cpu, alpha) for alpha in SMOOTHING_CANDIDATES),
        sensitivity,
        StaticInt8Config(),
    ]


def model_name(model_dir: Path, bundled: bool) -> str:
    return BUNDLED_MODEL_NAME if bundled else model_dir.resolve().name


def _quiet_libraries() -> None:
    """Hugging Face prints a progress bar per model load; ours is the one that matters."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_optimize(config: OptimizeConfig, console: Console | None = None) -> Outcome:
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    _quiet_libraries()
    started = time.perf_counter()
    bundled = config.model_dir is None
    model_dir = default_model_dir() if bundled else Path(config.model_dir)  # type: ignore[arg-type]
    spec = read_model_spec(model_dir)
    data = load_eval_data(config.data).limited(config.max_eval_texts)
    check_target(config.out, force=config.force)  # before minutes of work, not after
    cpu, cores = cpu_info(), usable_cores()
    recipes = list(config.recipes) if config.recipes else default_recipes(cpu, config.budget, quick=config.quick)
    console.print(
        f"[bold]inferopt optimize[/] {model_name(model_dir, bundled)} on {data.name} "
        f"({len(data.texts)} texts, {len(data.pairs)} scored pairs), {len(recipes)} variants, "
        f"{cores} cores: {cpu.model}"
    )
    with (
        cleanup_survives_ctrl_c(),
        staged_directory(config.out, force=config.force) as staging,
        tempfile.TemporaryDirectory() as tmp,
    ):
        result = _run(config, model_dir, bundled, spec, data, recipes, Path(tmp), console)
        result.seconds = time.perf_counter() - started
        artifact_dir = _write_outputs(staging, result, spec, model_dir)
    from inferopt.report.console import print_summary

    print_summary(result, console, config.out)
    if artifact_dir is None:
        failures = "; ".join(f"{n}: {', '.join(m)}" for n, m in result.selection.failures.items())  # type: ignore[union-attr]
        raise BudgetNotMet(
            f"No variant met the accuracy budget ({failures}); report written to {config.out}, no artifact",
            "loosen --min-cosine / --min-item-cosine / --max-metric-drop, or accept a slower variant",
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


def _run(
    config: OptimizeConfig,
    model_dir: Path,
    bundled: bool,
    spec: ModelSpec,
    data: EvalData,
    recipes: list[Any],
    work: Path,
    console: Console,
) -> RunResult:
    from inferopt.export import export_onnx
    from inferopt.recipes.base import BuildContext

    tokenizer = TextTokenizer.from_dir(model_dir, spec.max_length)
    calibration = list(builtin_corpus().texts)
    texts = list(data.texts)
    with _progress(console) as progress:
        step = progress.add_task("reference: PyTorch FP32", total=3)
        source = load_source_model(model_dir)
        reference, calibration_reference = _torch_reference(source, tokenizer, [texts, calibration])
        progress.update(step, advance=1, description="export to ONNX + parity check")
        exported = export_onnx(model_dir, tokenizer, reference[:512], texts[:512], work / "model.onnx")
        progress.update(step, advance=2, description="reference + export done")
        context = BuildContext(
            model_dir, spec, tokenizer, work, cpu_info(), exported.path, calibration, calibration_reference
        )
        context.cached("torch-module", lambda: source)  # the torch variants reuse the reference model
        variants = [_measure(context, recipe, data, reference, config, progress) for recipe in recipes]
    result = RunResult(
        model_name=model_name(model_dir, bundled),
        model_dir=str(model_dir),
        data_name=data.name,
        data_texts=len(data.texts),
        data_pairs=len(data.pairs),
        budget=dataclasses.asdict(config.budget),
        environment=environment(),
        variants=variants,
        export={
            "opset": 17,
            "parity_mean_cosine": exported.parity_mean_cosine,
            "parity_min_cosine": exported.parity_min_cosine,
            "parity_texts": exported.parity_texts,
        },
    )
    candidates = [Candidate(v.name, v.accuracy, v.bench, v.servable) for v in result.measured]  # type: ignore[arg-type]
    result.selection = select(candidates, config.budget)
    return result


def _torch_reference(source: Any, tokenizer: TextTokenizer, text_sets: list[list[str]]) -> list[np.ndarray]:
    """FP32 PyTorch embeddings: the ground truth every variant is compared with."""
    from inferopt.engine import Embedder
    from inferopt.runtime.torch import TorchBackend
    from inferopt.tasks.text_embedding import OUTPUT_NAME

    backend = TorchBackend(source, [OUTPUT_NAME], intra_op_threads=usable_cores())
    with Embedder(tokenizer, [backend], batch_size=EVAL_BATCH) as embedder:
        return [embedder.embed(texts) for texts in text_sets]


def _measure(
    context: Any, recipe: Any, data: EvalData, reference: np.ndarray, config: OptimizeConfig, progress: Progress
) -> VariantResult:
    from inferopt.bench.harness import benchmark_variant, steps_for
    from inferopt.engine import Embedder
    from inferopt.recipes.base import build, config_to_dict

    cores, plan = usable_cores(), config.bench_plan
    task = progress.add_task(f"{recipe.name}: build", total=None)
    try:
        variant = build(context, recipe)
    except Exception as exc:  # a recipe this model or machine cannot take is reported, not fatal
        progress.update(task, total=1, completed=1, description=f"{recipe.name}: [red]build failed")
        return VariantResult(
            recipe.name, config_to_dict(recipe), "onnxruntime", False, error=f"{type(exc).__name__}: {exc}"
        )
    result = VariantResult(
        variant.name, config_to_dict(recipe), variant.runtime, variant.servable, variant.build_seconds, variant.notes
    )
    progress.update(task, total=1 + steps_for(variant, plan, cores), completed=1, description=f"{recipe.name}: verify")
    with Embedder(context.tokenizer, [variant.make_backend(cores)], batch_size=EVAL_BATCH) as embedder:
        result.accuracy = evaluate(data, reference, embedder.embed(list(data.texts)))
    progress.update(task, description=f"{recipe.name}: benchmark")
    result.bench = benchmark_variant(
        variant,
        context.tokenizer,
        list(data.texts),
        plan,
        cores=cores,
        price_per_hour=config.price_per_hour,
        advance=lambda: progress.advance(task),
    )
    result.model_path = variant.model_path
    progress.update(task, description=f"{recipe.name}: done")
    return result


def _write_outputs(staging: Path, result: RunResult, spec: ModelSpec, model_dir: Path) -> Path | None:
    from inferopt.report import write_reports

    write_reports(result, staging)
    chosen = result.selection.chosen if result.selection else None
    if chosen is None:
        return None
    from inferopt.artifact import write_artifact
    from inferopt.manifest import build_manifest

    variant = result.variant(chosen)
    assert variant.model_path is not None  # only servable variants are chosen
    files = {"model.onnx": variant.model_path, "tokenizer.json": model_dir / "tokenizer.json"}
    return write_artifact(staging / "artifact", build_manifest(result, variant, spec), files).parent
