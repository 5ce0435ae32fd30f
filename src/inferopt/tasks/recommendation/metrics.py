"""How a recommender variant is judged against FP32, on the held-out interactions (see eval_data):

- top-10 overlap: the mean share of FP32's 10 best items (a user's, over the whole catalogue with seen items
  excluded; or an item's most similar) still in the 10 best;
- rank correlation: Spearman's rho between FP32's and the variant's scores of the same 100 candidates (the
  held-out item and its 99 negatives), mean over users: does the variant order items as FP32 does;
- the task metric, HR@10 with 99 sampled negatives (in points: 100 x the share of users whose held-out item
  ranks in the top 10), with NDCG@10 and full-ranking HR@10 shown beside it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from inferopt.accuracy.report import (
    FULL_HR10,
    METRIC_DROP,
    NDCG10,
    RANK_CORRELATION,
    TOP10_OVERLAP,
    AccuracyReport,
)
from inferopt.tasks.base import EvalSet, Metrics
from inferopt.tasks.recommendation import ranking

METRIC_NAME = "hr@10"


def top_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = ranking.CUTOFF) -> float:
    shared = [len(set(r[:k]) & set(c[:k])) / k for r, c in zip(reference.tolist(), candidate.tolist(), strict=True)]
    return float(np.mean(shared))


def spearman_by_item(ref_items: np.ndarray, ref_scores: np.ndarray, items: np.ndarray, scores: np.ndarray) -> float:
    """Mean over rows of Spearman's rho between the two score vectors, aligned by item id."""
    rhos = []
    for r_items, r_scores, c_items, c_scores in zip(ref_items, ref_scores, items, scores, strict=True):
        a = r_scores[np.argsort(r_items, kind="stable")]
        b = c_scores[np.argsort(c_items, kind="stable")]
        if not np.array_equal(np.sort(r_items), np.sort(c_items)):
            rhos.append(-1.0)  # not even the same items: as far from FP32 as a ranking gets
            continue
        rank_a, rank_b = _ranks(a), _ranks(b)
        rhos.append(float(np.corrcoef(rank_a, rank_b)[0, 1]) if rank_a.std() and rank_b.std() else 1.0)
    return float(np.mean(rhos))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as Spearman's rho takes them."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def held_out_ranks(items: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """0-based position of each row's held-out item in its ranked list (len(row) when absent)."""
    hits = items == held_out[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), items.shape[1]).astype(np.float64)


class RecommendationMetrics(Metrics):
    measures = (TOP10_OVERLAP, RANK_CORRELATION, METRIC_DROP, NDCG10, FULL_HR10)
    # The issue's targets for the pick: FP32's top 10 kept (0.98) and HR@10 within 0.005 (0.5 points).
    default_budget: ClassVar[dict[str, float]] = {"top10_overlap": 0.98, "metric_drop": 0.5}
    primary = "top10_overlap"

    def evaluate(
        self, data: EvalSet, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
    ) -> AccuracyReport:
        labels = np.asarray(data.labels)
        full, sampled, similar = labels[:, 1] == 0, labels[:, 1] == 1, labels[:, 1] == 2
        held_out = labels[:, 0]
        ref_items, items = reference["items"], candidate["items"]
        ranks = held_out_ranks(items[sampled], held_out[sampled])
        ref_ranks = held_out_ranks(ref_items[sampled], held_out[sampled])
        metric, reference_metric = 100 * ranking.hit_rate(ranks), 100 * ranking.hit_rate(ref_ranks)
        measures: dict[str, float | None] = {
            "top10_overlap": top_overlap(ref_items[full | similar], items[full | similar]),
            "rank_correlation": spearman_by_item(
                ref_items[sampled], reference["scores"][sampled], items[sampled], candidate["scores"][sampled]
            ),
            "metric_drop": reference_metric - metric,
            "ndcg10": 100 * ranking.ndcg(ranks),
            "full_hr10": 100 * ranking.hit_rate(held_out_ranks(items[full], held_out[full])),
        }
        return AccuracyReport(measures, METRIC_NAME, metric, int(sampled.sum()))
