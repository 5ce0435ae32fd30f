"""The numbers a task can report, and what they were for one variant.

A `Measure` is one named number (mean cosine, argmax agreement, the task metric's drop) with its direction,
its valid range and the CLI flag that budgets it. A task's `Metrics` (tasks/base.py) says which measures it
reports and computes an `AccuracyReport` from the reference and candidate outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Measure:
    name: str
    label: str  # short column header
    higher_is_better: bool
    flag: str | None = None  # the optimize flag that budgets it
    fmt: str = ".4f"
    low: float = -math.inf  # valid range of a budget limit
    high: float = math.inf

    def meets(self, value: float | None, limit: float) -> bool:
        if value is None:
            return True  # not measured (no labels): nothing to hold it to
        return value >= limit if self.higher_is_better else value <= limit

    def worst(self, values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None and not math.isnan(v)]
        if not present:
            return None
        return min(present) if self.higher_is_better else max(present)

    def miss(self, value: float, limit: float) -> str:
        """How `value` misses `limit`, for the report: `mean cosine 0.9930 < 0.995 (short by 0.0020)`."""
        words = self.name.replace("_", " ")
        if self.higher_is_better:
            return f"{words} {value:{self.fmt}} < {limit} (short by {limit - value:{self.fmt.lstrip('+')}})"
        return f"{words} {value:{self.fmt}} > {limit} (over by {value - limit:{self.fmt.lstrip('+')}})"

    def format(self, value: float | None) -> str:
        return "n/a" if value is None else format(value, self.fmt)


MEAN_COSINE = Measure("mean_cosine", "mean cos", True, "--min-cosine", low=-1.0, high=1.0)
P1_COSINE = Measure("p1_cosine", "p1 cos", True, low=-1.0, high=1.0)
MIN_COSINE = Measure("min_cosine", "min cos", True, "--min-item-cosine", low=-1.0, high=1.0)
SQNR_DB = Measure("sqnr_db", "SQNR dB", True, "--min-sqnr-db", ".1f")
MAX_ABS_ERROR = Measure("max_abs_error", "max abs err", False, "--max-abs-error", ".3g", low=0.0)
ARGMAX_AGREEMENT = Measure("argmax_agreement", "argmax agree", True, "--min-argmax-agreement", low=0.0, high=1.0)
METRIC_DROP = Measure("metric_drop", "metric Δ", False, "--max-metric-drop", "+.2f", low=0.0)
TOP1_AGREEMENT = Measure("top1_agreement", "top-1 agree", True, "--min-top1-agreement", low=0.0, high=1.0)
TOP5_OVERLAP = Measure("top5_overlap", "top-5 overlap", True, "--min-top5-overlap", low=0.0, high=1.0)
TOP5_ACCURACY = Measure("top5_accuracy", "top-5 acc", True, fmt=".1f", low=0.0, high=100.0)  # shown, not budgeted
TOP10_OVERLAP = Measure("top10_overlap", "top-10 overlap", True, "--min-top10-overlap", low=0.0, high=1.0)
RANK_CORRELATION = Measure("rank_correlation", "rank corr", True, "--min-rank-correlation", low=-1.0, high=1.0)
NDCG10 = Measure("ndcg10", "NDCG@10", True, fmt=".2f", low=0.0, high=100.0)  # shown, not budgeted
FULL_HR10 = Measure("full_hr10", "HR@10 full", True, fmt=".2f", low=0.0, high=100.0)  # shown, not budgeted
MEAN_ABS_ERROR = Measure("mean_abs_error", "mean abs err", False, "--max-mean-abs-error", ".3g", low=0.0)
DECISION_AGREEMENT = Measure(
    "decision_agreement", "decision agree", True, "--min-decision-agreement", low=0.0, high=1.0
)
KS = Measure("ks", "KS", True, fmt=".2f", low=0.0, high=100.0)  # shown, not budgeted
ALL_MEASURES = (
    MEAN_COSINE,
    P1_COSINE,
    MIN_COSINE,
    SQNR_DB,
    MAX_ABS_ERROR,
    ARGMAX_AGREEMENT,
    TOP1_AGREEMENT,
    TOP5_OVERLAP,
    METRIC_DROP,
    TOP5_ACCURACY,
    TOP10_OVERLAP,
    RANK_CORRELATION,
    NDCG10,
    FULL_HR10,
    MEAN_ABS_ERROR,
    DECISION_AGREEMENT,
    KS,
)
BY_NAME = {m.name: m for m in ALL_MEASURES}


@dataclass(frozen=True)
class AccuracyReport:
    """A variant's measures (None: not applicable or not measured), its task metric, and the parts they were
    combined from: each output's measures, and each batching pass's (the headline is the worst pass)."""

    measures: dict[str, float | None]
    metric_name: str | None = None
    metric: float | None = None
    n: int = 0
    per_output: dict[str, dict[str, float | None]] = field(default_factory=dict)
    passes: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def get(self, name: str) -> float | None:
        return self.measures.get(name)

    @property
    def metric_drop(self) -> float | None:
        return self.measures.get("metric_drop")

    def to_dict(self) -> dict[str, Any]:
        return {
            "measures": self.measures,
            "metric_name": self.metric_name,
            "metric": self.metric,
            "n": self.n,
            "per_output": self.per_output,
            "passes": self.passes,
        }

    @classmethod
    def worst_of(cls, passes: dict[str, AccuracyReport]) -> AccuracyReport:
        """One report from several batching passes: each measure at its worst, the task metric of the pass
        with the worst drop."""
        reports = list(passes.values())
        names = list(dict.fromkeys(n for r in reports for n in r.measures))
        measures = {n: BY_NAME[n].worst([r.get(n) for r in reports]) if n in BY_NAME else None for n in names}
        worst_metric = max(reports, key=lambda r: r.metric_drop if r.metric_drop is not None else -math.inf)
        per_output: dict[str, dict[str, float | None]] = {}
        for output in dict.fromkeys(o for r in reports for o in r.per_output):
            values = [r.per_output[output] for r in reports if output in r.per_output]
            per_output[output] = {n: BY_NAME[n].worst([v.get(n) for v in values]) for n in values[0] if n in BY_NAME}
        return cls(
            measures,
            worst_metric.metric_name,
            worst_metric.metric,
            reports[0].n,
            per_output,
            {name: r.measures for name, r in passes.items()},
        )
