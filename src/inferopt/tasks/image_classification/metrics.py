"""How an image classifier is judged: top-1 agreement with FP32 (the share of images whose top class is FP32's),
top-5 overlap (the mean share of FP32's five best classes still in the five best), logit cosine (mean and
worst), and where labels exist the task metric, top-1 accuracy in points, with top-5 accuracy beside it."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from inferopt.accuracy.measures import row_cosine
from inferopt.accuracy.report import (
    MEAN_COSINE,
    METRIC_DROP,
    MIN_COSINE,
    TOP1_AGREEMENT,
    TOP5_ACCURACY,
    TOP5_OVERLAP,
    AccuracyReport,
)
from inferopt.tasks.base import EvalSet, Metrics

METRIC_NAME = "top1_accuracy"
OUTPUT = "logits"


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    k = min(k, logits.shape[1])
    part = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logits, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def top5_overlap(reference: np.ndarray, candidate: np.ndarray) -> float:
    ref, cand = top_k(reference, 5), top_k(candidate, 5)
    shared = [len(set(r) & set(c)) / len(r) for r, c in zip(ref.tolist(), cand.tolist(), strict=True)]
    return float(np.mean(shared))


def accuracy_x100(logits: np.ndarray, labels: np.ndarray, k: int) -> float | None:
    """Top-k accuracy in points over the labelled rows (label >= 0); None without any."""
    known = labels >= 0
    if not known.any():
        return None
    hits = (top_k(logits[known], k) == labels[known, None]).any(axis=1)
    return float(hits.mean() * 100.0)


class ImageClassificationMetrics(Metrics):
    measures = (TOP1_AGREEMENT, TOP5_OVERLAP, MEAN_COSINE, MIN_COSINE, METRIC_DROP, TOP5_ACCURACY)
    # What the published INT8 CNN results keep: the same top class as FP32 on 99% of images.
    default_budget: ClassVar[dict[str, float]] = {"top1_agreement": 0.99}
    primary = "top1_agreement"

    def evaluate(
        self, data: EvalSet, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
    ) -> AccuracyReport:
        ref, cand = reference[OUTPUT], candidate[OUTPUT]
        labels = np.asarray(data.labels if data.labels is not None else [-1] * len(ref), dtype=np.int64)
        cos = row_cosine(cand, ref)
        metric, reference_metric = accuracy_x100(cand, labels, 1), accuracy_x100(ref, labels, 1)
        measures: dict[str, float | None] = {
            "top1_agreement": float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1))),
            "top5_overlap": top5_overlap(ref, cand),
            "mean_cosine": float(cos.mean()),
            "min_cosine": float(cos.min()),
            "metric_drop": None if metric is None else reference_metric - metric,  # type: ignore[operator]
            "top5_accuracy": accuracy_x100(cand, labels, 5),
        }
        return AccuracyReport(measures, METRIC_NAME if metric is not None else None, metric, len(ref))
