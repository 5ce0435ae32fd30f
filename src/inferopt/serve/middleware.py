"""Request context as plain ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): a request id
and a W3C traceparent on every response, the request-duration histogram by route template, and one JSON
access-log line with the trace id."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from inferopt.serve.access_log import AccessLog
from inferopt.serve.auth import ApiKeys, Unauthorized
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.trace_context import REQUEST_SPAN, TraceContext, from_headers
from inferopt.serve.tracing import Tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID = "inferopt.request_id"  # scope key the handlers read the id from
LOG_FIELDS = "inferopt.log"  # scope key handlers put extra access-log fields under
STARTED = "inferopt.started"  # perf_counter() when the request reached the app: the start of Server-Timing total
TRACE = "inferopt.trace"  # scope key of the request's TraceContext
SPAN = "inferopt.span"  # scope key of the request's open span (tracing.RequestSpan), when tracing is on
KEY_ID = "inferopt.key_id"  # scope key of the id of the API key the request came with (never the key)


_ID_PREFIX = os.urandom(4).hex()  # per process, so ids stay unique across replicas
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    # Not os.urandom per request: in some VMs it costs ~100 us, more than the rest of the middleware.
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


def incoming_request_id(scope: Scope) -> str | None:
    """A caller's own x-request-id (a tracing proxy's) is kept when it is short and printable."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            if 0 < len(value) <= 64 and value.isascii() and value.decode().isprintable():
                return str(value.decode())
            return None
    return None


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ServeMetrics,
        access_log: AccessLog | None = None,
        tracing: Tracing | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.tracing = tracing
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope) or new_request_id()
        trace = from_headers(scope.get("headers", ()))
        span = token = None
        if self.tracing is not None:
            span, trace = self.tracing.start_request(f"HTTP {scope.get('method')}", trace, request_id)
            scope[SPAN] = span
            token = REQUEST_SPAN.set(span.span.get_span_context())
        scope[REQUEST_ID] = request_id
        scope[STARTED] = started
        scope[TRACE] = trace
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", trace.header()),
                ]
                # Response start, not end: what a client waits for before the first byte.
                self._observe(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            refusal = self._authorize(scope) if self.keys is not None else None
            if refusal is None:
                await self.app(scope, receive, send_with_id)
            else:
                self.metrics.rejected.labels(refusal.reason).inc()
                await _refused(scope, refusal)(scope, receive, send_with_id)
        finally:
            if self.access_log is not None:
                self._log(self.access_log, scope, request_id, trace, status, time.perf_counter() - started)
            if span is not None:
                REQUEST_SPAN.reset(token)  # type: ignore[arg-type]
                span.end(_route(scope), scope.get("method", ""), status)

    def _authorize(self, scope: Scope) -> Unauthorized | None:
        """None when the path is open or the request carries a known key (its id then goes to the log)."""
        assert self.keys is not None
        if not self.keys.required_for(app_path(scope)):
            return None
        values = [value for name, value in scope.get("headers", ()) if name == b"authorization"]
        try:
            if len(values) > 1:
                raise Unauthorized("send one Authorization header (one API key), not several", error="invalid_request")
            scope[KEY_ID] = self.keys.identify(values[0].decode("latin-1") if values else None)
        except Unauthorized as exc:
            return exc
        return None

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        self.metrics.observe_request(_route(scope), status, seconds)

    @staticmethod
    def _log(
        access_log: AccessLog, scope: Scope, request_id: str, trace: TraceContext, status: int, seconds: float
    ) -> None:
        client = scope.get("client")
        line: dict[str, object] = {
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "trace_id": trace.trace_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "ms": round(seconds * 1000, 3),
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        if KEY_ID in scope:
            line["key_id"] = scope[KEY_ID]
        line.update(scope.get(LOG_FIELDS, {}))
        access_log.write(line)


def app_path(scope: Scope) -> str:
    """The request's path inside the app: without the prefix it is mounted under (Ray Serve's --route-prefix,
    a proxy's root_path)."""
    path, root = scope["path"], scope.get("root_path")
    return path[len(root) :] if root and path.startswith(root) else path


def _refused(scope: Scope, error: Unauthorized) -> ASGIApp:
    """The 401, in the shape of the route's protocol (OpenAI's for /v1/embeddings, {"error": ...} elsewhere)."""
    return error.asgi(plain=not scope["path"].endswith("/v1/embeddings"))


def _route(scope: Scope) -> str:
    # The route template, never the raw path: a scanner probing URLs must not create label series (or span names).
    return getattr(scope.get("route"), "path", None) or "unmatched"
