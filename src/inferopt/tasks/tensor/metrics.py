"""How a plain tensor model is judged: each output against FP32 (per-item cosine: mean, 1st percentile and
worst; SQNR; max abs error; argmax agreement where an output holds class scores), the model at its worst
output. There is no task metric: the outputs carry no labels."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from inferopt.accuracy.outputs import compare_outputs
from inferopt.accuracy.report import (
    ARGMAX_AGREEMENT,
    MAX_ABS_ERROR,
    MEAN_COSINE,
    MIN_COSINE,
    P1_COSINE,
    SQNR_DB,
    AccuracyReport,
)
from inferopt.tasks.base import EvalSet, Metrics


class TensorMetrics(Metrics):
    measures = (MEAN_COSINE, P1_COSINE, MIN_COSINE, SQNR_DB, MAX_ABS_ERROR, ARGMAX_AGREEMENT)
    # The same bar as text embeddings: 0.995 on average, no item below 0.98, at every output.
    default_budget: ClassVar[dict[str, float]] = {"mean_cosine": 0.995, "min_cosine": 0.98}

    def evaluate(
        self, data: EvalSet, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
    ) -> AccuracyReport:
        worst, per_output = compare_outputs(reference, candidate)
        n = next(iter(reference.values())).shape[0]
        return AccuracyReport(worst, None, None, n, per_output)
