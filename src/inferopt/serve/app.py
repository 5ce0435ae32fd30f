"""The HTTP face: module-level route handlers and `create_app`, which takes a ready model (or a function that
loads one) so that tests can serve a FakeBackend with the real tokenizer and no artifact.

Every successful /v1/embeddings response carries the stage split: `x-queue-time`, `x-inference-time`
(seconds) and `Server-Timing` (ms): decode, tokenize, queue, inference, postprocess, encode, total. For a
list request queue and inference are the max over its items; a cache hit has 0 for both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

import inferopt
from inferopt.serve.access_log import AccessLog
from inferopt.serve.config import ServeConfig
from inferopt.serve.errors import InvalidField, PayloadTooLarge, ServeError, as_serve_error
from inferopt.serve.metrics import CONTENT_TYPE, ServeMetrics
from inferopt.serve.middleware import LOG_FIELDS, REQUEST_ID, STARTED, Receive, RequestContext, Scope, Send
from inferopt.serve.schemas import (
    EmbeddingRequest,
    EmbeddingRequestDoc,
    EmbeddingResponseDoc,
    ErrorDoc,
    embedding_response,
    parse_embedding_request,
)
from inferopt.serve.service import Computed
from inferopt.serve.state import ModelSource, Ready, ServerState

log = logging.getLogger("inferopt.serve")
router = APIRouter()
EMBEDDINGS_PATH = "/v1/embeddings"
TIMEOUT_HEADER = "x-request-timeout-ms"
STAGE_ORDER = ("decode", "tokenize", "queue", "inference", "postprocess", "encode", "total")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorDoc, "description": text}
    for code, text in {
        400: "Malformed JSON or non-UTF-8 body",
        413: "Body or item count over the limit",
        422: "A field is invalid (the message names it)",
        429: "Queue full; see Retry-After",
        503: "Not ready, or shutting down",
        504: "Deadline passed",
        500: "Internal error (logged with the request id)",
    }.items()
}


def create_app(
    config: ServeConfig,
    source: ModelSource,
    *,
    metrics: ServeMetrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """The app. Its access log (when config.access_log) goes to `access_log`, or to stderr."""
    metrics = metrics or ServeMetrics()
    requests_log = (access_log or AccessLog()) if config.access_log else None
    state = ServerState(config, source, metrics, on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server listens (live, not ready) while the model warms up.
        loading = asyncio.get_running_loop().create_task(state.start())
        try:
            yield
        finally:
            loading.cancel()
            await state.stop()

    app = InferoptApp(
        title="inferopt",
        version=inferopt.__version__,
        lifespan=lifespan,
        redoc_url=None,
        description="Sentence embeddings from an inferopt artifact, OpenAI-compatible.",
    )
    app.state.inferopt = state
    app.include_router(router)
    app.add_middleware(RequestContext, metrics=metrics, access_log=requests_log)
    app.embeddings_route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == EMBEDDINGS_PATH)
    app.hot_path = RequestContext(_embeddings_asgi, metrics, requests_log)
    return app


class InferoptApp(FastAPI):
    """FastAPI, with POST /v1/embeddings dispatched straight to its handler inside RequestContext.

    Profiled under load, about 40% of the event loop's CPU went to FastAPI's and Starlette's layers around that
    handler (route matching, dependency solving, exit-stack and exception middlewares), none of which it uses:
    it parses its own body and turns every error into a response itself. The route stays registered, so /docs
    documents it; every other path takes the full stack.
    """

    embeddings_route: APIRoute
    hot_path: RequestContext

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EMBEDDINGS_PATH and scope["method"] == "POST":
            scope["app"] = self  # what Starlette's routing would have set: the handler reads app.state
            scope["route"] = self.embeddings_route  # the metrics label
            await self.hot_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _embeddings_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    response = await create_embeddings(Request(scope, receive))
    await response(scope, receive, send)


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.inferopt
    return state


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
    state = server_state(request)
    started = time.perf_counter()
    request_id = request.scope.get(REQUEST_ID, "-")
    try:
        ready = state.require_ready()
        deadline = time.monotonic() + _timeout_s(request, state.config)
        body = await _read_body(request, state.config.max_request_bytes)
        parsed = parse_embedding_request(
            body,
            max_items=state.config.items_per_request,
            dim=ready.dim,
            model_ok=ready.model.answers_to,
            model_name=ready.model.name,
        )
        decoded = time.perf_counter()
        results = await ready.service.embed(parsed.texts, deadline)
        return _render(request, ready, parsed, results, started, decoded)
    except Exception as exc:
        error = as_serve_error(exc, request_id)
        if error.status >= 500 and error.reason == "internal":
            log.error("request %s failed", request_id, exc_info=exc)
        state.metrics.rejected.labels(error.reason).inc()
        return error_response(error)


@router.get("/v1/models", summary="The model this server serves (OpenAI-compatible)")
async def list_models(request: Request) -> Response:
    try:
        ready = server_state(request).require_ready()
    except ServeError as exc:
        return error_response(exc)
    card = {
        "id": ready.model.name,
        "object": "model",
        "created": 0,
        "owned_by": "inferopt",
        "artifact_id": ready.model.artifact_id,
        "dimensions": ready.dim,
        "max_length": ready.model.max_length,
        "max_batch": ready.policy.max_batch,
        "sessions": len(ready.model.backends),
    }
    return _json({"object": "list", "data": [card]})


@router.get("/health/live", summary="200 while the process serves HTTP")
async def health_live() -> Response:
    return _json({"status": "live"})


@router.get("/health/ready", summary="200 once the model is loaded and warm; 503 while loading or draining")
async def health_ready(request: Request) -> Response:
    state = server_state(request)
    if state.phase == "ready" and state.ready is not None:
        return _json({"status": "ready", "model": state.ready.model.name, "artifact_id": state.ready.model.artifact_id})
    return _json({"status": state.phase, "detail": state.detail}, status=503)


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus_metrics(request: Request) -> Response:
    return Response(server_state(request).metrics.render(), media_type=CONTENT_TYPE)


def error_response(error: ServeError) -> Response:
    return _json(error.body(), status=error.status, headers=error.headers())


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def _timeout_s(request: Request, config: ServeConfig) -> float:
    """--timeout-ms, or the caller's x-request-timeout-ms when shorter: a client may tighten, not loosen."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return config.timeout_ms / 1000.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise InvalidField(
            f"header {TIMEOUT_HEADER} must be a positive number of milliseconds, got {raw!r}", param=TIMEOUT_HEADER
        )
    return min(value, config.timeout_ms) / 1000.0


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes, before it is all buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the request body is {declared} bytes; the limit is {limit} (--max-request-bytes)", param="body"
        )
    chunks, size = [], 0
    more = True
    while more:  # ASGI messages straight from receive(): Request.stream()'s generator is a few us per request
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the request body is over the limit of {limit} bytes (--max-request-bytes)", param="body"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _render(
    request: Request, ready: Ready, parsed: EmbeddingRequest, results: list[Computed], started: float, decoded: float
) -> Response:
    post_started = time.perf_counter()
    vectors = [c.embedding.vector for c in results]
    encoded = [c.embedding.json for c in results]
    payload = embedding_response(ready.model.name, parsed.encoding_format, vectors, _tokens(results), encoded)
    encode_started = time.perf_counter()
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    finished = time.perf_counter()
    timings = {
        "decode": decoded - started + max(c.lookup_s for c in results),
        "tokenize": max(c.tokenize_s for c in results),
        "queue": max(c.queue_s for c in results),
        "inference": max(c.inference_s for c in results),
        "postprocess": encode_started - post_started,
        "encode": finished - encode_started,
        "total": finished - request.scope.get(STARTED, started),
    }
    ready.service.metrics.observe_stages(timings)
    headers = _timing_headers(timings)
    truncated = sum(c.embedding.truncated for c in results)
    if truncated:
        headers.append((b"x-truncated-inputs", str(truncated).encode()))
    request.scope[LOG_FIELDS] = {
        "items": len(results),
        "tokens": _tokens(results),
        "cached": sum(c.source != "model" for c in results),
        "queue_ms": round(timings["queue"] * 1000, 3),
        "inference_ms": round(timings["inference"] * 1000, 3),
    }
    return JSONBytesResponse(content, headers)


class JSONBytesResponse(Response):
    """A 200 with a JSON body and headers given as bytes: Starlette's init_headers would encode and scan them
    again, a few us on the hot path of every request."""

    def __init__(self, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [(b"content-length", b"%d" % len(content)), (b"content-type", b"application/json"), *headers]


def _timing_headers(timings: dict[str, float]) -> list[tuple[bytes, bytes]]:
    """The stage split for clients and `inferopt profile`: seconds in x-*-time, ms in Server-Timing."""
    server_timing = ", ".join(f"{stage};dur={timings[stage] * 1000:.3f}" for stage in STAGE_ORDER)
    return [
        (b"x-queue-time", b"%.6f" % timings["queue"]),
        (b"x-inference-time", b"%.6f" % timings["inference"]),
        (b"server-timing", server_timing.encode()),
    ]


def _tokens(results: list[Computed]) -> int:
    return sum(c.embedding.tokens for c in results)
