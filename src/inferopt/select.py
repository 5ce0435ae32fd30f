"""Choose the variant to ship: the fastest (best throughput) whose accuracy stays inside the budget.

Throughputs within TIE_TOLERANCE of the best count as a tie on this noisy kind of measurement; the tie goes
to the lower tail latency (p99, else p95 where too few samples for a p99).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferopt.accuracy import AccuracyReport
from inferopt.bench.harness import BenchResult
from inferopt.config import Budget

TIE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Candidate:
    name: str
    accuracy: AccuracyReport
    bench: BenchResult
    servable: bool


@dataclass(frozen=True)
class Selection:
    chosen: str | None
    failures: dict[str, list[str]] = field(default_factory=dict)  # variant -> how it missed the budget

    def passed(self, name: str) -> bool:
        return name not in self.failures


def budget_misses(accuracy: AccuracyReport, budget: Budget) -> list[str]:
    """Each way `accuracy` misses `budget`, with by how much."""
    fid, misses = accuracy.fidelity, []
    if fid.mean_cosine < budget.min_mean_cosine:
        misses.append(
            f"mean cosine {fid.mean_cosine:.4f} < {budget.min_mean_cosine} "
            f"(short by {budget.min_mean_cosine - fid.mean_cosine:.4f})"
        )
    if budget.min_item_cosine is not None and fid.min_cosine < budget.min_item_cosine:
        misses.append(
            f"min cosine {fid.min_cosine:.4f} < {budget.min_item_cosine} "
            f"(short by {budget.min_item_cosine - fid.min_cosine:.4f})"
        )
    drop = accuracy.metric_drop
    if budget.max_metric_drop is not None and drop is not None and drop > budget.max_metric_drop:
        misses.append(f"{accuracy.metric_name} drop {drop:.2f} > {budget.max_metric_drop} points")
    return misses


def tail_latency(bench: BenchResult) -> float:
    for key in ("p99", "p95", "p50"):
        value = bench.latency_ms.get(key)
        if value is not None:
            return value
    return float("inf")


def select(candidates: list[Candidate], budget: Budget) -> Selection:
    failures = {c.name: m for c in candidates if (m := budget_misses(c.accuracy, budget))}
    eligible = [c for c in candidates if c.servable and c.name not in failures]
    if not eligible:
        return Selection(None, failures)
    best = max(c.bench.best.items_per_second for c in eligible)
    tied = [c for c in eligible if c.bench.best.items_per_second >= best * (1 - TIE_TOLERANCE)]
    return Selection(min(tied, key=lambda c: tail_latency(c.bench)).name, failures)
