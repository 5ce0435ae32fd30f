"""OpenTelemetry spans for served requests: one per request with a child per stage, and one per batch that
links to every request it carried (span links: a batch serves many traces, so it belongs to none of them).

Off unless `--otlp-endpoint` or one of the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables is set,
and then free when off: the hot path checks one attribute. When on, spans are built from the clocks the server
reads anyway for Server-Timing, each with its measured start and end: the request span opens in the middleware,
its stage spans are made once the response is ready, a batch span in the batcher thread once the batch's
results are out. Nothing waits for the collector: the SDK's BatchSpanProcessor exports from its own thread over
OTLP/HTTP. Spans it cannot deliver (an unreachable collector, a full queue) are dropped, counted in
`inferopt_trace_spans_dropped_total{reason}` and warned of at most once a minute; requests never notice.

Needs the `tracing` extra (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http), imported only when on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

import inferopt
from inferopt.errors import InputError
from inferopt.serve.trace_context import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from inferopt.serve.batcher import QueuedItem
    from inferopt.serve.metrics import ServeMetrics
    from inferopt.serve.service import Computed

log = logging.getLogger("inferopt.serve")
INSTALL_HINT = "pip install 'inferopt[tracing]' (opentelemetry-sdk and its OTLP/HTTP exporter)"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACES_PATH = "/v1/traces"
WARN_EVERY_S = 60.0


def otlp_traces_url(endpoint: str) -> str:
    """--otlp-endpoint is the collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT is): traces go to its
    /v1/traces, unless the URL names that path already."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def wanted(otlp_endpoint: str | None, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether this server traces: an endpoint is given (flag or OTEL_ variable) and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return otlp_endpoint is not None or any(environ.get(name) for name in ENDPOINT_VARIABLES)


@dataclass(frozen=True, slots=True)
class Anchor:
    """One instant on the three clocks a request's stages are timed with, to turn any of them into the epoch
    nanoseconds spans carry."""

    perf: float  # time.perf_counter()
    mono: float  # time.monotonic(): the batcher's clock
    ns: int  # time.time_ns()

    @classmethod
    def now(cls) -> Anchor:
        return cls(time.perf_counter(), time.monotonic(), time.time_ns())

    def perf_ns(self, t: float) -> int:
        return self.ns + int((t - self.perf) * 1e9)

    def mono_ns(self, t: float) -> int:
        return self.ns + int((t - self.mono) * 1e9)


@dataclass(frozen=True, slots=True)
class RequestSpan:
    """A request's open span, what the middleware put in the scope for the handler, with the tracing it
    belongs to: whoever holds one can finish it."""

    span: Span
    anchor: Anchor
    tracing: Tracing

    def stages(self, marks: StageMarks, results: Sequence[Computed]) -> None:
        self.tracing.record_stages(self, marks, results)

    def error(self, reason: str, message: str) -> None:
        self.tracing.record_error(self, reason, message)

    def end(self, route: str, method: str, status: int) -> None:
        self.tracing.end_request(self, route, method, status)

    def end_rpc(self, service: str, method: str, code: str) -> None:
        self.tracing.end_rpc(self, service, method, code)


@dataclass(frozen=True, slots=True)
class StageMarks:
    """A finished inference request's own clock readings (perf_counter), as serve_inference took them."""

    started: float
    decoded: float
    rendered: float  # the render began: postprocess, then encode
    postprocess_s: float
    finished: float


