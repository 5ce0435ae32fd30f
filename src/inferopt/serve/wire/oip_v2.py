"""The Open Inference Protocol v2 (KServe v2, Triton, MLServer), JSON over REST: named, typed, shaped tensors.

A request's `inputs` are tensors whose axis 0 is the batch; each row becomes one raw input of the task, and
rides the batcher and the cache like any other. The response stacks the rows' outputs back into tensors.
`data` may be flat (row-major) or nested, as the protocol allows; BYTES tensors hold UTF-8 strings. The
binary tensor extension is not supported: such a request gets a 400 that says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from inferopt.serve.errors import InvalidField, MalformedBody, PayloadTooLarge
from inferopt.serve.wire.json_body import decode_json, kind
from inferopt.tasks.base import V2_DATATYPES, InvalidInput, Task
from inferopt.typed_arrays import ValueProblem, typed_array

NUMPY_OF = {v2: np.dtype(name) for name, v2 in V2_DATATYPES.items() if v2 != "BYTES"}
MAX_RANK = 16  # more dimensions than any model takes (numpy's own limit is 64)
BINARY_HEADER = "inference-header-content-length"


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Any]  # raw inputs of the task, one per row
    outputs: list[str] | None  # the outputs asked for (None: all)


def parse_infer(body: bytes, task: Task, *, max_items: int, binary_header: str | None = None) -> InferRequest:
    if binary_header is not None:
        raise MalformedBody("the binary tensor data extension is not supported; send the tensors as JSON data")
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InvalidField(f"the request body must be a JSON object, got {kind(data)}", param="body")
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidField(f"id must be a string, got {kind(request_id)}", param="id")
    tensors = _tensors(data.get("inputs"), max_items)
    check_parameters(data.get("parameters", {}))
    try:
        raws = task.from_tensors(tensors)
    except InvalidInput as exc:
        raise InvalidField(exc.message, param=exc.field) from None
    return InferRequest(request_id, raws, _requested_outputs(data.get("outputs")))


# Request parameters the protocol's own clients send (tritonclient sends binary_data_output on every request):
# accepted, and meaning nothing here, since the response is always JSON tensors and there are no sequences.
RESERVED_PARAMETERS = frozenset(
    {"binary_data_output", "sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "content_type"}
)


def check_parameters(parameters: object) -> None:
    """OIP v2 returns the model's own tensors, so no task parameter (an image's top_k) could change the answer:
    one is refused rather than ignored."""
    if not isinstance(parameters, dict):
        raise InvalidField(f"parameters must be an object, got {kind(parameters)}", param="parameters")
    for name in parameters:
        if name not in RESERVED_PARAMETERS:
            raise InvalidField(
                f"parameter {name!r} has no effect on OIP v2, which returns the model's tensors "
                "(task parameters such as top_k go to KServe v1 :predict)",
                param=f"parameters.{name}",
            )


def _tensors(value: object, max_items: int) -> dict[str, Any]:
    if not isinstance(value, list) or not value:
        raise InvalidField("inputs must be a non-empty list of tensors", param="inputs")
    tensors: dict[str, Any] = {}
    rows = None
    for i, spec in enumerate(value):
        name, array = _tensor(spec, f"inputs[{i}]")
        if name in tensors:
            raise InvalidField(f"inputs[{i}]: input {name!r} is given twice", param=f"inputs[{i}].name")
        count = len(array)
        if rows is not None and count != rows:
            raise InvalidField(
                f"input {name!r} has {count} rows on axis 0 but the others have {rows}: every input of a "
                "request must have the same batch size",
                param=f"inputs[{i}].shape",
            )
        rows = count
        tensors[name] = array
    if rows == 0:
        raise InvalidField("the inputs have 0 rows; send at least one", param="inputs[0].shape")
    if rows is not None and rows > max_items:
        raise PayloadTooLarge(f"the inputs have {rows} rows; this server takes at most {max_items}", param="inputs")
    return tensors


def _tensor(spec: object, field: str) -> tuple[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidField(f"{field} must be an object with name, shape, datatype and data", param=field)
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidField(f"{field}.name must be a non-empty string", param=f"{field}.name")
    good_shape = isinstance(shape, list) and 0 < len(shape) <= MAX_RANK
    if not good_shape or not all(type(n) is int and n >= 0 for n in shape):  # type: ignore[union-attr]
        raise InvalidField(
            f"{field}.shape must be a list of 1 to {MAX_RANK} sizes >= 0, batch first, got {shape!r}",
            param=f"{field}.shape",
        )
    if datatype != "BYTES" and datatype not in NUMPY_OF:
        known = ", ".join(sorted([*NUMPY_OF, "BYTES"]))
        raise InvalidField(f"{field}.datatype {datatype!r} is not one of {known}", param=f"{field}.datatype")
    data = spec.get("data")
    if not isinstance(data, list):
        raise InvalidField(f"{field} ({name!r}) needs data: a list of values", param=f"{field}.data")
    needed = math.prod(shape)  # type: ignore[arg-type]
    if datatype == "BYTES":
        return name, _strings(data, shape, needed, name, field)  # type: ignore[arg-type]
    try:
        array = typed_array(data, NUMPY_OF[datatype])
    except ValueProblem as problem:
        raise InvalidField(f"{field} ({name!r}): its data {problem}", param=f"{field}.data") from None
    if array.ndim > 1 and list(array.shape) != shape:
        raise InvalidField(
            f"{field} ({name!r}): nested data of shape {list(array.shape)} does not match shape {shape}",
            param=f"{field}.data",
        )
    if array.size != needed:
        raise InvalidField(
            f"{field} ({name!r}) has {array.size} values but shape {shape} holds {needed}", param=f"{field}.data"
        )
    return name, array.reshape(shape)


def check_bytes_shape(count: int, shape: list[int], needed: int, name: str, field: str, where: str) -> None:
    """A BYTES tensor is 1-D [batch], and holds as many elements as its shape says (`where`: the field to blame)."""
    if len(shape) != 1:
        raise InvalidField(f"{field} ({name!r}): BYTES inputs must be 1-D [batch]", param=f"{field}.shape")
    if count != needed:
        raise InvalidField(f"{field} ({name!r}) has {count} values but shape {shape} holds {needed}", param=where)


def _strings(data: list[Any], shape: list[int], needed: int, name: str, field: str) -> list[str]:
    check_bytes_shape(len(data), shape, needed, name, field, f"{field}.data")
    if not all(isinstance(v, str) for v in data):
        raise InvalidField(f"{field} ({name!r}) is BYTES: its data must be strings", param=f"{field}.data")
    return data


def _requested_outputs(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise InvalidField('outputs must be a list of {"name": ...}', param="outputs")
    return [o["name"] for o in value]


def infer_response(
    model_name: str, model_version: str, request: InferRequest, per_item: Sequence[dict[str, np.ndarray]]
) -> bytes:
    """The outputs of every row, stacked back into tensors, in the protocol's JSON (data flat, row-major)."""
    outputs = [
        {
            "name": name,
            "datatype": V2_DATATYPES.get(stacked.dtype.name, stacked.dtype.name.upper()),
            "shape": list(stacked.shape),
            "data": stacked.ravel(),
        }
        for name, stacked in stacked_outputs(request.outputs, per_item)
    ]
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def stacked_outputs(
    names: Sequence[str] | None, per_item: Sequence[dict[str, np.ndarray]]
) -> list[tuple[str, np.ndarray]]:
    """Each output asked for (None: all), its rows stacked back into one tensor, batch first."""
    chosen = names if names is not None else list(per_item[0])
    return [(name, np.stack([np.asarray(item[name]) for item in per_item])) for name in chosen]


