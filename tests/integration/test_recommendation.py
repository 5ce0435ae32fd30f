"""The recommender on MovieLens 100K: training is deterministic and beats popularity, the exported graph's top k
is PyTorch's, every recipe stays inside its budget on the real model, and every bad input is an error that
names its field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferopt.errors import InputError
from inferopt.tasks.base import InvalidInput
from inferopt.tasks.recommendation import RecommendationTask, movielens
from inferopt.tasks.recommendation.catalogue import Catalogue

pytestmark = pytest.mark.slow


def test_training_is_deterministic_with_a_seed(movielens_dir: Path) -> None:
    import torch

    from inferopt.tasks.recommendation.train import TrainSettings, evaluate, train

    split = movielens.leave_last_out(movielens.read(movielens_dir), seed=0)
    settings = TrainSettings(epochs=1)
    first, second = train(split, settings), train(split, settings)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert evaluate(first, split) == evaluate(second, split)
    other = train(split, TrainSettings(epochs=1, seed=1))
    assert not torch.equal(other.user_gmf.weight, first.user_gmf.weight)


def test_the_trained_model_beats_popularity_by_far(recsys_model: Path) -> None:
    meta = json.loads((recsys_model / "recommender.json").read_text())
    neumf, popular = meta["metrics"]["neumf"], meta["metrics"]["popularity"]
    assert neumf["sampled_99"]["hr@10"] >= 0.55 and neumf["sampled_99"]["ndcg@10"] >= 0.30
    assert neumf["sampled_99"]["hr@10"] >= popular["sampled_99"]["hr@10"] + 0.2
    assert neumf["full"]["hr@10"] > popular["full"]["hr@10"]
    assert meta["train_seconds"] < 120


def tiny_task() -> tuple[RecommendationTask, Any]:
    import torch

    from inferopt.tasks.recommendation.model import Architecture, NeuMF

    torch.manual_seed(3)
    module = NeuMF(Architecture(12, 40, 4, 4, (8, 4))).eval()
    with torch.no_grad():
        for table in (module.user_gmf, module.item_gmf, module.user_mlp, module.item_mlp):
            table.weight.normal_()  # random scores far apart: no ties for top-k to break either way
    history = [list(range(u, u + 5)) for u in range(12)]
    catalogue = Catalogue(range(100, 112), range(1000, 1040), history)
    return RecommendationTask(catalogue, label="tiny", location="test"), module


def test_the_exported_graph_takes_the_same_top_k_as_pytorch(tmp_path: Path) -> None:
    import torch

    from inferopt.export import export_onnx
    from inferopt.runtime.onnx import OnnxBackend
    from inferopt.tasks.base import FusionProfile, Source

    task, module = tiny_task()
    example = {name: np.asarray(v) for name, v in task.warmup_batches(2, 1)[1].items()}
    source = Source("tiny", "test", module, None, example, 0, FusionProfile("embedding"))
    path = export_onnx(source, task.io_schema(), tmp_path / "tiny.onnx")
    queries = [
        task.instance({"user_id": 100, "k": 7}, "a"),
        task.instance({"user_id": 105, "k": 3, "exclude_seen": False}, "b"),
        task.instance({"user_id": 111, "candidates": [1039, 1000, 1020, 1003]}, "c"),
        task.instance({"user_id": 101, "candidates": [1001, 1030], "exclude_seen": True}, "d"),
        task.instance({"item_id": 1007, "k": 5}, "e"),
        task.instance({"item_id": 1010, "candidates": [1010, 1011, 1012]}, "f"),
    ]
    batch = task.collate(task.preprocess(queries))
    with torch.inference_mode():
        torch_items, torch_scores = module(*(torch.from_numpy(batch[n]) for n in task.io_schema().input_names))
    outputs = OnnxBackend(path, intra_op_threads=1).run(batch)
    valid = np.isfinite(torch_scores.numpy())  # past a row's allowed items come -inf ties, in no set order
    assert (np.isfinite(outputs["scores"]) == valid).all()
    np.testing.assert_array_equal(outputs["items"][valid], torch_items.numpy()[valid])
    np.testing.assert_allclose(outputs["scores"][valid], torch_scores.numpy()[valid], rtol=1e-5, atol=1e-5)
    results = task.split(outputs, task.preprocess(queries))
    assert [len(r["items"]) for r in results] == [7, 3, 4, 1, 5, 2]  # each query's own k; d's other candidate was seen
    assert not set(results[0]["items"].tolist()) & {1000, 1001, 1002, 1003, 1004}  # user 100 saw those
    assert sorted(results[2]["items"].tolist()) == [1000, 1003, 1020, 1039]
    assert results[3]["items"].tolist() == [1030]
    assert 1007 not in results[4]["items"].tolist() and sorted(results[5]["items"].tolist()) == [1011, 1012]
    vectors = torch.cat([module.item_gmf.weight, module.item_mlp.weight], dim=1).detach().numpy()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    nearest = np.argsort(-(vectors @ vectors[7]), kind="stable")[1:6] + 1000  # item 1007 is row 7
    assert results[4]["items"].tolist() == nearest.tolist()  # cosine neighbours, best first, never itself
    for r in results:
        assert (np.diff(r["scores"]) <= 0).all()  # best first


def test_every_recipe_stays_inside_the_default_budget_on_the_real_model(recsys_optimized: Any) -> None:
    result = recsys_optimized.result
    measured = {v.name: v for v in result.variants}
    assert set(measured) == {"onnx-fp32", "int8-tables", "int8-matmul", "int8-tables-matmul", "fp16-storage"}
    for name, variant in measured.items():
        assert variant.error is None, name
        accuracy = variant.accuracy.measures
        assert accuracy["top10_overlap"] >= 0.98, name
        assert accuracy["metric_drop"] <= 0.5, name
        assert accuracy["rank_correlation"] >= 0.98, name
    assert measured["onnx-fp32"].accuracy.measures["top10_overlap"] == 1.0
    assert measured["int8-tables"].notes["int8_tables"] == {
        "user_gmf.weight": "lookup",
        "user_mlp.weight": "lookup",
        "item_mlp.weight": "whole",
    }
    # The tables' FP32 bytes become INT8; the similar-items branch's normalized item vectors stay FP32.
    assert measured["int8-tables"].bench.size_bytes < 0.8 * measured["onnx-fp32"].bench.size_bytes
    assert result.selection.chosen in measured


@pytest.fixture(scope="module")
def task(recsys_model: Path) -> RecommendationTask:
    made = RecommendationTask.from_model(str(recsys_model))
    assert isinstance(made, RecommendationTask)
    return made


@pytest.mark.parametrize(
    ("instance", "field", "words"),
    [
        ({"user_id": 99999}, "x.user_id", "unknown user 99999"),
        ({"user_id": 4.0}, "x.user_id", "must be an integer id"),
        ({"user_id": "42"}, "x.user_id", "must be an integer id"),
        ({"user_id": True}, "x.user_id", "must be an integer id"),
        ({"k": 10}, "x", "needs user_id or item_id"),
        ({"user_id": 1, "item_id": 1}, "x", "holds both user_id and item_id"),
        ({"item_id": 99999}, "x.item_id", "unknown item 99999"),
        ({"item_id": 1, "exclude_seen": True}, "x.exclude_seen", "for user queries"),
        ({"item_id": 1, "k": 1682}, "x.k", "the 1,681 other items besides item 1"),
        ({"item_id": 1, "candidates": [1]}, "x.candidates", "nothing to rank besides item 1 itself"),
        ({"item_id": 1, "candidates": [1, 2], "k": 2}, "x.k", "the 1 candidate besides item 1"),
        ({"user_id": 42, "k": 0}, "x.k", "at least 1"),
        ({"user_id": 42, "k": -3}, "x.k", "at least 1"),
        ({"user_id": 42, "k": 1683}, "x.k", "items user 42 has not seen"),
        ({"user_id": 42, "k": 1683, "exclude_seen": False}, "x.k", "the 1,682 items in the catalogue"),
        ({"user_id": 42, "candidates": [1, 2, 1]}, "x.candidates", "item 1 is listed twice"),
        ({"user_id": 42, "candidates": [1, 999999]}, "x.candidates", "unknown item ids 999999"),
        ({"user_id": 42, "candidates": []}, "x.candidates", "non-empty list"),
        ({"user_id": 42, "candidates": [1, "2"]}, "x.candidates[1]", "integer id"),
        ({"user_id": 42, "candidates": [1, 2], "k": 3}, "x.k", "the 2 candidates"),
        ({"user_id": 42, "exclude_seen": "yes"}, "x.exclude_seen", "true or false"),
        ({"user_id": 42, "top_k": 3}, "x", "unknown fields ['top_k']"),
        ([42], "x", "must be an object"),
    ],
)
def test_each_bad_query_names_its_field(task: RecommendationTask, instance: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        task.instance(instance, "x")
    assert caught.value.field == field
    assert words in caught.value.message


def test_request_parameters_apply_where_an_instance_is_silent(task: RecommendationTask) -> None:
    raws = [task.instance({"user_id": 1}, "a"), task.instance({"user_id": 2, "k": 3}, "b")]
    applied = task.parameters(raws, {"k": 5, "exclude_seen": False}, "parameters")
    assert [(q.k, q.exclude_seen) for q in applied] == [(5, False), (3, False)]
    with pytest.raises(InvalidInput, match="unknown parameter 'top_k'"):
        task.parameters(raws, {"top_k": 5}, "parameters")
    with pytest.raises(InvalidInput) as caught:
        task.parameters(raws, {"k": 0}, "parameters")
    assert caught.value.field == "parameters.k"


def test_oip_v2_tensors_are_checked_by_name(task: RecommendationTask) -> None:
    users = np.array([1, 2], np.int64)
    assert [q.k for q in task.from_tensors({"user_id": users, "k": np.array([4, 4])})] == [4, 4]
    assert [q.item for q in task.from_tensors({"item_id": np.array([1, 3])})] == [0, 2]
    for tensors, name in [
        ({"user": users}, "inputs"),
        ({"user_id": users, "item_id": users}, "inputs"),
        ({"user_id": np.array([1.0, 2.0])}, "user_id"),
        ({"user_id": users, "k": np.array([4, 5])}, "k"),
        ({"user_id": users, "candidates": np.array([[1, 2]])}, "candidates"),
        ({"user_id": users, "exclude_seen": np.array([1, 0])}, "exclude_seen"),
        ({"user_id": np.array([1, 99999])}, "row 1.user_id"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            task.from_tensors(tensors)
        assert caught.value.field == name


def test_a_missing_or_malformed_data_directory_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        movielens.read(tmp_path / "absent")
    with pytest.raises(InputError, match=r"holds no ml-100k\.inter"):
        movielens.read(tmp_path)
    (tmp_path / "ml-100k.inter").write_text("user\titem\n1\t2\n")
    with pytest.raises(InputError, match="not RecBole's atomic file columns"):
        movielens.read(tmp_path)
    header = "\t".join(movielens.INTER_COLUMNS)
    (tmp_path / "ml-100k.inter").write_text(f"{header}\n1\t2\t3\t4\nfoo\t2\t3\t4\n")
    with pytest.raises(InputError, match="line 3"):
        movielens.read(tmp_path)


def test_optimize_refuses_data_and_a_folder_that_is_not_a_recommender(task: RecommendationTask, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--data is not taken"):
        task.eval_data(tmp_path)
    (tmp_path / "recommender.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not an inferopt recommender folder"):
        RecommendationTask.from_model(str(tmp_path))


def test_distillation_queries_draw_users_as_traffic_would(task: RecommendationTask) -> None:
    """In proportion to their training interactions: heavy users come up more than a uniform draw would give."""
    queries = task.distillation_inputs()
    assert len(queries) == 4096 and all(q.item is None and q.exclude_seen for q in queries)
    history = np.array([len(task.catalogue.seen(u)) for u in range(task.catalogue.num_users)])
    drawn = np.array([history[q.user] for q in queries])
    assert drawn.mean() > 1.5 * history.mean()  # a size-biased draw's mean is E[n^2]/E[n]
    assert queries == task.distillation_inputs()  # a fixed seed
