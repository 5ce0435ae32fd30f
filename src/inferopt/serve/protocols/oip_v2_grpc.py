"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`: ServerLive, ServerReady,
ModelReady, ServerMetadata, ModelMetadata, ModelInfer), for every task.

It runs on the HTTP server's event loop and shares everything behind the routes: the model, its batchers, the
caches, the metrics (route label: the call's path; status: the HTTP status the same outcome gets, so the alert
rules cover both), the request spans and the access log. A gRPC deadline shortens the request's deadline as
x-request-timeout-ms does over HTTP; `x-priority` metadata picks the lane. Errors are the protocol's status
codes, their message naming the field: unknown model NOT_FOUND, a bad tensor INVALID_ARGUMENT, too many rows or
bytes and overload RESOURCE_EXHAUSTED (with `retry-after` trailing metadata), not ready or draining
UNAVAILABLE, a passed deadline DEADLINE_EXCEEDED, anything else INTERNAL (the cause only in the log).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

import inferopt
from inferopt.serve.access_log import AccessLog
from inferopt.serve.auth import OPEN_GRPC_CALLS, ApiKeys, Unauthorized
from inferopt.serve.config import ServeConfig
from inferopt.serve.errors import ModelNotFound, PayloadTooLarge, ServeError, as_serve_error
from inferopt.serve.inference import PRIORITY_HEADER, Rendered, answer, lane_of, require_model
from inferopt.serve.middleware import incoming_request_id, new_request_id
from inferopt.serve.service import Computed
from inferopt.serve.state import Ready, ServerState
from inferopt.serve.trace_context import REQUEST_SPAN, from_headers
from inferopt.serve.tracing import RequestSpan, Tracing
from inferopt.serve.wire import oip_v2_grpc as wire
from inferopt.serve.wire.oip_v2 import InferRequest, check_outputs
from inferopt.tasks.base import OIP_V2

log = logging.getLogger("inferopt.serve")
INFER_ROUTE = f"/{wire.SERVICE}/ModelInfer"
CLIENT_CLOSED = 499  # the status the metrics record for a call its caller cancelled
KEY_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("inferopt_grpc_key_id", default=None)
GRPC_MESSAGE_SLACK = 64 * 1024  # the message around the tensors: names, shapes, parameters

