"""Smaller models: a student pruned from the FP32 teacher (structure.py), distilled back towards it (distill.py),
exported, and then put through any other recipe (`then`: transformer fusions, INT8) like the original.

Every student variant is verified like all the others: against the teacher's FP32 outputs on the eval data,
never against the student's own FP32, and chosen by the same budget. One student (its pruning and distillation
settings) is built once per run however many `then` recipes use it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from inferopt.recipes.base import BuildContext, Variant, build
from inferopt.recipes.base import register as register_recipe
from inferopt.recipes.calibration import Calibration
from inferopt.tasks.base import FusionProfile

SHARES = ("drop_layers", "drop_heads", "drop_ffn", "drop_hidden", "drop_channels", "drop_rows")
DISTILL_BATCH = 32


@dataclass(frozen=True)
class PruneConfig:
    kind: ClassVar[str] = "prune"
    version: int = 1
    name: str = "student"
    drop_layers: float = 0.0  # share of transformer layers removed, the least missed first (0: none)
    drop_ffn: float = 0.0  # share of FFN channels removed in each remaining transformer layer
    drop_heads: float = 0.0  # share of attention heads removed in each remaining transformer layer (heads.py)
    drop_hidden: float = 0.0  # share of hidden units removed between each pair of an MLP's Linear layers
    drop_channels: float = 0.0  # share of a CNN's prunable channels removed (channels.py says which are)
    drop_rows: float = 0.0  # share of each looked-up embedding table's rows merged into a fallback (rows.py)
    distill_minutes: float = 2.0  # training budget towards the teacher (0: pruned only, not trained)
    seed: int = 0
    max_steps: int | None = None  # a step limit besides the time budget (reproductions, tests)
    then: Any = None  # the recipe applied to the student's export (a recipe config); None: the export as is

    def __post_init__(self) -> None:
        for share in SHARES:
            value = getattr(self, share)
            if value != 0.0 and not 0.0 < value < 1.0:
                raise ValueError(f"{share} {value:g} is outside (0, 1): it is the share of units removed")
        if not any(getattr(self, share) for share in SHARES):
            raise ValueError(f"a student needs something pruned: set one of {', '.join(SHARES)} in (0, 1)")
        if not 0 <= self.distill_minutes < float("inf"):  # NaN fails too: it would never run out
            raise ValueError(f"distill_minutes {self.distill_minutes:g} is not a number of minutes >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps {self.max_steps} is not a positive number of steps")
        if isinstance(self.then, PruneConfig):
            raise ValueError("a student's `then` recipe cannot be another student")

    def student_key(self) -> str:
        """What decides the student itself (not the recipe applied after): students that share it are one."""
        values = [float(getattr(self, f)) for f in (*SHARES, "distill_minutes")] + [self.seed, self.max_steps]
        return "student-" + "-".join(f"{value}" for value in values).replace(".", "p")


@dataclass
class Student:
    """A built student: its own build context (source, export, cache), and what building it found."""

    context: BuildContext
    notes: dict[str, Any]


@register_recipe(PruneConfig)
def build_student_variant(context: BuildContext, config: PruneConfig) -> Variant:
    from inferopt.recipes.graph import GraphConfig

    student = context.cached(config.student_key(), lambda: _attempt(context, config))
    if isinstance(student, Exception):  # the other forms of a student that failed fail alike, without retrying
        raise student

    inner = config.then or GraphConfig(name=f"{config.name}-export")
    variant = build(student.context, inner)
    variant.name, variant.config = config.name, config
    variant.notes = {"student": student.notes, "then": inner.name, **variant.notes}
    return variant


def _attempt(context: BuildContext, config: PruneConfig) -> Student | Exception:
    try:
        return _student(context, config)
    except Exception as exc:  # kept for the student's other forms; KeyboardInterrupt is not caught
        return exc


def _student(context: BuildContext, config: PruneConfig) -> Student:
    from inferopt.export import export_onnx

    teacher = context.source.module
    if teacher is None:
        raise ValueError("a student is pruned from the PyTorch module; this model was given as an ONNX file")
    work = context.work_dir / config.student_key()
    work.mkdir(parents=True, exist_ok=True)
    module, notes = _pruned_and_distilled(context, config, teacher)
    source = replace(
        context.source,
        name=f"{context.source.name} ({config.name})",
        module=module,
        size_bytes=notes["parameters"] * 4,
        fusion=_student_fusion(context.fusion, config, notes),
    )
    path = export_onnx(source, context.task.io_schema(), work / "student.onnx")
    calibration = _own_calibration(context, source, path, notes)
    derived = dataclasses.replace(context, source=source, work_dir=work, fp32_onnx=path, calibration=calibration)
    derived._cache = {}
    return Student(derived, notes)


def _own_calibration(context: BuildContext, source: Any, path: Any, notes: dict[str, Any]) -> Calibration:
    """The calibration items with the student's own FP32 outputs: what the recipes applied after compare
    against (the sensitivity-guided INT8 keeps the student's accuracy, not a teacher's it never had); and the
    export's parity with the student module, held to the teacher export's bound."""
    from inferopt.engine import Predictor
    from inferopt.export import PARITY_MIN_MEAN_COSINE, ExportError
    from inferopt.hardware import usable_cores
    from inferopt.verify import item_cosines, onnx_backend, reference_backend

    task, items = context.task, context.calibration.items
    with Predictor(task, [reference_backend(task, source, usable_cores())]) as predictor:
        outputs = predictor.run_items(items)
    mean, low = item_cosines(task, onnx_backend(path, usable_cores()), items, outputs)
    notes["export_parity"] = {"mean_cosine": round(mean, 7), "min_cosine": round(low, 7)}
    if mean < PARITY_MIN_MEAN_COSINE:
        raise ExportError(
            f"the student's ONNX export differs from the student module (mean cosine {mean:.6f} < "
            f"{PARITY_MIN_MEAN_COSINE})",
            "report this model; the teacher's variants are unaffected",
        )
    return Calibration(task, items, outputs)


def _pruned_and_distilled(context: BuildContext, config: PruneConfig, teacher: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from inferopt.hardware import usable_cores
    from inferopt.recipes.distill import DistillSettings, distance_for, distill
    from inferopt.recipes.structure import drop_layers, encoder_blocks, layers_by_contribution, prune_ffn, prune_hidden

    distance = distance_for(context.task.distill_loss)
    data = _distillation_probe(context) if config.distill_minutes > 0 else None  # refused before any pruning
    probe = _probe(context, context.calibration.items)
    student = copy.deepcopy(teacher).eval()
    notes: dict[str, Any] = {"teacher_parameters": _parameters(teacher), "loss": context.task.distill_loss}
    with _threads(usable_cores()):
        if config.drop_layers:
            total = len(encoder_blocks(student)[2])
            dropped = layers_by_contribution(
                student, max(1, round(total * config.drop_layers)), probe, probe.run(teacher), distance
            )
            notes["layers"] = [drop_layers(student, dropped), total]
            notes["dropped_layers"] = sorted(dropped)
        if config.drop_heads:
            from inferopt.recipes.heads import prune_heads

            notes["heads"] = prune_heads(student, config.drop_heads, probe)
        if config.drop_ffn:
            notes["ffn_widths"] = prune_ffn(student, config.drop_ffn, probe)
        if config.drop_hidden:
            notes["hidden_widths"] = prune_hidden(student, config.drop_hidden, probe)
        if config.drop_channels:
            from inferopt.recipes.channels import prune_channels

            notes["channel_widths"] = prune_channels(student, config.drop_channels, probe)
        if config.drop_rows:
            from inferopt.recipes.rows import prune_rows

            # Rare means rarely looked up by what the student will be trained on (drawn like traffic)
            notes["embedding_rows"] = prune_rows(student, config.drop_rows, data or probe)
        notes["parameters"] = _parameters(student)
        if data is not None:
            settings = DistillSettings(config.distill_minutes, seed=config.seed, max_steps=config.max_steps)
            torch.manual_seed(config.seed)
            targets = context.task.distillation_targets  # what is matched: the outputs, or what they are chosen from
            report = distill(targets(student), targets(teacher), data, distance, settings, context.on_progress)
            notes["distill"] = report.to_dict()
        else:
            notes["distill"] = {"stopped": "not distilled (distill_minutes 0)"}
    return student, notes


def distillation_inputs(context: BuildContext) -> list[Any]:
    """The task's unlabeled inputs, read once per run (images are transformed and re-encoded to make them)."""
    raws: list[Any] = context.cached("distillation-inputs", context.task.distillation_inputs)
    return raws


