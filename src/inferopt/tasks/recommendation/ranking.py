"""Ranking quality of held-out interactions: hit rate and NDCG at k, from where the held-out item ranks.

A rank is 0-based: the number of competing items scored above the held-out one, plus half of those tied with it
(the expected rank under random tie-breaking; the popularity baseline ties a lot, a trained model hardly ever).
"""

from __future__ import annotations

import numpy as np

CUTOFF = 10


def ranks_among(positive: np.ndarray, competitors: np.ndarray) -> np.ndarray:
    """positive: (users,) scores of the held-out items; competitors: (users, n) scores of the items they compete
    with. -> (users,) expected 0-based ranks."""
    above = (competitors > positive[:, None]).sum(axis=1)
    tied = (competitors == positive[:, None]).sum(axis=1)
    return above + tied / 2.0


def hit_rate(ranks: np.ndarray, k: int = CUTOFF) -> float:
    return float(np.mean(ranks < k))


def ndcg(ranks: np.ndarray, k: int = CUTOFF) -> float:
    """One relevant item per user: its gain 1 / log2(rank + 2) when it ranks in the top k."""
    gains = np.where(ranks < k, 1.0 / np.log2(np.floor(ranks) + 2.0), 0.0)
    return float(gains.mean())


def summary(ranks: np.ndarray, k: int = CUTOFF) -> dict[str, float]:
    return {f"hr@{k}": round(hit_rate(ranks, k), 4), f"ndcg@{k}": round(ndcg(ranks, k), 4)}


def evaluate_scores(
    scores: np.ndarray, test_items: np.ndarray, negatives: np.ndarray, seen: list[list[int]]
) -> dict[str, dict[str, float]]:
    """HR@10 / NDCG@10 of a (users, items) score matrix: among the held-out item and its 99 sampled negatives,
    and in full ranking against every item the user did not interact with in training."""
    users = np.arange(len(test_items))
    positive = scores[users, test_items]
    sampled = ranks_among(positive, np.take_along_axis(scores, negatives, axis=1))
    full_scores = scores.astype(np.float64, copy=True)
    for user, items in enumerate(seen):
        full_scores[user, items] = -np.inf
    full_scores[users, test_items] = -np.inf  # the held-out item does not compete with itself
    full = ranks_among(positive.astype(np.float64), full_scores)
    return {"sampled_99": summary(sampled), "full": summary(full)}
