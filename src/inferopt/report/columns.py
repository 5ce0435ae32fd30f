"""Which accuracy measures a report shows: the task's headline ones (mean and worst-item cosine), those the
budget limits, and those any variant has a value for (argmax agreement, the task metric's drop)."""

from __future__ import annotations

from inferopt.accuracy.report import Measure
from inferopt.results import RunResult

HEADLINE = ("mean_cosine", "min_cosine")
WHEN_PRESENT = ("argmax_agreement", "metric_drop", "rank_correlation", "ndcg10", "mean_abs_error", "ks")


def shown_measures(result: RunResult) -> list[Measure]:
    measured = [v.accuracy for v in result.measured if v.accuracy is not None]
    present = {name for accuracy in measured for name, value in accuracy.measures.items() if value is not None}
    wanted = set(HEADLINE) | set(result.budget) | (set(WHEN_PRESENT) & present)
    return [m for m in result.measures if m.name in wanted]


def budget_text(result: RunResult) -> str:
    """`mean cosine >= 0.995, min cosine >= 0.98`: the budget in the task's own words."""
    by_name = {m.name: m for m in result.measures}
    parts = []
    for name, limit in result.budget.items():
        measure = by_name[name]
        words = result.metric_name + " drop" if name == "metric_drop" and result.metric_name else name.replace("_", " ")
        parts.append(f"{words} {'>=' if measure.higher_is_better else '<='} {limit:g}")
    return ", ".join(parts) or "none"