CODE_OF_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    CLIENT_CLOSED: grpc.StatusCode.CANCELLED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class InferenceServicer:
    """The six calls, against the server's state (loading, ready, draining) as the HTTP routes see it."""

    def __init__(self, state: ServerState, access_log: AccessLog | None, tracing: Tracing | None) -> None:
        self.state = state
        self.access_log = access_log
        self.tracing = tracing

    async def server_live(self, request: Any, context: aio.ServicerContext) -> Any:
        return wire.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: aio.ServicerContext) -> Any:
        return wire.ServerReadyResponse(ready=self.state.phase == "ready" and self.state.ready is not None)

    async def server_metadata(self, request: Any, context: aio.ServicerContext) -> Any:
        return wire.ServerMetadataResponse(name="inferopt", version=inferopt.__version__)

    async def model_ready(self, request: Any, context: aio.ServicerContext) -> Any:
        """Ready false (not an error) while the server loads or drains; NOT_FOUND for a model not served here."""
        try:
            self._model(request.name, request.version)
        except ModelNotFound as exc:
            await _abort(context, exc)
        except ServeError:
            return wire.ModelReadyResponse(ready=False)
        return wire.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: Any, context: aio.ServicerContext) -> Any:
        try:
            model = self._model(request.name, request.version).model
        except ServeError as exc:
            await _abort(context, exc)
        response = wire.ModelMetadataResponse(
            name=model.public_name, versions=[model.artifact_id], platform="onnxruntime_onnx"
        )
        for tensors, specs in ((response.inputs, model.task.v2_inputs()), (response.outputs, model.task.v2_outputs())):
            for spec in specs:
                tensors.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        return response

    def _model(self, name: str, version: str) -> Ready:
        ready = require_model(self.state, OIP_V2, name)
        if version and version != ready.model.artifact_id:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; this server serves version {ready.model.artifact_id!r}",
                param="model_version",
            )
        return ready

    async def model_infer(self, request: Any, context: aio.ServicerContext) -> Any:
        started = time.perf_counter()
        metadata = _metadata(context)
        request_id = incoming_request_id({"headers": metadata}) or new_request_id()
        trace = from_headers(metadata)
        span: RequestSpan | None = None
        token = None
        if self.tracing is not None:
            span, trace = self.tracing.start_request("gRPC ModelInfer", trace, request_id)
            token = REQUEST_SPAN.set(span.span.get_span_context())
        status, error = 200, None
        fields: dict[str, Any] = {}
        try:
            response, fields = await self._infer(request, context, metadata, started, span)
        except asyncio.CancelledError:  # the caller's deadline passed (504) or it cancelled the call (nginx's 499)
            remaining = context.time_remaining()
            status = 504 if remaining is not None and remaining <= 0 else CLIENT_CLOSED
            raise
        except Exception as exc:
            error = as_serve_error(exc, request_id)
            status = error.status
            if status >= 500 and error.reason == "internal":
                log.error("request %s failed", request_id, exc_info=exc)
            self.state.metrics.rejected.labels(error.reason).inc()
            if span is not None:
                span.error(error.reason, str(error))
        finally:
            seconds = time.perf_counter() - started
            self.state.metrics.observe_request(INFER_ROUTE, status, seconds)
            if self.access_log is not None:
                self._log(context, request_id, trace.trace_id, status, seconds, fields)
            if span is not None:
                REQUEST_SPAN.reset(token)  # type: ignore[arg-type]
                span.end_rpc(wire.SERVICE, "ModelInfer", _code(status).name)
        trailing = (("x-request-id", request_id), ("traceparent", trace.header().decode()))
        if error is not None:
            await _abort(context, error, trailing)
        context.set_trailing_metadata(trailing)
        return response

    async def _infer(
        self,
        request: Any,
        context: aio.ServicerContext,
        metadata: list[tuple[bytes, bytes]],
        started: float,
        span: RequestSpan | None,
    ) -> tuple[Any, dict[str, Any]]:
        ready = self._model(request.model_name, request.model_version)
        deadline = time.monotonic() + self._timeout_s(context)
        lane = lane_of(_value(metadata, PRIORITY_HEADER.encode()))
        size = request.ByteSize()
        if size > ready.max_request_bytes:
            raise PayloadTooLarge(
                f"the request message is {size} bytes; the limit is {ready.max_request_bytes} (--max-request-bytes)",
                param="body",
            )
        parsed = wire.parse_infer_message(request, ready.model.task, max_items=ready.max_items)
        check_outputs(parsed, list(ready.output_shapes))
        answered = await answer(
            ready,
            parsed,
            parsed.inputs,
            _render,
            deadline=deadline,
            lane=lane,
            started=started,
            decoded=time.perf_counter(),
            arrived=started,
            span=span,
        )
        timings = answered.timings
        fields = {
            "items": answered.items,
            "cached": answered.cached,
            "queue_ms": round(timings["queue"] * 1000, 3),
            "inference_ms": round(timings["inference"] * 1000, 3),
        }
        return answered.rendered.content, fields

    def _timeout_s(self, context: aio.ServicerContext) -> float:
        """--timeout-ms, or the caller's gRPC deadline when sooner."""
        remaining = context.time_remaining()
        limit = self.state.config.timeout_ms / 1000.0
        return limit if remaining is None else min(limit, max(0.0, remaining))

    def _log(
        self,
        context: aio.ServicerContext,
        request_id: str,
        trace_id: str,
        status: int,
        seconds: float,
        fields: dict[str, Any],
    ) -> None:
        assert self.access_log is not None
        self.access_log.write({
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "trace_id": trace_id,
            "method": "gRPC",
            "path": INFER_ROUTE,
            "status": status,
            "grpc_code": _code(status).name,
            "ms": round(seconds * 1000, 3),
            "client": context.peer(),
            **({"key_id": key} if (key := KEY_ID.get()) is not None else {}),
            **fields,
        })  # fmt: skip


def _render(ready: Ready, parsed: InferRequest, results: list[Computed]) -> Rendered:
    model = ready.model
    started = time.perf_counter()
    outputs = [c.result.outputs for c in results]
    message = wire.infer_response_message(model.public_name, model.artifact_id, parsed, outputs)
    # Serializing happens in grpc after the handler returns: building the message is the postprocess stage.
    return Rendered(message, postprocess_s=time.perf_counter() - started)


def _code(status: int) -> grpc.StatusCode:
    return grpc.StatusCode.OK if status == 200 else CODE_OF_STATUS.get(status, grpc.StatusCode.INTERNAL)


async def _abort(context: aio.ServicerContext, error: ServeError, trailing: tuple[tuple[str, str], ...] = ()) -> Any:
    """End the call with the error's status code and message (and retry-after, where HTTP would send it)."""
    extra = tuple(error.headers().items())
    await context.abort(_code(error.status), error.message, trailing_metadata=trailing + extra)


