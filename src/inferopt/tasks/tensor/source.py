"""Where a user's own model comes from: `module:function` returning a torch.nn.Module, `module:function`
returning example inputs, or a ready .onnx file; and the io schema each implies. Every mistake is one line
that names what was wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import InputError
from inferopt.tasks.base import IOSchema, TensorSpec
from inferopt.tasks.user_code import call, resolve

Batch = dict[str, np.ndarray]
ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
}


def example_batches(path: str) -> list[Batch]:
    """The example inputs `module:function` returns: a dict of input name -> tensor (batch on axis 0), or a list
    of such dicts of different shapes (the axes that differ are dynamic)."""
    value = call(resolve(path, "--example"), path, "--example")
    batches = value if isinstance(value, (list, tuple)) else [value]
    if not batches:
        raise InputError(f"--example {path}() returned an empty list", "return at least one dict of inputs")
    checked = [
        check_batch(b, f"--example {path}()" + (f"[{i}]" if len(batches) > 1 else "")) for i, b in enumerate(batches)
    ]
    names = [list(b) for b in checked]
    if any(n != names[0] for n in names):
        raise InputError(f"--example {path}(): the example dicts name different inputs ({names})", "use one set")
    for name in names[0]:
        dtypes = {b[name].dtype.name for b in checked}
        ndims = {b[name].ndim for b in checked}
        if len(dtypes) > 1 or len(ndims) > 1:
            raise InputError(f"--example {path}(): input {name!r} changes dtype or rank between examples", "")
    return checked


def check_batch(value: Any, what: str) -> Batch:
    """A dict of input name -> tensor or array with a batch axis, all of one batch size."""
    if not isinstance(value, dict) or not value:
        raise InputError(f"{what} returned {type(value).__name__}, not a dict of input name -> tensor", "")
    batch: Batch = {}
    for name, tensor in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"{what}: input name {name!r} is not an identifier", "name inputs like python variables")
        array = _numpy(tensor)
        if array is None:
            raise InputError(f"{what}: input {name!r} is a {type(tensor).__name__}, not a tensor or array", "")
        if array.ndim == 0:
            raise InputError(f"{what}: input {name!r} is a scalar; it needs a batch axis first", "add axis 0")
        if array.dtype.name not in ONNX_DTYPES.values():
            raise InputError(f"{what}: input {name!r} has dtype {array.dtype}, which ONNX export does not take", "")
        batch[name] = np.ascontiguousarray(array)
    sizes = {name: a.shape[0] for name, a in batch.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{n}: {s}" for n, s in sizes.items())
        raise InputError(f"{what}: the inputs have different batch sizes on axis 0 ({listed})", "give them one size")
    if next(iter(sizes.values())) == 0:
        raise InputError(f"{what}: the batch is empty (axis 0 has size 0)", "give at least one row")
    return batch


def _numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def parse_dynamic_axes(specs: tuple[str, ...], inputs: dict[str, int]) -> dict[str, dict[int, str]]:
    """`--dynamic-axes input:axis[:name]` -> {input: {axis: name}}; `inputs`: input name -> rank."""
    axes: dict[str, dict[int, str]] = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        axis_text, _, label = rest.partition(":")
        if name not in inputs:
            raise InputError(f"--dynamic-axes {spec!r}: no input is called {name!r}", f"inputs: {', '.join(inputs)}")
        if not axis_text.isdigit() or not 1 <= int(axis_text) < inputs[name]:
            raise InputError(
                f"--dynamic-axes {spec!r}: axis {axis_text!r} is not an axis of {name} beyond the batch",
                f"give 1 to {inputs[name] - 1}",
            )
        axes.setdefault(name, {})[int(axis_text)] = label or f"{name}_axis{axis_text}"
    return axes


def input_specs(batches: list[Batch], named: dict[str, dict[int, str]]) -> tuple[TensorSpec, ...]:
    """Axis 0 is the batch; an axis is dynamic where `named` says so or where the examples differ on it."""
    specs = []
    for name, first in batches[0].items():
        shape: list[int | str] = ["batch"]
        for axis in range(1, first.ndim):
            sizes = {b[name].shape[axis] for b in batches}
            if axis in named.get(name, {}):
                shape.append(named[name][axis])
            elif len(sizes) > 1:
                shape.append(f"{name}_axis{axis}")
            else:
                shape.append(int(first.shape[axis]))
        specs.append(TensorSpec(name, first.dtype.name, tuple(shape)))
    return tuple(specs)


def output_names(outputs: Any) -> list[str]:
    if isinstance(outputs, dict):
        return [str(k) for k in outputs]
    if isinstance(outputs, (tuple, list)):
        return [f"output_{i}" for i in range(len(outputs))]
    return ["output"]


def output_specs(
    names: list[str], values: list[np.ndarray], inputs: tuple[TensorSpec, ...], example: Batch
) -> tuple[TensorSpec, ...]:
    """Outputs: axis 0 the batch; an axis whose size matches a dynamic input axis in the example is that axis."""
    dynamic = {
        int(example[spec.name].shape[axis]): label for spec in inputs for axis, label in spec.dynamic_axes().items()
        if axis > 0
    }  # fmt: skip
    specs = []
    for name, value in zip(names, values, strict=True):
        if value.ndim == 0:
            raise InputError(f"the model's output {name!r} is a scalar; outputs need the batch on axis 0", "")
        shape: list[int | str] = ["batch", *(dynamic.get(int(n), int(n)) for n in value.shape[1:])]
        specs.append(TensorSpec(name, value.dtype.name, tuple(shape)))
    return tuple(specs)


def onnx_schema(path: Path) -> IOSchema:
    """The io schema an ONNX file declares: a named or unknown dimension is dynamic, axis 0 is the batch."""
    import onnx

    if not path.exists():
        raise InputError(f"MODEL {path} does not exist", "check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path} is not an ONNX model ({type(exc).__name__})", "pass a .onnx file") from None
    initializers = {i.name for i in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        dtype = ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise InputError(f"{path}: tensor {value.name!r} has an element type inferopt does not serve", "")
        dims: list[int | str] = []
        for axis, dim in enumerate(tensor.shape.dim):
            if axis == 0:
                if dim.HasField("dim_value"):
                    raise InputError(
                        f"{path}: the batch axis of {value.name!r} is fixed at {dim.dim_value}: it cannot batch",
                        "export it again with a dynamic batch axis: torch.onnx.export(..., dynamic_axes="
                        "{name: {0: 'batch'}})",
                    )
                dims.append("batch")
            elif dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or f"{value.name}_axis{axis}")
        if not dims:
            raise InputError(f"{path}: tensor {value.name!r} has no batch axis (a scalar)", "export with a batch axis")
        return TensorSpec(value.name, dtype, tuple(dims))

    inputs = tuple(spec(i) for i in model.graph.input if i.name not in initializers)
    return IOSchema(inputs, tuple(spec(o) for o in model.graph.output))
