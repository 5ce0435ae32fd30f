"""OpenAI-compatible `POST /v1/embeddings` and `GET /v1/models`, for text encoders.

The embeddings route is the hot path: `InferoptApp` dispatches it straight to `create_embeddings`, past
FastAPI's layers (see app.py). Each response reuses its items' cached JSON for the float format.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from inferopt.serve.http import (
    ERROR_RESPONSES,
    json_response,
    ready_model,
    serve_inference,
)
from inferopt.serve.inference import Rendered
from inferopt.serve.service import Computed
from inferopt.serve.state import Ready
from inferopt.serve.wire.openai import (
    EmbeddingRequest,
    EmbeddingRequestDoc,
    EmbeddingResponseDoc,
    ErrorDoc,
    embedding_response,
    parse_embedding_request,
)
from inferopt.tasks.base import OPENAI_EMBEDDINGS

router = APIRouter()
EMBEDDINGS_PATH = "/v1/embeddings"
_ERRORS = {code: {"model": ErrorDoc, **doc} for code, doc in ERROR_RESPONSES.items()}


@router.post(
    EMBEDDINGS_PATH,
    summary="Create embeddings (OpenAI-compatible)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EmbeddingRequestDoc.model_json_schema()}},
        }
    },
    responses={200: {"model": EmbeddingResponseDoc, "description": "Embeddings, in input order"}, **_ERRORS},
)
async def create_embeddings(request: Request) -> Response:
    return await serve_inference(request, _parse, _render, protocol=OPENAI_EMBEDDINGS, plain=False)


def _parse(body: bytes, ready: Ready) -> tuple[EmbeddingRequest, list[Any]]:
    parsed = parse_embedding_request(body, max_items=ready.max_items, dim=ready.dim)
    return parsed, parsed.texts


def _render(ready: Ready, parsed: EmbeddingRequest, results: list[Computed]) -> Rendered:
    started = time.perf_counter()
    entries = [c.result for c in results]
    vectors = [next(iter(e.outputs.values())) for e in entries]
    tokens = sum(e.cost for e in entries)
    name = parsed.model or ready.model.public_name
    payload = embedding_response(name, parsed.encoding_format, vectors, tokens, [e.json for e in entries])
    built = time.perf_counter()
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    truncated = sum(e.truncated for e in entries)
    headers = [(b"x-truncated-inputs", str(truncated).encode())] if truncated else []
    return Rendered(content, built - started, headers, {"tokens": tokens})


@router.get("/v1/models", summary="The model this server serves, under each of its names (OpenAI-compatible)")
async def list_models(request: Request) -> Response:
    ready = ready_model(request, OPENAI_EMBEDDINGS, plain=False)
    if isinstance(ready, Response):
        return ready
    model = ready.model
    card = {
        "object": "model",
        "created": 0,
        "owned_by": "inferopt",
        "artifact_id": model.artifact_id,
        "dimensions": ready.dim,
        "max_length": model.task.max_cost,
        "max_batch": ready.policy.max_batch,
        "sessions": len(model.backends),
    }
    return json_response({"object": "list", "data": [{"id": n, **card} for n in (model.name, *model.aliases)]})