def _metadata(context: aio.ServicerContext) -> list[tuple[bytes, bytes]]:
    """The call's metadata as HTTP-style header pairs (what the trace and request-id readers take)."""
    pairs = []
    for key, value in context.invocation_metadata() or ():
        pairs.append((key.encode(), value if isinstance(value, bytes) else value.encode()))
    return pairs


def _value(metadata: list[tuple[bytes, bytes]], key: bytes) -> str | None:
    for name, value in metadata:
        if name == key:
            return value.decode(errors="replace")
    return None


Handler = Callable[[Any, aio.ServicerContext], Awaitable[Any]]


def service_handler(servicer: InferenceServicer, keys: ApiKeys | None = None) -> grpc.GenericRpcHandler:
    """The service's calls bound to `servicer`, with the protocol's message classes as their codecs; with API
    keys, every call but the two health ones needs `authorization: Bearer KEY` metadata."""
    methods: dict[str, Handler] = {
        "ServerLive": servicer.server_live,
        "ServerReady": servicer.server_ready,
        "ModelReady": servicer.model_ready,
        "ServerMetadata": servicer.server_metadata,
        "ModelMetadata": servicer.model_metadata,
        "ModelInfer": servicer.model_infer,
    }
    if keys is not None:
        methods = {
            name: m if name in OPEN_GRPC_CALLS else _keyed(m, keys, servicer.state) for name, m in methods.items()
        }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=wire.CALLS[name][0].FromString,
            response_serializer=wire.CALLS[name][1].SerializeToString,
        )
        for name, method in methods.items()
    }
    return grpc.method_handlers_generic_handler(wire.SERVICE, handlers)


def _keyed(method: Handler, keys: ApiKeys, state: ServerState) -> Handler:
    """`method`, once the call's metadata carries a known key: else UNAUTHENTICATED, counted as HTTP's 401 is."""

    async def call(request: Any, context: aio.ServicerContext) -> Any:
        values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        try:
            if len(values) > 1:
                raise Unauthorized("send one authorization metadata entry, not several", error="invalid_request")
            key = keys.identify(values[0] if values and isinstance(values[0], str) else None)
        except Unauthorized as exc:
            state.metrics.rejected.labels(exc.reason).inc()
            await _abort(context, exc)
        token = KEY_ID.set(key)  # the access log's key id (the call's own task: nothing else sees it)
        try:
            return await method(request, context)
        finally:
            KEY_ID.reset(token)

    return call


class GrpcListener:
    """The gRPC server beside the HTTP one: started when the app starts, drained when it stops."""

    def __init__(
        self,
        config: ServeConfig,
        state: ServerState,
        access_log: AccessLog | None,
        tracing: Tracing | None,
        keys: ApiKeys | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.servicer = InferenceServicer(state, access_log, tracing)
        self.server: aio.Server | None = None
        self.port: int | None = None  # the TCP port bound (the one asked for, or the free one port 0 found)

    async def start(self) -> None:
        config = self.config
        limit = (config.max_request_bytes or MAX_TASK_REQUEST_BYTES) + GRPC_MESSAGE_SLACK
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
            ]
        )
        server.add_generic_rpc_handlers((service_handler(self.servicer, self.keys),))
        targets = []
        if config.grpc_port is not None:
            targets.append(f"{_host(config.host)}:{config.grpc_port}")
        if config.grpc_uds is not None:
            targets.append(f"unix:{config.grpc_uds}")
        credentials = _server_credentials(config)
        for target in targets:
            try:
                if credentials is not None and not target.startswith("unix:"):
                    bound = server.add_secure_port(target, credentials)
                else:
                    bound = server.add_insecure_port(target)
            except RuntimeError as exc:
                raise OSError(f"gRPC could not listen on {target}: {exc}") from None
            if not target.startswith("unix:"):
                self.port = bound
        await server.start()
        self.server = server
        log.info("gRPC (Open Inference Protocol v2) listening on %s", ", ".join(_shown(t, self.port) for t in targets))

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls, let those in flight finish within `grace_s`."""
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None


def _server_credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    """TLS with the HTTP server's certificate and key (--ssl-certfile / --ssl-keyfile), for the TCP port; a Unix
    socket stays plain (only this machine reaches it, as with the HTTP --uds)."""
    if config.ssl_certfile is None or config.ssl_keyfile is None:
        return None
    chain, key = config.ssl_certfile.read_bytes(), config.ssl_keyfile.read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


MAX_TASK_REQUEST_BYTES = 32 * 1024 * 1024  # the largest any task takes by default (images); each model checks its own


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _shown(target: str, port: int | None) -> str:
    return target if target.startswith("unix:") or port is None else f"{target.rsplit(':', 1)[0]}:{port}"
