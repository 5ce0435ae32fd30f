"""Bring your own model: any torch.nn.Module (by import path, with example inputs), or a ready .onnx file.

A raw input is one row: a dict of input name -> array without the batch axis. Rows batch only with rows of
the same shapes (nothing is padded: a user's model has no mask to ignore padding with), so a second
dynamic axis is served by grouping, not padding. Fidelity is measured per output on the examples or on
`--data FILE.npz`; the artifact carries the examples (examples.npz) for warm-up and profiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.datafiles import Row, read_npz, read_rows, write_rows
from inferopt.errors import InputError
from inferopt.tasks import user_code
from inferopt.tasks.base import (
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    V2_DATATYPES,
    Arrays,
    EvalSet,
    FusionProfile,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
)
from inferopt.tasks.tensor import source as sources
from inferopt.typed_arrays import ValueProblem, typed_array

EXAMPLES_ASSET = "examples.npz"
EXAMPLES_FROM_DATA = 256  # rows of --data that stand in for examples an ONNX file came without


class TensorTask(Task):
    name = "tensor"
    version = 1
    protocols = (OIP_V2, KSERVE_V1)

    def __init__(
        self,
        schema: IOSchema,
        examples: list[Row],
        *,
        location: str,
        module_path: str | None = None,
        onnx_path: Path | None = None,
        label: str = "model",
    ) -> None:
        self.schema = schema
        self.examples = examples  # rows: calibration, warm-up, and the eval data when there is no --data
        self.location = location
        self.module_path = module_path
        self.onnx_path = onnx_path
        self.label = label

    # -- where it comes from ---------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        if ref is None:
            return False
        if ref.endswith(".onnx"):
            return True
        return ":" in ref and not Path(ref).exists()

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        options.refuse_others(("example", "dynamic_axes"), "a tensor model")
        example, dynamic_axes = options.example, options.dynamic_axes
        if ref is None:
            raise InputError("The tensor task needs MODEL: module:function or a .onnx file", "pass one")
        if ref.endswith(".onnx"):
            return cls._from_onnx(Path(ref), example, dynamic_axes)
        if example is None:
            raise InputError(
                f"MODEL {ref} is a PyTorch module: its inputs cannot be guessed",
                "pass --example module:function returning {input name: tensor} with the batch on axis 0",
            )
        return cls._from_module(ref, example, dynamic_axes)

    @classmethod
    def _from_module(cls, ref: str, example: str, dynamic_axes: tuple[str, ...]) -> TensorTask:
        module = user_code.build_module(ref)
        batches = sources.example_batches(example)
        ranks = {name: a.ndim for name, a in batches[0].items()}
        inputs = sources.input_specs(batches, sources.parse_dynamic_axes(dynamic_axes, ranks))
        outputs = _run_module(module, batches[0], ref)
        names = sources.output_names(outputs)
        values = _output_arrays(outputs, names)
        schema = IOSchema(inputs, sources.output_specs(names, values, inputs, batches[0]))
        rows = [row for batch in batches for row in _rows(batch)]
        return cls(schema, rows, location=ref, module_path=ref, label=type(module).__name__.lower())

    @classmethod
    def _from_onnx(cls, path: Path, example: str | None, dynamic_axes: tuple[str, ...]) -> TensorTask:
        if dynamic_axes:
            raise InputError("--dynamic-axes is for a PyTorch module; an ONNX file declares its own", "drop it")
        schema = sources.onnx_schema(path)
        rows: list[Row] = []  # without --example: the --data rows, or made-up ones (see eval_data)
        if example is not None:
            batches = sources.example_batches(example)
            _check_names(batches[0], schema, f"--example {example}()")
            rows = [row for batch in batches for row in _rows(batch)]
        return cls(schema, rows, location=str(path), onnx_path=path, label=path.stem)

    @property
    def model_name(self) -> str:
        return self.label

    # -- optimize ----------------------------------------------------------------------------------------------

    def load_source(self) -> Source:
        if self.onnx_path is not None:
            fusion = FusionProfile("cnn" if _onnx_has_conv(self.onnx_path) else "none")
            size = self.onnx_path.stat().st_size
            return Source(self.model_name, self.location, None, self.onnx_path, self._example(), size, fusion)
        assert self.module_path is not None
        module = user_code.build_module(self.module_path)
        fusion = FusionProfile("cnn" if user_code.has_convolutions(module) else "none")
        size = user_code.parameter_bytes(module)
        return Source(self.model_name, self.location, module, None, self._example(), size, fusion)

    def _example(self) -> Arrays:
        """A batch to trace the export with: the first examples of one shape (at most 4 rows)."""
        group = _group(self.examples[0])
        rows = [r for r in self.examples if _group(r) == group][:4]
        return {spec.name: np.stack([r[spec.name] for r in rows]) for spec in self.schema.inputs}

    def io_schema(self) -> IOSchema:
        return self.schema

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        """The --data rows, else the examples. An ONNX file given with neither gets standard normal inputs,
        where its inputs are all floating point of fixed size; the examples then are those rows."""
        if path is None:
            if not self.examples:
                assert self.onnx_path is not None
                self.examples = _synthetic_rows(self.schema, self.onnx_path)
            rows, name = self.examples, "the examples"
        else:
            if path.suffix.lower() != ".npz":
                raise InputError(
                    f"--data {path}: a tensor model's eval data is an .npz file", "save it with numpy.savez"
                )
            arrays = read_npz(path, "--data")
            _check_names(arrays, self.schema, f"--data {path}")
            rows, name = _rows(self._cast(arrays, f"--data {path}")), path.name
            if not self.examples:
                self.examples = rows[:EXAMPLES_FROM_DATA]
        rows = rows[:limit] if limit is not None else rows
        return EvalSet(name, tuple(rows), None, f"{len(rows)} rows")

    def _cast(self, arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.schema.inputs:
            value = arrays[spec.name]
            if value.dtype.name != spec.dtype and not np.can_cast(value.dtype, spec.dtype, casting="same_kind"):
                raise InputError(
                    f"{what}: {spec.name} is {value.dtype}, the model takes {spec.dtype}", f"save it as {spec.dtype}"
                )
            if (problem := shape_problem(value.shape[1:], spec)) is not None:
                raise InputError(f"{what}: {spec.name} {problem}", "")
            out[spec.name] = value.astype(spec.dtype, copy=False)
        return out

    def calibration_inputs(self) -> list[Any]:
        return list(self.examples)

    def metrics(self) -> Metrics:
        from inferopt.tasks.tensor.metrics import TensorMetrics

        return TensorMetrics()

    # -- serve -------------------------------------------------------------------------------------------------

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        """Each row costs 1: rows batch only with rows of their shape and are never padded, so the batch's
        budget is its row count (`--max-batch`, the artifact's benchmarked batch size)."""
        return [Item(raw, 1, _group(raw)) for raw in raws]

    def collate(self, items: Sequence[Item]) -> Arrays:
        return {spec.name: np.stack([item.data[spec.name] for item in items]) for spec in self.schema.inputs}

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        """One output: its value; several: an object of output name -> value (TF-Serving's row format). A row of
        a [batch] output is a plain number; float16 is written as float32 (JSON has one number type anyway)."""
        plain = {name: _json_value(value) for name, value in outputs.items()}
        return next(iter(plain.values())) if len(plain) == 1 else plain

    def canonical(self, raw: Any) -> tuple[bytes | memoryview, ...]:
        parts: list[bytes | memoryview] = []
        for spec in self.schema.inputs:
            value = raw[spec.name]
            parts.append(f"{spec.name}:{value.dtype.name}:{value.shape};".encode())
            # hashed in place, not copied (a view of nothing cannot be cast: its bytes are none)
            parts.append(np.ascontiguousarray(value).data.cast("B") if value.size else b"")
        return tuple(parts)

    def instance(self, value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            raise InvalidInput(f"{field} must be an object of input name -> nested list of values", field)
        expected = set(self.schema.input_names)
        if set(value) != expected:
            missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
            what = "; ".join(
                p for p in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "") if p
            )
            raise InvalidInput(f"{field} does not name this model's inputs ({what})", field)
        row = {}
        for spec in self.schema.inputs:
            where = f"{field}.{spec.name}"
            try:
                array = typed_array(value[spec.name], np.dtype(spec.dtype))
            except ValueProblem as problem:
                raise InvalidInput(f"{where} {problem}", where) from None
            if (wrong := shape_problem(array.shape, spec)) is not None:
                raise InvalidInput(f"{where} {wrong}", where)
            row[spec.name] = array
        return row

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        expected = self.schema.input_names
        if set(tensors) != set(expected):
            raise InvalidInput(f"this model takes the inputs {expected}, got {sorted(tensors)}", "inputs")
        for spec in self.schema.inputs:
            value = tensors[spec.name]
            if not isinstance(value, np.ndarray):
                raise InvalidInput(f"input {spec.name!r} must be {_v2(spec.dtype)}, not BYTES", spec.name)
            if value.dtype.name != spec.dtype:
                raise InvalidInput(
                    f"input {spec.name!r} is {_v2(value.dtype.name)}; this model takes {_v2(spec.dtype)}", spec.name
                )
            if value.ndim != len(spec.shape):
                raise InvalidInput(
                    f"input {spec.name!r} has shape {list(value.shape)}; this model takes {_v2_shape(spec)}", spec.name
                )
            if (problem := shape_problem(value.shape[1:], spec)) is not None:
                raise InvalidInput(f"input {spec.name!r} {problem}", spec.name)
        rows = len(tensors[expected[0]])
        return [{name: tensors[name][i] for name in expected} for i in range(rows)]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """The first example row alone, and a full batch of it."""
        row = self.examples[0]
        return [self.collate([Item(row)] * rows) for rows in sorted({1, max_batch})]

    # -- the artifact ------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"io": self.schema.to_dict(), "source": self.location, "label": self.label}

    def assets(self, work: Path) -> dict[str, Path]:
        """The example rows, for warm-up, profiling and calibration at serve time."""
        path = work / EXAMPLES_ASSET
        write_rows(path, self.examples)
        return {EXAMPLES_ASSET: path}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        schema = IOSchema.from_dict(config["io"])
        rows = read_rows(directory / EXAMPLES_ASSET, EXAMPLES_ASSET)
        return cls(schema, rows, location=str(config.get("source", "")), label=str(config.get("label", "model")))


def _json_value(value: np.ndarray) -> Any:
    if value.dtype == np.float16:
        value = value.astype(np.float32)
    return value[()] if value.ndim == 0 else value  # a numpy scalar: orjson writes float32 at float32 precision


def _run_module(module: Any, batch: Arrays, ref: str) -> Any:
    import torch

    tensors = [torch.from_numpy(batch[name]) for name in batch]
    try:
        with torch.inference_mode():
            return module(*tensors)
    except Exception as exc:
        names = ", ".join(batch)
        raise InputError(
            f"MODEL {ref}: calling the module on the example inputs ({names}, in that order) raised "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
            "make the example inputs match forward()'s arguments",
        ) from None


def _output_arrays(outputs: Any, names: list[str]) -> list[np.ndarray]:
    values = list(outputs.values()) if isinstance(outputs, dict) else outputs
    values = values if isinstance(values, (tuple, list)) else [values]
    arrays = []
    for name, value in zip(names, values, strict=True):
        if not hasattr(value, "detach"):
            raise InputError(f"the model's output {name!r} is a {type(value).__name__}, not a tensor", "")
        arrays.append(value.detach().float().numpy() if value.is_floating_point() else value.detach().numpy())
    return arrays


def _rows(batch: dict[str, np.ndarray]) -> list[Row]:
    count = len(next(iter(batch.values())))
    return [{name: value[i] for name, value in batch.items()} for i in range(count)]


def _group(row: Row) -> tuple[tuple[int, ...], ...]:
    return tuple(value.shape for value in row.values())


def _check_names(arrays: dict[str, Any], schema: IOSchema, what: str) -> None:
    expected, given = set(schema.input_names), set(arrays)
    if expected != given:
        raise InputError(
            f"{what} names the inputs {sorted(given)}, the model takes {sorted(expected)}",
            "name them as the model does",
        )


def shape_problem(shape: tuple[int, ...], spec: TensorSpec) -> str | None:
    """What is wrong with `shape` (one row's, without the batch axis) for `spec`: its rank, a static size, or an
    empty dynamic axis (a row of nothing has no answer a model could give)."""
    wanted = spec.shape[1:]
    fits = len(shape) == len(wanted) and all(
        (w == n) if isinstance(w, int) else n >= 1 for w, n in zip(wanted, shape, strict=True)
    )
    if fits:
        return None
    return f"has shape {list(shape)} per row; this model takes {_v2_shape(spec)[1:]} (-1: any size from 1)"


def _v2(dtype: str) -> str:
    return V2_DATATYPES.get(dtype, dtype)


def _v2_shape(spec: TensorSpec) -> list[int | str]:
    return [-1 if isinstance(n, str) else n for n in spec.shape]


def _synthetic_rows(schema: IOSchema, path: Path, rows: int = 64) -> list[Row]:
    """Inputs for an ONNX file given without examples: standard normal values, possible only where every input
    is floating point with fixed sizes beyond the batch."""
    generator = np.random.default_rng(0)
    out = []
    for spec in schema.inputs:
        if not np.issubdtype(np.dtype(spec.dtype), np.floating) or any(isinstance(n, str) for n in spec.shape[1:]):
            raise InputError(
                f"{path}: input {spec.name!r} ({spec.dtype}, shape {_v2_shape(spec)}) cannot be made up",
                "pass --data FILE.npz or --example module:function with real inputs",
            )
    for _ in range(rows):
        out.append({
            spec.name: generator.standard_normal([int(n) for n in spec.shape[1:]]).astype(spec.dtype)
            for spec in schema.inputs
        })  # fmt: skip
    return out


def _onnx_has_conv(path: Path) -> bool:
    import onnx

    return any(node.op_type == "Conv" for node in onnx.load(str(path), load_external_data=False).graph.node)
