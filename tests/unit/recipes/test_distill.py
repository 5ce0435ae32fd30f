"""Distillation on a tiny encoder: it brings a pruned student closer to its teacher on inputs it did not train
on, the same seed and steps give the same student, and the losses measure what they say."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.tiny_models import tiny_bert, token_probe  # noqa: E402

from inferopt.recipes.distill import (  # noqa: E402
    DistillSettings,
    cosine_distance,
    distance_for,
    distill,
    kl_divergence,
    squared_error,
)
from inferopt.recipes.structure import drop_layers, mean_distance  # noqa: E402


def pruned_pair():
    teacher = tiny_bert(layers=4)
    student = copy.deepcopy(teacher)
    drop_layers(student, [1, 2])
    return teacher, student


def test_distillation_brings_the_student_closer_on_unseen_inputs():
    teacher, student = pruned_pair()
    unseen = token_probe(batches=4, seed=99)
    before = mean_distance(student, unseen, unseen.run(teacher), cosine_distance)
    report = distill(student, teacher, token_probe(batches=20), cosine_distance, DistillSettings(1.0, max_steps=60))
    after = mean_distance(student, unseen, unseen.run(teacher), cosine_distance)
    assert report.steps == 60 and report.stopped == "budget"
    assert report.held_out_best < 0.7 * report.held_out_before
    assert after < 0.7 * before, (before, after)
    assert report.items == 8 * 18 and report.held_out_items == 8 * 2


def test_the_same_seed_and_steps_give_the_same_student():
    def trained(seed: int) -> dict:
        teacher, student = pruned_pair()
        distill(student, teacher, token_probe(batches=10), cosine_distance, DistillSettings(1.0, seed, max_steps=12))
        return student.state_dict()

    first, again, other = trained(3), trained(3), trained(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_no_budget_leaves_the_student_as_pruned():
    teacher, student = pruned_pair()
    weights = copy.deepcopy(student.state_dict())
    report = distill(student, teacher, token_probe(batches=4), cosine_distance, DistillSettings(0.0))
    assert report.stopped == "no budget" and report.steps == 0
    assert all(torch.equal(weights[k], v) for k, v in student.state_dict().items())


def test_too_little_data_is_refused():
    teacher, student = pruned_pair()
    with pytest.raises(ValueError, match="too little distillation data"):
        distill(student, teacher, token_probe(batches=1), cosine_distance, DistillSettings(1.0))


def test_losses_are_zero_on_agreement_and_grow_with_disagreement():
    a = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]])
    b = a.clone()
    b[1] = torch.tensor([0.5, -0.5, 3.0])
    for loss in (cosine_distance, squared_error, kl_divergence):
        same, differ = loss([a], [a]), loss([a], [b])
        assert torch.allclose(same, torch.zeros(2), atol=1e-6)
        assert differ[0] == pytest.approx(0.0, abs=1e-6) and differ[1] > 0.01
    scores = torch.tensor([0.2, 0.9])  # per-item scores (risk): one column each
    assert squared_error([scores], [torch.tensor([0.2, 0.5])]).tolist() == pytest.approx([0.0, 0.16])
    with pytest.raises(ValueError, match="unknown distillation loss 'l1'"):
        distance_for("l1")
