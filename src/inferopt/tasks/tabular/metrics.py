"""How a risk-scorer variant is judged against FP32, on every applicant of the data set:

- the score's largest and mean absolute error (a probability: 0.01 is one point of risk);
- decision agreement: the share of applicants whose approve/decline at the threshold is FP32's;
- the task metric, ROC AUC on the held-out split (in points: 100 x AUC), with KS beside it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from inferopt.accuracy.report import (
    DECISION_AGREEMENT,
    KS,
    MAX_ABS_ERROR,
    MEAN_ABS_ERROR,
    METRIC_DROP,
    AccuracyReport,
)
from inferopt.tasks.base import EvalSet, Metrics
from inferopt.tasks.tabular import scoring

METRIC_NAME = "auc"
HELD_OUT = 1  # eval label column 1: 1 for a held-out applicant


class RiskMetrics(Metrics):
    measures = (MAX_ABS_ERROR, MEAN_ABS_ERROR, DECISION_AGREEMENT, METRIC_DROP, KS)
    # The issue's target: AUC within 0.004 of FP32 (0.4 points); decisions as FP32's for 99% of applicants.
    default_budget: ClassVar[dict[str, float]] = {"decision_agreement": 0.99, "metric_drop": 0.4}
    primary = "decision_agreement"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def evaluate(
        self, data: EvalSet, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
    ) -> AccuracyReport:
        labels = np.asarray(data.labels)
        bad, held_out = labels[:, 0], labels[:, 1] == HELD_OUT
        ref, got = reference["score"].astype(np.float64), candidate["score"].astype(np.float64)
        error = np.abs(got - ref)
        metric = 100 * scoring.auc(got[held_out], bad[held_out])
        measures: dict[str, float | None] = {
            "max_abs_error": float(error.max()),
            "mean_abs_error": float(error.mean()),
            "decision_agreement": float(np.mean((got >= self.threshold) == (ref >= self.threshold))),
            "metric_drop": 100 * scoring.auc(ref[held_out], bad[held_out]) - metric,
            "ks": 100 * scoring.ks(got[held_out], bad[held_out]),
        }
        return AccuracyReport(measures, METRIC_NAME, metric, int(held_out.sum()))