def _distillation_probe(context: BuildContext) -> Any:
    raws = distillation_inputs(context)
    if not raws:
        raise ValueError(
            f"the {context.task.name} task has no unlabeled data to distill a student on; "
            "the student recipes are skipped (distill_minutes 0 keeps a pruned-only student)"
        )
    return _probe(context, context.task.preprocess(raws))


def _probe(context: BuildContext, items: list[Any]) -> Any:
    from inferopt.batching import sorted_batches
    from inferopt.recipes.structure import Probe

    batches = tuple(context.task.collate([items[i] for i in rows]) for rows in sorted_batches(items, DISTILL_BATCH))
    return Probe(tuple(context.task.io_schema().input_names), batches, context.fusion.mask_input)


def _student_fusion(profile: FusionProfile, config: PruneConfig, notes: dict[str, Any]) -> FusionProfile:
    """The teacher's fusion profile, with the per-layer op counts scaled to the layers left, and the heads left
    where heads were removed (the same number in every layer; the hidden size, the projections' input, stays)."""
    if config.drop_layers:
        profile = _scaled_fusion(profile, *notes["layers"])
    if config.drop_heads:
        profile = replace(profile, num_heads=notes["heads"][0])
    return profile


def _scaled_fusion(profile: FusionProfile, layers: int, total: int) -> FusionProfile:
    """The fusion counts a student with `layers` of `total` layers should reach: per-layer ops (those whose
    count is a multiple of the layer count) scale with the layers, the others (the embedding's) stay."""
    scaled = {op: n * layers // total if n and n % total == 0 else n for op, n in profile.expected_ops.items()}
    return replace(profile, expected_ops=scaled)


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


class _threads:
    """torch's intra-op threads set for training, and put back (the benchmark sets its own)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *_: object) -> None:
        import torch

        torch.set_num_threads(self.before)
