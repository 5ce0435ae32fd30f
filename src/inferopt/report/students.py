"""The students of a run (pruned + distilled variants) beside the teacher's variants: what was removed, how long
it trained and how far it came, its size, speed and fidelity, and why it won or lost."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from inferopt.results import RunResult, VariantResult

STUDENT_KIND = "prune"


@dataclass(frozen=True)
class StudentLine:
    name: str
    then: str
    shape: str  # "4 of 6 layers (dropped 1, 3); 14.6M of 22.7M parameters"
    training: str  # "281 steps in 180 s (budget); held-out distance 0.158 -> 0.058"
    size_mb: float | None
    items_per_second: float | None
    speedup: float | None  # over the fastest teacher variant on its placement within the budget (else fastest)
    fidelity: str  # the task's first measure, to the teacher's FP32: "mean cos 0.8748"
    verdict: str


def is_student(v: VariantResult) -> bool:
    return v.recipe.get("kind") == STUDENT_KIND


def student_lines(result: RunResult) -> list[StudentLine]:
    return [_line(result, v, _fastest_teacher(result, v)) for v in result.variants if is_student(v)]


def speed(v: VariantResult) -> float | None:
    """Items/s as the selection compares them: the median of the side-by-side rounds where there were any."""
    if v.bench is None:
        return None
    return statistics.median(v.bench.rounds) if v.bench.rounds else v.bench.best.items_per_second


def _fastest_teacher(result: RunResult, student: VariantResult) -> VariantResult | None:
    """The teacher's variant a student has to beat: the fastest servable one on the student's placement within
    the budget (else the fastest there)."""
    selection = result.selection
    teachers = [
        v
        for v in result.measured
        if not is_student(v) and v.servable and v.bench and v.placement.get("device") == student.placement.get("device")
    ]
    within = [v for v in teachers if selection is None or selection.passed(v.name)]
    pool = within or teachers
    return max(pool, key=lambda v: speed(v) or 0.0) if pool else None


def _line(result: RunResult, v: VariantResult, teacher: VariantResult | None) -> StudentLine:
    notes = v.notes.get("student", {})
    rate = speed(v)
    base = speed(teacher) if teacher else None
    primary = result.measures[0] if result.measures else None
    value = v.accuracy.get(primary.name) if v.accuracy and primary else None
    return StudentLine(
        name=v.name,
        then=str(v.notes.get("then", "")),
        shape=shape(notes),
        training=_training(notes.get("distill", {})),
        size_mb=v.bench.size_bytes / 2**20 if v.bench else None,
        items_per_second=rate,
        speedup=rate / base if rate and base else None,
        fidelity=f"{primary.label} {primary.format(value)}" if primary and value is not None else "-",
        verdict=_verdict(result, v, teacher),
    )


def shape(notes: dict) -> str:
    parts = []
    if "layers" in notes:
        kept, total = notes["layers"]
        dropped = ", ".join(str(i) for i in notes.get("dropped_layers", []))
        parts.append(f"{kept} of {total} layers (dropped {dropped})")
    if "ffn_widths" in notes:
        parts.append(f"FFN widths {notes['ffn_widths']}")
    if "hidden_widths" in notes:
        parts.append(f"hidden widths {notes['hidden_widths']}")
    if "channel_widths" in notes:
        widths = notes["channel_widths"]
        parts.append(f"{len(widths)} convolution blocks thinned to {min(widths)}-{max(widths)} channels")
    for table, (rows, ids) in notes.get("embedding_rows", {}).items():
        parts.append(f"{table} {rows:,} rows for {ids:,} ids")
    if notes.get("parameters") and notes.get("teacher_parameters"):
        parts.append(f"{_count(notes['parameters'])} of {_count(notes['teacher_parameters'])} parameters")
    return "; ".join(parts) or "-"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _training(distill: dict) -> str:
    if "steps" not in distill:
        return str(distill.get("stopped", "-"))
    return (
        f"{distill['steps']} steps in {distill['seconds']:.0f} s on {distill['items']:,} inputs "
        f"({distill['stopped']}); "
        f"held-out distance {distill['held_out_before']:.4f} -> {distill['held_out_best']:.4f}"
    )


def _verdict(result: RunResult, v: VariantResult, teacher: VariantResult | None) -> str:
    selection = result.selection
    if v.error:
        return f"skipped: {v.error}"
    if selection is None or not v.accuracy:
        return "not measured"
    if selection.chosen == v.name:
        return "won: pinned by --variant" if selection.pinned else "won: the fastest variant within the budget"
    if not selection.passed(v.name):
        return "lost: missed the budget (" + "; ".join(selection.failures[v.name]) + ")"
    if selection.pinned:
        return f"lost: within the budget, but --variant pinned {selection.chosen}"
    if v.name in selection.tied:
        return f"lost: tied on speed with {selection.chosen} (within {selection.noise:.1%}), whose fidelity is higher"
    winner = result.variant(selection.chosen) if selection.chosen else teacher
    if winner is not None and (a := speed(winner)) and (b := speed(v)):
        return f"lost: within the budget, but {winner.name} is faster ({a:,.0f} against {b:,.0f} items/s)"
    return "lost: within the budget, not chosen"
