"""Row-wise INT8 tables and FP16 storage, on a small graph of their own: what they store, and that the graph still
computes what it did within the error the encoding allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from inferopt.recipes.embedding_int8 import find_tables, quantize_tables, rowwise_int8, weight_matmuls
from inferopt.recipes.fp16_storage import store_half


def lookup_model(rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """out = users[ids] @ weight + (items @ weight).sum(0): a looked-up table, a table used whole, a weight."""
    users = (rng.standard_normal((100, 8)) * np.logspace(-3, 1, 100)[:, None]).astype(np.float32)  # rows differ 10^4x
    items = rng.standard_normal((80, 8)).astype(np.float32)
    weight = rng.standard_normal((8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["users", "ids"], ["u"], axis=0, name="lookup"),
        helper.make_node("MatMul", ["u", "weight"], ["uw"], name="project"),
        helper.make_node("MatMul", ["items", "weight"], ["iw"], name="items_whole"),
        helper.make_node("ReduceSum", ["iw", "axes"], ["isum"], keepdims=0, name="sum"),
        helper.make_node("Add", ["uw", "isum"], ["out"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4])],
        [
            numpy_helper.from_array(users, "users"),
            numpy_helper.from_array(items, "items"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.array([0], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, {"users": users, "items": items, "weight": weight}


def run(model: onnx.ModelProto, tmp_path: Path, ids: np.ndarray) -> np.ndarray:
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]


def test_rowwise_int8_keeps_each_row_to_half_its_own_step() -> None:
    table = np.array([[0.001, -0.002, 0.0005], [100.0, -50.0, 25.0], [0.0, 0.0, 0.0]], np.float32)
    quantized, scale = rowwise_int8(table)
    assert quantized.dtype == np.int8 and np.abs(quantized).max() == 127
    error = np.abs(quantized * scale[:, None] - table)
    assert (error <= scale[:, None] / 2 + 1e-12).all()
    assert error[0].max() < 1e-5  # a per-tensor scale (100 / 127) would have rounded the small row to zeros
    assert scale[2] == 1.0 and (quantized[2] == 0).all()


def test_tables_are_found_by_use_and_the_weight_is_not_one() -> None:
    model, _ = lookup_model(np.random.default_rng(0))
    assert find_tables(model) == {"users": "lookup", "items": "whole"}
    assert weight_matmuls(model) == ["project"]  # items @ weight is constants only: folded, not quantized


def test_quantized_tables_are_stored_as_int8_and_compute_within_their_error(tmp_path: Path) -> None:
    model, arrays = lookup_model(np.random.default_rng(0))
    ids = np.array([0, 5, 50, 99, 99], np.int64)
    expected = run(model, tmp_path, ids)
    quantized, notes = quantize_tables(model)
    dtypes = {init.name: init.data_type for init in quantized.graph.initializer}
    assert "users" not in dtypes and "items" not in dtypes
    assert dtypes["users__rows_int8"] == TensorProto.INT8 and dtypes["items__rows_int8"] == TensorProto.INT8
    assert notes == {"int8_tables": {"items": "whole", "users": "lookup"}}
    got = run(quantized, tmp_path, ids)
    # Error bound: each table entry is off by at most half its row's step, through |weight| sums.
    weight_sums = np.abs(arrays["weight"]).sum(axis=0)
    user_step = np.abs(arrays["users"][ids]).max(axis=1, keepdims=True) / 127 / 2
    item_step = (np.abs(arrays["items"]).max(axis=1) / 127 / 2).sum()
    assert (np.abs(got - expected) <= (user_step + item_step) * weight_sums + 1e-4).all()
    assert not np.array_equal(got, expected)  # it did quantize


def test_fp16_storage_halves_the_weights_and_rounds_like_fp16(tmp_path: Path) -> None:
    model, _ = lookup_model(np.random.default_rng(1))
    ids = np.arange(100, dtype=np.int64)
    expected = run(model, tmp_path, ids)
    half, converted = store_half(model, min_elements=16)
    assert converted == 3  # users, items, weight; the 1-element axes stay
    assert {i.name: i.data_type for i in half.graph.initializer}["users_fp16"] == TensorProto.FLOAT16
    got = run(half, tmp_path, ids)
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-2)
