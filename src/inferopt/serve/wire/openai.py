"""The /v1/embeddings request and response, compatible with OpenAI's embeddings API.

Requests are parsed by hand (orjson, then `parse_embedding_request`) rather than by FastAPI's validation:
that is what lets malformed JSON be a 400 rather than a 422, each message name the exact field
(`input[3]`), and the hot path skip a model round-trip. The pydantic models below document the API in
/docs; `test_schemas` keeps the two in step.

The server serves one model, so like text-embeddings-inference it answers whatever `model` a client names
(`text-embedding-3-small`, the openai client's `default`): code written for OpenAI works unchanged.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from inferopt.serve.errors import InvalidField, PayloadTooLarge
from inferopt.serve.wire.json_body import decode_json, kind

ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: list[str]
    encoding_format: str = "float"
    model: str | None = None  # as the client named it: echoed in the response


def parse_embedding_request(body: bytes, *, max_items: int, dim: int) -> EmbeddingRequest:
    """Validate a /v1/embeddings body; raises MalformedBody (400), PayloadTooLarge (413) or InvalidField (422)."""
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InvalidField(f"the request body must be a JSON object, got {kind(data)}", param="body")
    texts = _parse_input(data.get("input"), "input" in data, max_items)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidField(f"model must be a string, got {kind(model)}", param="model")
    encoding = data.get("encoding_format", "float")
    if encoding not in ENCODING_FORMATS:
        raise InvalidField(f"encoding_format must be 'float' or 'base64', got {encoding!r}", param="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions != dim):
        raise InvalidField(f"dimensions must be {dim} for this model, got {dimensions!r}", param="dimensions")
    return EmbeddingRequest(texts, encoding, model)


def embedding_response(
    model_name: str,
    encoding_format: str,
    vectors: Sequence[np.ndarray],
    tokens: int,
    float_json: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """The /v1/embeddings response body, ready for orjson (OPT_SERIALIZE_NUMPY writes the float vectors).
    `float_json`: the vectors already encoded as JSON arrays, used as they are for the float format."""
    if encoding_format == "base64":
        # OpenAI's base64 format: the little-endian float32 bytes of each vector.
        embeddings: list[object] = [base64.b64encode(v.astype("<f4", copy=False).tobytes()).decode() for v in vectors]
    elif float_json is not None:
        embeddings = [orjson.Fragment(encoded) for encoded in float_json]
    else:
        embeddings = list(vectors)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)],
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _parse_input(value: object, present: bool, max_items: int) -> list[str]:
    if not present:
        raise InvalidField("input is required: a string or a list of strings", param="input")
    if isinstance(value, str):
        _check_text(value, "input")
        return [value]
    if not isinstance(value, list):
        raise InvalidField(f"input must be a string or a list of strings, got {kind(value)}", param="input")
    if not value:
        raise InvalidField("input is an empty list; send at least one string", param="input")
    if len(value) > max_items:
        raise PayloadTooLarge(
            f"input has {len(value)} items; this server takes at most {max_items} per request", param="input"
        )
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise InvalidField(f"input[{i}] must be a string, got {kind(text)}", param=f"input[{i}]")
        _check_text(text, f"input[{i}]")
    return value


def _check_text(text: str, field: str) -> None:
    if not text.strip():
        raise InvalidField(f"{field} is empty or only whitespace; there is nothing to embed", param=field)


# -- documentation models (/docs, /openapi.json) ---------------------------------------------------------


NonBlank = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]  # what _check_text takes


class EmbeddingRequestDoc(BaseModel):
    model_config = ConfigDict(title="EmbeddingRequest", extra="allow")

    input: NonBlank | Annotated[list[NonBlank], Field(min_length=1)] = Field(
        description="Text, or a list of texts (at most --max-items); none empty or only whitespace."
    )
    model: str | None = Field(None, description="Optional and any name: the server serves one model.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: the little-endian float32 bytes of each vector, base64-encoded."
    )
    dimensions: int | None = Field(None, description="Optional; if given, must equal the model's dimension.")
    user: str | None = Field(None, description="Accepted and ignored, for OpenAI client compatibility.")


class EmbeddingDoc(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class UsageDoc(BaseModel):
    prompt_tokens: int = Field(description="Tokens embedded, after truncation at the model's max length.")
    total_tokens: int


class EmbeddingResponseDoc(BaseModel):
    model_config = ConfigDict(title="EmbeddingResponse")

    object: Literal["list"] = "list"
    data: list[EmbeddingDoc]
    model: str
    usage: UsageDoc


class ErrorDetailDoc(BaseModel):
    message: str
    type: str
    param: str | None
    code: int


class ErrorDoc(BaseModel):
    model_config = ConfigDict(title="Error")

    error: ErrorDetailDoc
