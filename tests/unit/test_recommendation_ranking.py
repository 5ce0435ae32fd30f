"""HR@10 / NDCG@10 from ranks, and the recommender's fidelity measures against FP32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferopt.tasks.base import EvalSet
from inferopt.tasks.recommendation import ranking
from inferopt.tasks.recommendation.metrics import RecommendationMetrics, _ranks, spearman_by_item, top_overlap


def test_hit_rate_and_ndcg_of_known_ranks() -> None:
    ranks = np.array([0.0, 1.0, 9.0, 10.0])
    assert ranking.hit_rate(ranks) == 0.75
    assert ranking.ndcg(ranks) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)


def test_ties_count_half_so_a_constant_scorer_ranks_in_the_middle() -> None:
    positive = np.zeros(3)
    competitors = np.zeros((3, 99))
    assert ranking.ranks_among(positive, competitors).tolist() == [49.5] * 3
    assert ranking.hit_rate(ranking.ranks_among(positive, competitors)) == 0.0


def test_evaluate_scores_excludes_training_items_from_full_ranking() -> None:
    # 1 user, 5 items: the held-out item 4 scores below items 0 and 1, which the user saw in training.
    scores = np.array([[9.0, 8.0, 1.0, 0.0, 5.0]])
    result = ranking.evaluate_scores(scores, np.array([4]), np.array([[2, 3]]), seen=[[0, 1]])
    assert result["full"]["hr@10"] == 1.0 and result["full"]["ndcg@10"] == 1.0  # first once 0 and 1 are out
    assert result["sampled_99"]["ndcg@10"] == 1.0


def eval_set(kinds: list[int], held_out: list[int]) -> EvalSet:
    return EvalSet("toy", tuple(range(len(kinds))), np.array(list(zip(held_out, kinds, strict=True)), np.int64))


def test_identical_outputs_are_perfect_and_a_swapped_top_item_is_not() -> None:
    items = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [3, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]])
    scores = -np.arange(11, dtype=np.float32)[None].repeat(2, axis=0)
    data = eval_set([0, 1], [20, 3])
    same = RecommendationMetrics().evaluate(
        data, {"items": items, "scores": scores}, {"items": items, "scores": scores}
    )
    assert same.measures["top10_overlap"] == 1.0 and same.measures["rank_correlation"] == pytest.approx(1.0)
    assert same.measures["metric_drop"] == 0.0 and same.metric == 100.0  # item 3 ranks first among candidates

    changed = items.copy()
    changed[0, 0] = 99  # an item FP32 did not have in its top 10
    changed[1] = changed[1][::-1]  # candidates in reverse order: item 3 falls from 1st to 11th
    worse = RecommendationMetrics().evaluate(
        data, {"items": items, "scores": scores}, {"items": changed, "scores": scores}
    )
    assert worse.measures["top10_overlap"] == pytest.approx(0.9)
    assert worse.measures["rank_correlation"] == pytest.approx(-1.0)
    assert worse.measures["metric_drop"] == 100.0


def test_top_overlap_and_spearman_on_their_own() -> None:
    assert top_overlap(np.arange(10)[None], np.arange(5, 15)[None]) == 0.5
    rho = spearman_by_item(
        np.array([[1, 2, 3, 4]]),
        np.array([[4.0, 3.0, 2.0, 1.0]]),
        np.array([[1, 2, 4, 3]]),
        np.array([[4.0, 3.0, 2.0, 1.0]]),
    )
    assert rho == pytest.approx(0.8)  # items 3 and 4 swapped: rho = 1 - 6 * 2 / (4 * 15)


def test_tied_scores_share_their_average_rank() -> None:
    assert _ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [3.0, 0.0, 3.0, 1.0, 3.0]
    assert _ranks(np.array([0.5, 0.5, -1.0])).tolist() == [1.5, 1.5, 0.0]