class Tracing:
    """The tracer, its provider and the dropped-span counter; one per app."""

    def __init__(self, provider: TracerProvider, dropped: Counter) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("inferopt.serve", inferopt.__version__)
        self.dropped = dropped

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, otlp_endpoint: str | None, metrics: ServeMetrics) -> Tracing | None:
        """Tracing to the collector the flag or the OTEL_ variables name; None when neither does."""
        if not wanted(otlp_endpoint):
            return None
        sdk = _sdk()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # None: the exporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT itself (and the headers, timeout, TLS).
        url = otlp_traces_url(otlp_endpoint) if otlp_endpoint is not None else None
        dropped = metrics.trace_spans_dropped
        exporter = CountingExporter(OTLPSpanExporter(endpoint=url), dropped)
        _QueueFullCounter.install(dropped)
        tracing = cls(_provider(sdk.trace.export.BatchSpanProcessor(exporter)), dropped)
        log.info("tracing: spans go over OTLP/HTTP to %s", url or "the OTEL_EXPORTER_OTLP_* endpoint")
        return tracing

    @classmethod
    def to_exporter(cls, exporter: SpanExporter, metrics: ServeMetrics) -> Tracing:
        """Spans handed to `exporter` as each ends (the SDK's in-memory exporter, in tests)."""
        sdk = _sdk()
        dropped = metrics.trace_spans_dropped
        return cls(_provider(sdk.trace.export.SimpleSpanProcessor(CountingExporter(exporter, dropped))), dropped)

    def shutdown(self) -> None:
        """Export what is buffered (bounded by the SDK's own timeouts), then stop."""
        self.provider.shutdown()

    # -- the request's span ------------------------------------------------------------------------------

    def start_request(self, name: str, caller: TraceContext, request_id: str) -> tuple[RequestSpan, TraceContext]:
        """The request's span, a child of the caller's traceparent when it sent one, and the TraceContext the
        response returns (this span's ids)."""
        trace = self._trace
        parent = trace.set_span_in_context(trace.NonRecordingSpan(_remote(caller))) if caller.parent_id else None
        from opentelemetry.context import Context

        anchor = Anchor.now()
        span = self.tracer.start_span(
            name,
            context=parent if parent is not None else Context(),  # never the ambient context of whoever runs us
            kind=trace.SpanKind.SERVER,
            start_time=anchor.ns,
            attributes={"inferopt.request_id": request_id},
        )
        ids = span.get_span_context()
        context = TraceContext(
            f"{ids.trace_id:032x}", f"{ids.span_id:016x}", caller.parent_id, f"{int(ids.trace_flags):02x}"
        )
        return RequestSpan(span, anchor, self), context

    def end_rpc(self, request: RequestSpan, service: str, method: str, code: str) -> None:
        """A gRPC call's span, with OpenTelemetry's rpc attributes (`code`: the status code's name)."""
        span = request.span
        span.update_name(f"{service}/{method}")
        span.set_attribute("rpc.system", "grpc")
        span.set_attribute("rpc.service", service)
        span.set_attribute("rpc.method", method)
        span.set_attribute("rpc.grpc.status_code", _GRPC_CODE_NUMBER.get(code, 2))
        if code not in _GRPC_CLIENT_CODES:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()

    def end_request(self, request: RequestSpan, route: str, method: str, status: int) -> None:
        span = request.span
        span.update_name(f"{method} {route}")
        span.set_attribute("http.request.method", method)
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()

    def record_stages(self, request: RequestSpan, marks: StageMarks, results: Sequence[Computed]) -> None:
        """The request's stage spans, each from its measured start to its end: parse, features (when read),
        cache, preprocess / queue / inference (when the model ran an item), postprocess, encode."""
        if not request.span.is_recording():
            return  # sampled out (OTEL_TRACES_SAMPLER): its stages would be dropped anyway
        perf, mono = request.anchor.perf_ns, request.anchor.mono_ns
        stage = self._stage_under(request.span)
        stage("parse", perf(marks.started), perf(marks.decoded))
        at = marks.decoded
        features_s = results[0].features_s if results else 0.0
        if features_s:
            stage("features", perf(at), perf(at + features_s))
            at += features_s
        lookup_s = max((c.lookup_s for c in results), default=0.0)
        hits = sum(c.source != "model" for c in results)
        stage("cache", perf(at), perf(at + lookup_s), {"inferopt.cache.hits": hits, "inferopt.items": len(results)})
        ran = [(c.enqueued, c) for c in results if c.enqueued is not None]
        if ran:
            enqueued = min(at for at, _ in ran)
            batch_started = [at + c.queue_s for at, c in ran]
            stage("preprocess", mono(enqueued - max(c.preprocess_s for _, c in ran)), mono(enqueued))
            stage("queue", mono(enqueued), mono(max(batch_started)))
            done = max(start + c.inference_s for start, (_, c) in zip(batch_started, ran, strict=True))
            stage("inference", mono(min(batch_started)), mono(done), {"inferopt.items": len(ran)})
        stage("postprocess", perf(marks.rendered), perf(marks.rendered + marks.postprocess_s))
        stage("encode", perf(marks.rendered + marks.postprocess_s), perf(marks.finished))

    def record_error(self, request: RequestSpan, reason: str, message: str) -> None:
        request.span.set_attribute("inferopt.error.reason", reason)
        request.span.add_event("error", {"message": message[:500]})

    def _stage_under(self, parent: Span) -> Callable[..., None]:
        context = self._trace.set_span_in_context(parent)
        start_span = self.tracer.start_span

        def stage(name: str, start_ns: int, end_ns: int, attributes: dict[str, Any] | None = None) -> None:
            start_span(name, context=context, start_time=start_ns, attributes=attributes).end(max(start_ns, end_ns))

        return stage

    # -- batches -----------------------------------------------------------------------------------------

    def batch_observer(self, path: str) -> Callable[[Sequence[QueuedItem], float, float], None]:
        """For the batcher of `path`, called in its worker thread after a batch's results are out: the batch's
        span, from its start to its end on the batcher's clock, linked to each traced request in it."""
        trace = self._trace
        start_span = self.tracer.start_span
        from opentelemetry.context import Context

        root = Context()

        def observe(items: Sequence[QueuedItem], started: float, done: float) -> None:
            contexts: list[Any] = [item.trace for item in items if item.trace is not None]
            links = [trace.Link(context) for context in contexts if context.trace_flags.sampled]
            if not links:
                return
            anchor = Anchor.now()
            attributes: dict[str, Any] = {"inferopt.batch.size": len(items), "inferopt.model_path": path}
            span = start_span(
                "batch", context=root, links=links, start_time=anchor.mono_ns(started), attributes=attributes
            )
            span.end(anchor.mono_ns(done))

        return observe


