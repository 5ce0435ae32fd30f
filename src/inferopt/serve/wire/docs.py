"""The request bodies of the KServe v1, Open Inference Protocol v2 and jobs routes, as /openapi.json documents
them: what the parsers in this package accept, no more and no less, so that a client (or a schema-driven
fuzzer) generated from the schema sends what the server takes. The parsers stay hand-written (their errors
name the field); these models are documentation only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]  # fmt: skip

INSTANCES = (
    'The inputs, each in the task\'s JSON form (at most --max-items): a string or {"text": ...} for text, '
    '{input name: nested list} for tensors, {"b64": ...} for an image file, {"user_id": ...} for a '
    'recommender, {"application_id": ...} or the features for a risk scorer. Image files may instead be '
    "uploaded as multipart/form-data."
)


class PredictRequestDoc(BaseModel):
    model_config = ConfigDict(title="PredictRequest", extra="allow")

    instances: list[Any] = Field(min_length=1, description=INSTANCES)
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Applied to every instance (image: top_k; recommender: k, exclude_seen)."
    )


class JobRequestDoc(PredictRequestDoc):
    model_config = ConfigDict(title="JobRequest", extra="allow")

    model: str = Field(min_length=1, description="The model to run: its name, as :predict's path takes it.")


class TensorDoc(BaseModel):
    model_config = ConfigDict(title="InferInputTensor", extra="allow")

    name: str = Field(min_length=1, description="One of the model's inputs (GET /v2/models/{name} lists them).")
    datatype: Datatype
    shape: list[int] = Field(min_length=1, max_length=16, description="Batch first; each size >= 0.")
    data: list[Any] = Field(description="Flat (row-major) or nested; BYTES tensors hold UTF-8 strings.")
    parameters: dict[str, Any] = Field(default_factory=dict)


class RequestedOutputDoc(BaseModel):
    model_config = ConfigDict(title="InferRequestedOutput", extra="allow")

    name: str


class InferRequestDoc(BaseModel):
    model_config = ConfigDict(title="InferRequest", extra="allow")

    id: str | None = Field(None, description="Echoed in the response.")
    inputs: list[TensorDoc] = Field(min_length=1, description="The same number of rows on axis 0 in each.")
    outputs: list[RequestedOutputDoc] | None = Field(None, description="The outputs to return (default: all).")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Only the protocol's own (binary_data_output, priority, ...), which change nothing here.",
    )


def json_body(model: type[BaseModel], *, multipart: bool = False) -> dict[str, Any]:
    """FastAPI's openapi_extra for a route that parses its own body. Nested models are inlined: pydantic's
    `#/$defs/...` references would point nowhere inside an OpenAPI document."""
    schema = model.model_json_schema()
    content: dict[str, Any] = {"application/json": {"schema": _inlined(schema, schema.pop("$defs", {}))}}
    if multipart:
        content["multipart/form-data"] = {"schema": {"type": "object", "description": "image files, as file parts"}}
    return {"requestBody": {"required": True, "content": content}}


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inlined(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(value, defs) for value in node]
    return node
