"""How good a risk score is, on labels: ROC AUC (ties counted half) and the Kolmogorov-Smirnov statistic (the
largest gap between the score distributions of bad and good outcomes), the two numbers credit teams read."""

from __future__ import annotations

import numpy as np


def auc(scores: np.ndarray, bad: np.ndarray) -> float:
    """The chance that a random bad outcome scores above a random good one (Mann-Whitney, average ranks)."""
    scores, bad = np.asarray(scores, np.float64), np.asarray(bad, bool)
    positives, negatives = int(bad.sum()), int((~bad).sum())
    if not positives or not negatives:
        raise ValueError("AUC needs both outcomes among the labels")
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based average ranks
    return float((ranks[bad].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ks(scores: np.ndarray, bad: np.ndarray) -> float:
    scores, bad = np.asarray(scores, np.float64), np.asarray(bad, bool)
    cuts = np.unique(scores)
    bad_cdf = np.searchsorted(np.sort(scores[bad]), cuts, side="right") / max(1, bad.sum())
    good_cdf = np.searchsorted(np.sort(scores[~bad]), cuts, side="right") / max(1, (~bad).sum())
    return float(np.max(np.abs(bad_cdf - good_cdf)))
