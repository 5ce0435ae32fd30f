"""How a text encoder is judged: cosine of each embedding to FP32's (mean, 1st percentile, worst), SQNR, max
abs error, and on scored pairs (STS) the Spearman correlation x100 of pair cosine with the gold score."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from inferopt.accuracy.measures import fidelity, row_cosine
from inferopt.accuracy.report import (
    MAX_ABS_ERROR,
    MEAN_COSINE,
    METRIC_DROP,
    MIN_COSINE,
    P1_COSINE,
    SQNR_DB,
    AccuracyReport,
)
from inferopt.tasks.base import EvalSet, Metrics
from inferopt.tasks.text_embedding.evaldata import ScoredPair
from inferopt.tasks.text_embedding.model_dir import OUTPUT_NAME

METRIC_NAME = "spearman_x100"


def spearman_x100(pairs: tuple[ScoredPair, ...], embeddings: np.ndarray) -> float | None:
    """STS-style score: Spearman rank correlation x100 of pair cosine vs gold; None without labels."""
    if not pairs:
        return None
    from scipy.stats import spearmanr

    first = np.array([p.first for p in pairs])
    second = np.array([p.second for p in pairs])
    predicted = row_cosine(embeddings[first], embeddings[second])
    gold = np.array([p.score for p in pairs])
    return float(spearmanr(predicted, gold).statistic * 100.0)


class TextEmbeddingMetrics(Metrics):
    measures = (MEAN_COSINE, P1_COSINE, MIN_COSINE, SQNR_DB, MAX_ABS_ERROR, METRIC_DROP)
    # The demo shows the best a user can keep: 0.995 on average and no sentence below 0.98.
    default_budget: ClassVar[dict[str, float]] = {"mean_cosine": 0.995, "min_cosine": 0.98}

    def evaluate(
        self, data: EvalSet, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
    ) -> AccuracyReport:
        ref, cand = reference[OUTPUT_NAME], candidate[OUTPUT_NAME]
        fid = fidelity(ref, cand)
        pairs = data.labels or ()
        metric, reference_metric = spearman_x100(pairs, cand), spearman_x100(pairs, ref)
        drop = None if metric is None or reference_metric is None else reference_metric - metric
        measures = {k: v for k, v in fid.to_dict().items() if k != "n"} | {"metric_drop": drop}
        return AccuracyReport(measures, METRIC_NAME if pairs else None, metric, fid.n)
