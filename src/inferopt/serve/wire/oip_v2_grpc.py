"""The Open Inference Protocol v2 over gRPC: its messages, and tensors into and out of them.

The messages come from the descriptor set protoc builds from `serve/protocols/oip_v2.proto` (`make proto`),
loaded into a pool of our own rather than protobuf's default one: the protocol's package (`inference`) is the
same in tritonclient's and KServe's generated code, and a second copy in the default pool would refuse to load
in a process that holds both (a client's tests, a Ray replica).

A request's tensors arrive as typed `contents` or as `raw_input_contents` (row-major little-endian bytes, what
tritonclient sends); each row becomes one raw input of the task, exactly as the JSON codec makes them
(serve/wire/oip_v2.py), so both ride the same batcher and cache. BYTES elements reach the task as `bytes`.
The response always carries raw output contents: packing thousands of floats as repeated fields costs more.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from inferopt.serve.errors import InvalidField, PayloadTooLarge
from inferopt.serve.wire.oip_v2 import (
    MAX_RANK,
    NUMPY_OF,
    InferRequest,
    check_bytes_shape,
    check_parameters,
    stacked_outputs,
)
from inferopt.tasks.base import V2_DATATYPES, InvalidInput, Task
from inferopt.typed_arrays import ValueProblem, typed_array

SERVICE = "inference.GRPCInferenceService"
DESCRIPTOR_SET = "oip_v2.binpb"


def _load_pool() -> descriptor_pool.DescriptorPool:
    data = resources.files("inferopt.serve.protocols").joinpath(DESCRIPTOR_SET).read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return pool


_POOL = _load_pool()


def message(name: str) -> Any:
    """The message class `inference.<name>` of the protocol."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest, ServerLiveResponse = message("ServerLiveRequest"), message("ServerLiveResponse")
ServerReadyRequest, ServerReadyResponse = message("ServerReadyRequest"), message("ServerReadyResponse")
ModelReadyRequest, ModelReadyResponse = message("ModelReadyRequest"), message("ModelReadyResponse")
ServerMetadataRequest, ServerMetadataResponse = message("ServerMetadataRequest"), message("ServerMetadataResponse")
ModelMetadataRequest, ModelMetadataResponse = message("ModelMetadataRequest"), message("ModelMetadataResponse")
ModelInferRequest, ModelInferResponse = message("ModelInferRequest"), message("ModelInferResponse")

# The call's name -> (request class, response class): what the server registers and a client stubs.
CALLS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (ServerLiveRequest, ServerLiveResponse),
    "ServerReady": (ServerReadyRequest, ServerReadyResponse),
    "ModelReady": (ModelReadyRequest, ModelReadyResponse),
    "ServerMetadata": (ServerMetadataRequest, ServerMetadataResponse),
    "ModelMetadata": (ModelMetadataRequest, ModelMetadataResponse),
    "ModelInfer": (ModelInferRequest, ModelInferResponse),
}

# Which typed field of InferTensorContents holds each datatype (FP16 has none: it travels raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH = struct.Struct("<I")  # a raw BYTES element's length prefix


def parse_infer_message(request: Any, task: Task, *, max_items: int) -> InferRequest:
    """A ModelInferRequest as the task's raw inputs, one per row; InvalidField (or PayloadTooLarge) naming the
    field that is wrong."""
    inputs = request.inputs
    if not inputs:
        raise InvalidField("inputs must be a non-empty list of tensors", param="inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidField(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs: give one per input, in order, "
            "or none (and typed contents)",
            param="raw_input_contents",
        )
    tensors: dict[str, Any] = {}
    rows: int | None = None
    for i, tensor in enumerate(inputs):
        field = f"inputs[{i}]"
        if not tensor.name:
            raise InvalidField(f"{field}.name must be a non-empty string", param=f"{field}.name")
        if tensor.name in tensors:
            raise InvalidField(f"{field}: input {tensor.name!r} is given twice", param=f"{field}.name")
        value = _tensor(tensor, raw[i] if raw else None, field)
        if rows is not None and len(value) != rows:
            raise InvalidField(
                f"input {tensor.name!r} has {len(value)} rows on axis 0 but the others have {rows}: every input "
                "of a request must have the same batch size",
                param=f"{field}.shape",
            )
        rows = len(value)
        tensors[tensor.name] = value
    if rows == 0:
        raise InvalidField("the inputs have 0 rows; send at least one", param="inputs[0].shape")
    if rows is not None and rows > max_items:
        raise PayloadTooLarge(f"the inputs have {rows} rows; this server takes at most {max_items}", param="inputs")
    check_parameters({name: None for name in request.parameters})
    try:
        raws = task.from_tensors(tensors)
    except InvalidInput as exc:
        raise InvalidField(exc.message, param=exc.field) from None
    return InferRequest(request.id or None, raws, [o.name for o in request.outputs] or None)


