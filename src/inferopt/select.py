"""Choose the variant to ship: the fastest (best throughput) whose accuracy stays inside the budget, and the
same one every time the same machine measures the same variants.

Speed is compared as measured in the final interleaved rounds when there are any (A B A B on one host: the
per-round ratio to the fastest cancels the host's drift), else as the sweep found it. A variant whose speed
lies within the measured noise of the fastest (at least TIE_TOLERANCE) is tied with it; among tied variants
the higher fidelity wins (the task's primary measure, then the worst item), then the lower tail latency.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from inferopt.accuracy.budget import Budget
from inferopt.accuracy.report import AccuracyReport
from inferopt.bench.harness import BenchResult

TIE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Candidate:
    name: str
    accuracy: AccuracyReport
    bench: BenchResult
    servable: bool

    @property
    def throughput(self) -> float:
        rounds = self.bench.rounds
        return statistics.median(rounds) if rounds else self.bench.best.items_per_second


@dataclass(frozen=True)
class Selection:
    chosen: str | None
    failures: dict[str, list[str]] = field(default_factory=dict)  # variant -> how it missed the budget
    tied: list[str] = field(default_factory=list)  # the variants tied on speed with the fastest (chosen among)
    noise: float = TIE_TOLERANCE  # the relative speed difference that counted as a tie
    pinned: bool = False  # chosen by name (optimize --variant), not by speed

    def passed(self, name: str) -> bool:
        return name not in self.failures


def tail_latency(bench: BenchResult) -> float:
    for key in ("p99", "p95", "p50"):
        value = bench.latency_ms.get(key)
        if value is not None:
            return value
    return float("inf")


def relative_noise(fastest: Candidate, other: Candidate) -> float:
    """Half the spread of `other`'s per-round speed ratio to `fastest`: how far apart the same two variants
    measured from one round to the next. 0 without paired rounds."""
    a, b = fastest.bench.rounds, other.bench.rounds
    if len(a) < 2 or len(a) != len(b):
        return 0.0
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    return (max(ratios) - min(ratios)) / 2.0


def select(
    candidates: list[Candidate], budget: Budget, *, primary: str = "mean_cosine", pinned: str | None = None
) -> Selection:
    """`pinned`: the variant the user named (optimize --variant); chosen only if it is servable and in budget."""
    failures = {c.name: m for c in candidates if (m := budget.misses(c.accuracy))}
    eligible = [c for c in candidates if c.servable and c.name not in failures]
    if pinned is not None:
        found = any(c.name == pinned for c in eligible)
        return Selection(pinned if found else None, failures, [pinned] if found else [], pinned=True)
    if not eligible:
        return Selection(None, failures)
    fastest = max(eligible, key=lambda c: c.throughput)
    noise = {c.name: max(TIE_TOLERANCE, relative_noise(fastest, c)) for c in eligible}
    tied = [c for c in eligible if c.throughput >= fastest.throughput * (1 - noise[c.name])]

    def preference(c: Candidate) -> tuple[float, float, float]:
        fidelity = c.accuracy.get(primary)
        worst_item = c.accuracy.get("min_cosine")
        return (
            -(fidelity if fidelity is not None else 0.0),
            -(worst_item if worst_item is not None else 0.0),
            tail_latency(c.bench),
        )

    chosen = min(tied, key=preference)
    return Selection(chosen.name, failures, [c.name for c in tied], max(noise[c.name] for c in tied))
