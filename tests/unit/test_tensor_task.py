"""The tensor task's checks of what requests carry, without a model: values that must fit the input's type,
shapes with static and dynamic sizes, rows that batch by shape; and an ONNX file whose batch is fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferopt.errors import InputError
from inferopt.tasks.base import InvalidInput, IOSchema, TensorSpec
from inferopt.tasks.tensor import TensorTask

SCHEMA = IOSchema(
    (TensorSpec("ids", "int32", ("batch", "sequence")), TensorSpec("mask", "bool", ("batch", "sequence"))),
    (TensorSpec("score", "float32", ("batch",)),),
)


@pytest.fixture
def task() -> TensorTask:
    row = {"ids": np.array([1, 2, 3], np.int32), "mask": np.array([True, True, False])}
    return TensorTask(SCHEMA, [row], location="test")


@pytest.mark.parametrize(
    ("instance", "words"),
    [
        ({"ids": [3_000_000_000, 1], "mask": [True, True]}, "outside int32's range"),
        ({"ids": [1.5, 2.0], "mask": [True, True]}, "must hold integers"),
        ({"ids": [1, 2], "mask": [1, 0]}, "must hold true/false"),
        ({"ids": [[1, 2], [3]], "mask": [True, True]}, "not a rectangular nested list"),
        ({"ids": [], "mask": []}, "any size from 1"),  # an empty sequence: nothing a model could answer
        ({"ids": [[1, 2]], "mask": [[True, True]]}, "has shape [1, 2] per row"),
        ({"ids": [1, 2]}, "missing ['mask']"),
    ],
)
def test_kserve_instances_that_do_not_fit_name_the_field(task: TensorTask, instance: dict, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        task.instance(instance, "instances[2]")
    assert words in refused.value.message and refused.value.field.startswith("instances[2]")


def test_a_good_instance_keeps_the_inputs_types(task: TensorTask) -> None:
    row = task.instance({"ids": [7, 8], "mask": [True, False]}, "instances[0]")
    assert row["ids"].dtype == np.int32 and row["mask"].dtype == np.bool_ and row["ids"].tolist() == [7, 8]


def test_v2_tensors_with_an_empty_dynamic_axis_are_refused(task: TensorTask) -> None:
    tensors = {"ids": np.zeros((2, 0), np.int32), "mask": np.zeros((2, 0), bool)}
    with pytest.raises(InvalidInput, match=r"has shape \[0\] per row"):
        task.from_tensors(tensors)


def test_rows_cost_one_and_batch_by_shape(task: TensorTask) -> None:
    short = {"ids": np.ones(3, np.int32), "mask": np.ones(3, bool)}
    long = {"ids": np.ones(300, np.int32), "mask": np.ones(300, bool)}
    items = task.preprocess([short, long, short])
    assert [item.cost for item in items] == [1, 1, 1]  # never padded: the batch budget is its row count
    assert items[0].group == items[2].group != items[1].group


def test_an_onnx_file_with_a_fixed_batch_axis_is_a_one_line_error(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(InputError, match="batch axis of 'x' is fixed at 1"):
        TensorTask.from_model(str(path))