def _tensor(tensor: Any, raw: bytes | None, field: str) -> np.ndarray | list[bytes]:
    shape = list(tensor.shape)
    if not 0 < len(shape) <= MAX_RANK or any(n < 0 for n in shape):
        raise InvalidField(
            f"{field}.shape must be 1 to {MAX_RANK} sizes >= 0, batch first, got {shape}", param=f"{field}.shape"
        )
    datatype = tensor.datatype
    if datatype != "BYTES" and datatype not in NUMPY_OF:
        known = ", ".join(sorted([*NUMPY_OF, "BYTES"]))
        raise InvalidField(f"{field}.datatype {datatype!r} is not one of {known}", param=f"{field}.datatype")
    needed = math.prod(shape)
    name = tensor.name
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidField(
                f"{field} ({name!r}) has typed contents and raw_input_contents: send one of them",
                param=f"{field}.contents",
            )
        if datatype == "BYTES":
            return _strings(_split_bytes(raw, name), shape, needed, name, field)
        return _raw_array(raw, NUMPY_OF[datatype], shape, needed, name)
    contents_field = CONTENTS_FIELD.get(datatype)
    if contents_field is None:
        raise InvalidField(
            f"{field} ({name!r}) is {datatype}, which has no typed contents: send it in raw_input_contents",
            param=f"{field}.contents",
        )
    _check_single_contents(tensor.contents, contents_field, name, field)
    values = getattr(tensor.contents, contents_field)
    if datatype == "BYTES":
        return _strings(list(values), shape, needed, name, field)
    try:
        array = typed_array(list(values), NUMPY_OF[datatype])
    except ValueProblem as problem:
        raise InvalidField(f"{field} ({name!r}): its {contents_field} {problem}", param=f"{field}.contents") from None
    if array.size != needed:
        raise InvalidField(
            f"{field} ({name!r}) has {array.size} values in {contents_field} but shape {shape} holds {needed}",
            param=f"{field}.contents",
        )
    return array.reshape(shape)


def _check_single_contents(contents: Any, expected: str, name: str, field: str) -> None:
    """Values in another datatype's field (fp32_contents for an INT64 input) are a client's mistake, not zeros."""
    for descriptor, _ in contents.ListFields():
        if descriptor.name != expected:
            raise InvalidField(
                f"{field} ({name!r}) carries {descriptor.name}, but its datatype's values go in {expected}",
                param=f"{field}.contents",
            )


def _raw_array(raw: bytes, dtype: np.dtype, shape: list[int], needed: int, name: str) -> np.ndarray:
    expected = needed * dtype.itemsize
    if len(raw) != expected:
        raise InvalidField(
            f"raw_input_contents of {name!r} has {len(raw)} bytes; shape {shape} of {dtype.name} needs {expected}",
            param="raw_input_contents",
        )
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidField(f"raw_input_contents of {name!r} holds NaN or infinity", param="raw_input_contents")
    return array.astype(dtype, copy=False)


def _split_bytes(raw: bytes, name: str) -> list[bytes]:
    """Raw BYTES: each element a 4-byte little-endian length, then that many bytes."""
    out, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InvalidField(
                f"raw_input_contents of {name!r} ends inside a length prefix", param="raw_input_contents"
            )
        (size,) = _LENGTH.unpack_from(raw, at)
        at += 4
        if at + size > len(raw):
            raise InvalidField(
                f"raw_input_contents of {name!r}: an element of {size} bytes runs past the end",
                param="raw_input_contents",
            )
        out.append(raw[at : at + size])
        at += size
    return out


def _strings(values: list[bytes], shape: list[int], needed: int, name: str, field: str) -> list[bytes]:
    check_bytes_shape(len(values), shape, needed, name, field, f"{field}.shape")
    return values


def infer_response_message(
    model_name: str, model_version: str, request: InferRequest, per_item: Sequence[dict[str, np.ndarray]]
) -> Any:
    """The rows' outputs stacked back into tensors, as a ModelInferResponse with raw contents."""
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=request.id or "")
    for name, stacked in stacked_outputs(request.outputs, per_item):
        response.outputs.add(name=name, datatype=_v2_type(stacked), shape=stacked.shape)
        response.raw_output_contents.append(_raw_bytes(stacked))
    return response


def _v2_type(array: np.ndarray) -> str:
    return "BYTES" if array.dtype.kind in "OSU" else V2_DATATYPES[array.dtype.name]


def _raw_bytes(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        parts = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
        return b"".join(_LENGTH.pack(len(p)) + p for p in parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


# -- the client side: what `inferopt`'s benchmarks and the tests send ------------------------------------------


def infer_request_message(
    model_name: str, tensors: dict[str, np.ndarray | Sequence[str | bytes]], *, raw: bool = True, request_id: str = ""
) -> Any:
    """A ModelInferRequest for `tensors` (name -> array, batch first; a list of str or bytes for BYTES), with
    raw contents (as tritonclient sends them) or typed ones."""
    request = ModelInferRequest(model_name=model_name, id=request_id)
    for name, value in tensors.items():
        if isinstance(value, np.ndarray):
            tensor = request.inputs.add(name=name, datatype=V2_DATATYPES[value.dtype.name], shape=value.shape)
            if raw:
                request.raw_input_contents.append(_raw_bytes(value))
            else:
                getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]).extend(value.ravel().tolist())
            continue
        elements = [v.encode() if isinstance(v, str) else v for v in value]
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=(len(elements),))
        if raw:
            request.raw_input_contents.append(_raw_bytes(np.asarray(elements, dtype=object)))
        else:
            tensor.contents.bytes_contents.extend(elements)
    return request


def response_outputs(response: Any) -> dict[str, np.ndarray]:
    """A ModelInferResponse's output tensors (name -> array), raw or typed."""
    out: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(response.outputs):
        shape = list(tensor.shape)
        if tensor.datatype == "BYTES":
            data = response.raw_output_contents[i] if response.raw_output_contents else None
            elements = _split_bytes(data, tensor.name) if data is not None else list(tensor.contents.bytes_contents)
            out[tensor.name] = np.asarray(elements, dtype=object).reshape(shape)
            continue
        dtype = NUMPY_OF[tensor.datatype]
        if response.raw_output_contents:
            out[tensor.name] = np.frombuffer(response.raw_output_contents[i], dtype.newbyteorder("<")).reshape(shape)
        else:
            values = getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype])
            out[tensor.name] = np.asarray(list(values), dtype=dtype).reshape(shape)
    return out