def check_outputs(request: InferRequest, available: Sequence[str]) -> None:
    for name in request.outputs or ():
        if name not in available:
            raise InvalidField(
                f"output {name!r} is not an output of this model ({', '.join(available)})", param="outputs"
            )


def encode_infer_request(tensors: dict[str, np.ndarray | list[str]], request_id: str | None = None) -> bytes:
    """A client's request body for `tensors` (name -> array, batch first; a list of str for BYTES): what
    `inferopt load` and `profile` send, and what the tests send."""
    inputs: list[dict[str, Any]] = []
    for name, value in tensors.items():
        if isinstance(value, list):
            inputs.append({"name": name, "datatype": "BYTES", "shape": [len(value)], "data": value})
            continue
        array = np.asarray(value)
        inputs.append({
            "name": name,
            "datatype": V2_DATATYPES[array.dtype.name],
            "shape": list(array.shape),
            "data": array.ravel(),
        })  # fmt: skip
    body: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_outputs(body: bytes) -> dict[str, np.ndarray]:
    """A response's output tensors (name -> array): the client side of infer_response."""
    data = orjson.loads(body)
    out = {}
    for tensor in data["outputs"]:
        dtype = NUMPY_OF.get(tensor["datatype"], np.dtype(object))
        out[tensor["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
    return out