class CountingExporter:
    """The exporter the processor hands spans to, counting (and warning of, once a minute) the spans a failed
    export dropped. Duck-typed as a SpanExporter: the SDK calls only these methods."""

    def __init__(self, inner: Any, dropped: Counter) -> None:
        self.inner = inner
        self.dropped = dropped.labels("export_failed")
        self._warned_at = -WARN_EVERY_S

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter must not take the processor's thread down
            log.debug("span export raised %s", exc)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.dropped.inc(len(spans))
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "tracing: %d span(s) could not be exported and were dropped (the collector is down?)", len(spans)
                )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class _QueueFullCounter(logging.Filter):
    """The SDK's batch processor logs one warning per span it drops from a full queue (its only signal of it):
    counted here, and let through at most once a minute so a down collector cannot flood the log."""

    _installed: _QueueFullCounter | None = None
    _lock = threading.Lock()

    def __init__(self, dropped: Counter) -> None:
        super().__init__()
        self.dropped = dropped.labels("queue_full")
        self._passed_at = -WARN_EVERY_S

    @classmethod
    def install(cls, dropped: Counter) -> None:
        with cls._lock:
            logger = logging.getLogger("opentelemetry.sdk._shared_internal")
            if cls._installed is not None:
                logger.removeFilter(cls._installed)
            cls._installed = cls(dropped)
            logger.addFilter(cls._installed)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        self.dropped.inc()
        now = time.monotonic()
        if now - self._passed_at < WARN_EVERY_S:
            return False
        self._passed_at = now
        return True


def _remote(caller: TraceContext) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(
        int(caller.trace_id, 16),
        int(caller.parent_id or "0", 16),
        is_remote=True,
        trace_flags=TraceFlags(int(caller.flags, 16)),
    )


def _provider(processor: Any) -> TracerProvider:
    """A provider of its own (never the global one: two apps in a process keep their spans apart), with the
    sampler from OTEL_TRACES_SAMPLER and the resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    attributes = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or "inferopt",
        "service.version": inferopt.__version__,
    }
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    return provider


def _sdk() -> Any:
    try:
        import opentelemetry.sdk.trace.export
    except ImportError as exc:
        raise InputError(f"tracing needs the OpenTelemetry SDK ({exc.name} is not installed)", INSTALL_HINT) from None
    import opentelemetry.sdk

    return opentelemetry.sdk


# gRPC status codes by name (OpenTelemetry records the number); the ones a server span does not count as its
# own error, as the semantic conventions say: the caller's mistakes, and OK.
_GRPC_CODE_NUMBER = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "RESOURCE_EXHAUSTED": 8, "INTERNAL": 13, "UNAVAILABLE": 14,
}  # fmt: skip
_GRPC_CLIENT_CODES = frozenset({"OK", "CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"})
