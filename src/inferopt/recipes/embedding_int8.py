"""INT8 for embedding models (recommenders): row-wise INT8 embedding tables, INT8 MatMul for the MLP, or both.

Tables are quantized row by row, symmetric, one float scale per row, the way TorchRec and FBGEMM store them: a
row is one entity (user or item), and rows differ in scale by orders of magnitude, so one scale for the table
would crush the small ones. A table is a rank-2 float initializer read by Gather (a lookup) or used whole as
the first input of a MatMul (a table projected at once). A lookup becomes Gather on the INT8 table and on the
scales, Cast and Mul: only the rows asked for are dequantized. A whole-table use becomes DequantizeLinear along
the rows; ONNX Runtime then folds it, with what follows on constants alone, when the session loads, so the INT8
there buys file size, not speed.

The linear part is ONNX Runtime's dynamic INT8 on the MatMuls whose second input is a rank-2 weight (per output
channel; 7-bit weights without VNNI), never on the MatMuls of constants only or of rank-1 weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inferopt.recipes.base import BuildContext, Variant, onnx_variant, quiet_root_logger, register

MIN_TABLE_ROWS = 64  # smaller "tables" are weights: a per-row scale would cost more than it saves


@dataclass(frozen=True)
class EmbeddingInt8Config:
    kind: ClassVar[str] = "int8-embedding"
    version: int = 1
    name: str = "int8-tables"
    tables: bool = True  # row-wise INT8 embedding tables
    linear: bool = False  # dynamic INT8 MatMul on the MLP's weights
    reduce_range: bool = False  # 7-bit MatMul weights (x86 without VNNI)

    def __post_init__(self) -> None:
        if not (self.tables or self.linear):
            raise ValueError("an int8-embedding recipe quantizes the tables, the linear layers, or both")


def find_tables(model: Any) -> dict[str, str]:
    """Initializer name -> "lookup" (read by Gather on axis 0 only) or "whole" (any other use)."""
    floats = {
        init.name
        for init in model.graph.initializer
        if init.data_type == 1 and len(init.dims) == 2 and init.dims[0] >= MIN_TABLE_ROWS
    }
    uses: dict[str, set[str]] = {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name not in floats:
                continue
            if node.op_type == "Gather" and position == 0 and _axis(node) == 0:
                uses.setdefault(name, set()).add("lookup")
            elif node.op_type == "MatMul" and position == 0:
                uses.setdefault(name, set()).add("whole")
            else:
                uses.setdefault(name, set()).add("other")
    return {name: "lookup" if kinds == {"lookup"} else "whole" for name, kinds in uses.items() if "other" not in kinds}


def _axis(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "axis"), 0)


def rowwise_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 rows, float32 scale per row): row = int8 * scale, symmetric, the largest |value| at 127."""
    peak = np.abs(table).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
    return quantized, scale


def quantize_tables(model: Any) -> tuple[Any, dict[str, Any]]:
    """The model with its tables row-wise INT8, and what was done, for the report."""
    import onnx
    from onnx import helper, numpy_helper

    tables = find_tables(model)
    inits = {init.name: init for init in model.graph.initializer}
    nodes: list[Any] = []
    lookups: set[str] = set()
    for name, use in tables.items():
        quantized, scale = rowwise_int8(numpy_helper.to_array(inits[name]))
        model.graph.initializer.remove(inits[name])
        model.graph.initializer.extend([
            numpy_helper.from_array(quantized, f"{name}__rows_int8"),
            numpy_helper.from_array(scale if use == "whole" else scale[:, None], f"{name}__rows_scale"),
        ])  # fmt: skip
        if use == "whole":
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}__rows_int8", f"{name}__rows_scale"],
                    [name],
                    axis=0,
                    name=f"{name}__rows_dequantize",
                )
            )
        else:
            lookups.add(name)
    rewritten: list[Any] = []
    for node in model.graph.node:
        is_lookup = node.op_type == "Gather" and node.input[0] in lookups
        rewritten += _row_lookup(node, helper) if is_lookup else [node]
    del model.graph.node[:]
    model.graph.node.extend(nodes + rewritten)
    onnx.checker.check_model(model)
    return model, {"int8_tables": {name: use for name, use in sorted(tables.items())}}


def _row_lookup(node: Any, helper: Any) -> list[Any]:
    """A Gather of a table -> Gather of its INT8 rows and of their scales, Cast, Mul: the same output name."""
    table, index, out = node.input[0], node.input[1], node.output[0]
    gathers = [
        helper.make_node(
            "Gather",
            [f"{table}__rows_{part}", index],
            [f"{out}__rows_{part}"],
            name=f"{node.name}__rows_{part}",
            axis=0,
        )
        for part in ("int8", "scale")
    ]
    cast = helper.make_node("Cast", [f"{out}__rows_int8"], [f"{out}__rows_float"], name=f"{node.name}__rows_cast", to=1)
    mul = helper.make_node(
        "Mul", [f"{out}__rows_float", f"{out}__rows_scale"], [out], name=f"{node.name}__rows_dequantize"
    )
    return [*gathers, cast, mul]


def weight_matmuls(model: Any) -> list[str]:
    """MatMul nodes of a computed input and a rank-2 weight: those dynamic INT8 helps."""
    inits = {init.name: init for init in model.graph.initializer}
    produced_by_constants = {o for node in model.graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[0] not in inits
        and node.input[0] not in produced_by_constants
        and node.input[1] in inits
        and len(inits[node.input[1]].dims) == 2
    ]


def _quantize_linear(source: Path, out: Path, nodes: list[str], reduce_range: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_root_logger():
        quantize_dynamic(
            source,
            out,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@register(EmbeddingInt8Config)
def build_embedding_int8(context: BuildContext, config: EmbeddingInt8Config) -> Variant:
    import onnx

    out = context.work_dir / f"{config.name}.onnx"
    model = onnx.load(str(context.fp32_onnx))
    notes: dict[str, Any] = {}
    if config.tables:
        model, notes = quantize_tables(model)
        if not notes["int8_tables"]:
            raise ValueError("this model has no embedding tables (rank-2 initializers read by Gather or MatMul)")
    if config.linear:
        nodes = weight_matmuls(model)
        if not nodes:
            raise ValueError("this model has no MatMul of an activation and a rank-2 weight")
        staged = context.work_dir / f"{config.name}.tables.onnx"
        onnx.save(model, str(staged))
        _quantize_linear(staged, out, nodes, config.reduce_range)
        notes["int8_matmuls"] = nodes
    else:
        onnx.save(model, str(out))
    return onnx_variant(config.name, config, out, notes)
