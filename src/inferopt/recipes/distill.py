"""Knowledge distillation: train a pruned student to reproduce the FP32 teacher's outputs on unlabeled inputs.

The loss follows what the outputs are (the task's `distill_loss`): embeddings by cosine distance, logits by
KL divergence at temperature 2, scores by squared error. Training stops at the first of: the time budget, or
no better loss on the held-out part of the distillation data for `patience` checks; the student keeps the
weights of its best held-out check, so stopping late never costs fidelity. Everything random (the split, the
batch order) comes from one seed: the same seed and number of steps (`max_steps`, or what the time budget
allowed, which the report records) give the same student on one machine. The student trains in eval mode
(no dropout): it is to reproduce the teacher's inference outputs, and a few minutes leave no room to regularise.
This module imports torch: only the prune recipe's handler loads it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from inferopt.recipes.structure import Batch, Distance, Probe

TEMPERATURE = 2.0
HELD_OUT_SHARE = 0.1
CHECK_STEPS = 25  # a held-out check every this many steps (by steps, not seconds: a seed must replay), and at the end
LEARNING_RATE = 1e-4


def _rows_of(value: torch.Tensor) -> torch.Tensor:
    """(items, values): a per-item score of shape (items,) becomes one column."""
    return value.reshape(value.shape[0], -1)


def cosine_distance(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    return sum(  # type: ignore[return-value]
        1.0 - nn.functional.cosine_similarity(_rows_of(s), _rows_of(t), dim=1)
        for s, t in zip(student, teacher, strict=True)
    )


def squared_error(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    return sum(_rows_of((s - t) ** 2).mean(dim=1) for s, t in zip(student, teacher, strict=True))  # type: ignore[return-value]


def kl_divergence(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    total: torch.Tensor | float = 0.0
    for s, t in zip(student, teacher, strict=True):
        log_p = nn.functional.log_softmax(_rows_of(s) / TEMPERATURE, dim=1)
        log_q = nn.functional.log_softmax(_rows_of(t) / TEMPERATURE, dim=1)
        total = total + (log_q.exp() * (log_q - log_p)).sum(dim=1) * TEMPERATURE**2
    return total  # type: ignore[return-value]


DISTANCES: dict[str, Distance] = {"cosine": cosine_distance, "mse": squared_error, "kl": kl_divergence}


def distance_for(kind: str) -> Distance:
    if kind not in DISTANCES:
        raise ValueError(f"unknown distillation loss {kind!r}; known: {', '.join(DISTANCES)}")
    return DISTANCES[kind]


@dataclass(frozen=True)
class DistillSettings:
    minutes: float
    seed: int = 0
    patience: int = 4
    learning_rate: float = LEARNING_RATE
    max_steps: int | None = None  # a step limit besides the time budget (tests, reproductions)


@dataclass
class DistillReport:
    """What training did, for the variant's notes and the report."""

    steps: int = 0
    seconds: float = 0.0
    items: int = 0
    held_out_items: int = 0
    held_out_before: float = 0.0  # the student's mean held-out distance before training, and at its best check
    held_out_best: float = 0.0
    stopped: str = ""  # "budget" (time or steps) | "early stop" | "no budget"
    checks: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out distance)

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "items": self.items,
            "held_out_items": self.held_out_items,
            "held_out_before": round(self.held_out_before, 6),
            "held_out_best": round(self.held_out_best, 6),
            "stopped": self.stopped,
        }


Tick = Callable[[float, str], None]  # (share of the budget used, a status line)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    probe: Probe,
    distance: Distance,
    settings: DistillSettings,
    tick: Tick | None = None,
) -> DistillReport:
    """Train `student` in place on the probe's batches (the distillation data, collated) towards `teacher`."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    student.eval()  # no dropout: see the module's docstring
    train, held_out = _split(probe, rng)
    report = DistillReport(items=_rows(train), held_out_items=_rows(held_out.batches))
    check = _HeldOutCheck(student, held_out, held_out.run(teacher), distance)
    report.held_out_before = report.held_out_best = check.best
    if settings.minutes <= 0:
        report.stopped = "no budget"
        return report
    targets: dict[int, list[torch.Tensor]] = {}  # the teacher's outputs, each batch's at its first use
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    started = time.perf_counter()
    budget = settings.minutes * 60.0
    while True:
        for i in rng.permutation(len(train)):
            if i not in targets:
                targets[i] = as_targets(teacher, probe, train[i])
            loss = distance(as_list_out(student(*probe.args(train[i]))), targets[i]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            report.steps += 1
            now = time.perf_counter()
            done = now - started >= budget or report.steps == settings.max_steps
            if not done and report.steps % CHECK_STEPS:
                continue
            report.checks.append((report.steps, check.run()))
            if tick is not None:
                tick(min(1.0, (now - started) / budget), f"step {report.steps}, held-out {check.best:.5f}")
            if done or check.stale >= settings.patience:
                report.stopped = "budget" if done else "early stop"
                report.seconds, report.held_out_best = now - started, check.best
                check.restore_best()
                return report


def _split(probe: Probe, rng: np.random.Generator) -> tuple[list[Batch], Probe]:
    """(training batches, the held-out probe): a seeded tenth of the batches held out, at least one."""
    order = rng.permutation(len(probe.batches))
    held = max(1, round(len(order) * HELD_OUT_SHARE))
    train = [probe.batches[i] for i in order[held:]]
    if not train:
        raise ValueError("too little distillation data: nothing left to train on after the held-out part")
    return train, Probe(probe.input_names, tuple(probe.batches[i] for i in order[:held]), probe.mask_input)


class _HeldOutCheck:
    """The student's distance to the teacher on the held-out batches, and the weights of its best check."""

    def __init__(self, student: nn.Module, held_out: Probe, targets: list[list[torch.Tensor]], distance: Distance):
        self.student, self.held_out, self.targets, self.distance = student, held_out, targets, distance
        self.best = _held_out_distance(student, held_out, targets, distance)
        self.best_state = copy.deepcopy(student.state_dict())
        self.stale = 0  # checks since the last improvement

    def run(self) -> float:
        value = _held_out_distance(self.student, self.held_out, self.targets, self.distance)
        if value < self.best:
            self.best, self.stale, self.best_state = value, 0, copy.deepcopy(self.student.state_dict())
        else:
            self.stale += 1
        return value

    def restore_best(self) -> None:
        self.student.load_state_dict(self.best_state)


def as_targets(teacher: nn.Module, probe: Probe, batch: Batch) -> list[torch.Tensor]:
    with torch.no_grad():  # not inference mode: the loss's backward keeps the targets
        return as_list_out(teacher(*probe.args(batch)))


def as_list_out(outputs: object) -> list[torch.Tensor]:
    from inferopt.recipes.structure import as_list

    return as_list(outputs)


def _held_out_distance(
    student: nn.Module, held_out: Probe, targets: list[list[torch.Tensor]], distance: Distance
) -> float:
    outputs = held_out.run(student)
    return float(torch.cat([distance(o, t) for o, t in zip(outputs, targets, strict=True)]).mean())


def _rows(batches: list[Batch] | tuple[Batch, ...]) -> int:
    return sum(len(next(iter(b.values()))) for b in batches)
