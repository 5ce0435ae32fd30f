"""What every inference route shares: read the body under its limit, parse it with the protocol's codec, run
the inputs through the service, render, and time each stage (Server-Timing and the stage histograms); every
error becomes a response in the protocol's error shape, with its status code.

Every successful inference response carries the stage split: `x-queue-time`, `x-inference-time` (seconds)
and `Server-Timing` (ms): decode, features (only when the request read stored features), preprocess, queue,
inference, postprocess, encode, total. For a request of
several items, preprocess, queue and inference are the max over its items; a cache hit has 0 for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request, Response
from starlette.requests import ClientDisconnect

from inferopt.serve.config import ServeConfig
from inferopt.serve.errors import InvalidField, PayloadTooLarge, ServeError, as_serve_error
from inferopt.serve.inference import PRIORITY_HEADER, Render, answer, lane_of, require_model
from inferopt.serve.middleware import LOG_FIELDS, REQUEST_ID, SPAN, STARTED
from inferopt.serve.state import Ready, ServerState

log = logging.getLogger("inferopt.serve")
TIMEOUT_HEADER = "x-request-timeout-ms"
STAGE_ORDER = ("decode", "preprocess", "queue", "inference", "postprocess", "encode", "total")


Parse = Callable[[bytes, Ready], tuple[Any, list[Any]]]  # body -> (what render needs, the raw inputs)


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.inferopt
    return state


async def serve_inference(
    request: Request, parse: Parse, render: Render, *, protocol: str, name: str | None = None, plain: bool = True
) -> Response:
    """One inference request of `protocol` for the model `name` (None: the route names none). `plain`: errors
    in the {"error": message} shape (KServe, OIP) rather than OpenAI's."""
    state = server_state(request)
    started = time.perf_counter()
    request_id = request.scope.get(REQUEST_ID, "-")
    try:
        ready = require_model(state, protocol, name)
        deadline = time.monotonic() + timeout_s(request, state.config)
        lane = priority(request)
        body = await read_body(request, ready.max_request_bytes)
        parsed, inputs = parse(body, ready)
        span = request.scope.get(SPAN)
        answered = await answer(
            ready,
            parsed,
            inputs,
            render,
            deadline=deadline,
            lane=lane,
            started=started,
            decoded=time.perf_counter(),
            arrived=request.scope.get(STARTED, started),
            span=span,
        )
    except Exception as exc:
        error = as_serve_error(exc, request_id)
        if error.status >= 500 and error.reason == "internal":
            log.error("request %s failed", request_id, exc_info=exc)
        state.metrics.rejected.labels(error.reason).inc()
        span = request.scope.get(SPAN)
        if span is not None:
            span.error(error.reason, str(error))
        return error_response(error, plain=plain)
    timings, rendered = answered.timings, answered.rendered
    request.scope[LOG_FIELDS] = {
        "items": answered.items,
        "cached": answered.cached,
        "queue_ms": round(timings["queue"] * 1000, 3),
        "inference_ms": round(timings["inference"] * 1000, 3),
        **rendered.log,
    }
    return JSONBytesResponse(rendered.content, [*timing_headers(timings), *rendered.headers])


def ready_model(request: Request, protocol: str, name: str | None = None, *, plain: bool = True) -> Ready | Response:
    """For the metadata routes: the model the route names, or the error response (404, 503) to send instead."""
    try:
        return require_model(server_state(request), protocol, name)
    except ServeError as exc:
        return error_response(exc, plain=plain)


def error_response(error: ServeError, *, plain: bool = False) -> Response:
    return json_response(error.plain_body() if plain else error.body(), status=error.status, headers=error.headers())


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def timeout_s(request: Request, config: ServeConfig) -> float:
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


def priority(request: Request) -> str:
    """The request's lane: x-priority high (the default for these interactive routes; jobs run low) or low."""
    return lane_of(request.headers.get(PRIORITY_HEADER))


async def read_body(request: Request, limit: int, flag: str = "--max-request-bytes") -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (set by `flag`), before it is all buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit} ({flag})", param="body")
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
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes ({flag})", param="body")
        chunks.append(chunk)
    return b"".join(chunks)


class JSONBytesResponse(Response):
    """A 200 with a JSON body and headers given as bytes: Starlette's init_headers would encode and scan them
    again, a few us on the hot path of every request."""

    def __init__(self, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [(b"content-length", b"%d" % len(content)), (b"content-type", b"application/json"), *headers]


def timing_headers(timings: dict[str, float]) -> list[tuple[bytes, bytes]]:
    """The stage split for clients and `inferopt profile`: seconds in x-*-time, ms in Server-Timing."""
    stages = (*STAGE_ORDER[:1], "features", *STAGE_ORDER[1:]) if "features" in timings else STAGE_ORDER
    server_timing = ", ".join(f"{stage};dur={timings[stage] * 1000:.3f}" for stage in stages)
    return [
        (b"x-queue-time", b"%.6f" % timings["queue"]),
        (b"x-inference-time", b"%.6f" % timings["inference"]),
        (b"server-timing", server_timing.encode()),
    ]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text}
    for code, text in {
        400: "Malformed JSON or non-UTF-8 body",
        401: "Missing or unknown API key (when the server has --api-key); see WWW-Authenticate",
        404: "Unknown model, or a protocol this model does not speak",
        413: "Body or item count over the limit",
        422: "A field is invalid (the message names it)",
        429: "Queue full; see Retry-After",
        503: "Not ready, or shutting down",
        504: "Deadline passed",
        500: "Internal error (logged with the request id)",
    }.items()
}
