"""OpenTelemetry spans, read back with the SDK's in-memory exporter: one request span per request with its
stages as children (each inside its parent's time), the caller's traceparent continued, and one span per batch
linked to every request it carried. An unreachable collector drops spans (counted), never requests."""

from __future__ import annotations

import asyncio
import re

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from inferopt.errors import InputError
from inferopt.serve.config import ServeConfig
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.testing import fake_model, free_port
from inferopt.serve.tracing import Tracing, otlp_traces_url, wanted
from inferopt.tasks.text_embedding import TextEmbeddingTask

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
STAGES = ["parse", "cache", "preprocess", "queue", "inference", "postprocess", "encode"]


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Tracing:
    return Tracing.to_exporter(exported, ServeMetrics())


def _by_name(spans, name: str) -> list:
    return [span for span in spans if span.name == name]


@pytest.mark.anyio
async def test_a_request_has_a_span_per_stage_inside_its_own_and_continues_the_callers_trace(
    serve, task: TextEmbeddingTask, tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    async with serve(fake_model(task=task), tracing=tracing, cache="memory") as served:
        response = await served.client.post(
            "/v1/embeddings",
            json={"input": "a traced sentence", "model": "fake-minilm"},
            headers={"traceparent": f"00-{TRACE}-{PARENT}-01"},
        )
        assert response.status_code == 200
    spans = exported.get_finished_spans()
    (request,) = [span for span in spans if span.kind is SpanKind.SERVER]
    assert request.name == "POST /v1/embeddings"
    assert f"{request.context.trace_id:032x}" == TRACE and f"{request.parent.span_id:016x}" == PARENT
    assert request.attributes["http.response.status_code"] == 200
    # The response's traceparent is this span: the caller can find it.
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", response.headers["traceparent"])
    assert match is not None and match.groups() == (TRACE, f"{request.context.span_id:016x}")
    children = [span for span in spans if span.parent is not None and span.parent.span_id == request.context.span_id]
    assert [span.name for span in sorted(children, key=lambda s: (s.start_time, STAGES.index(s.name)))] == STAGES
    for child in children:
        assert child.context.trace_id == request.context.trace_id
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time, child.name
    queue, inference = _by_name(children, "queue")[0], _by_name(children, "inference")[0]
    assert queue.end_time <= inference.start_time + 1000  # the batch starts when the wait ends (1 us of rounding)


@pytest.mark.anyio
async def test_a_batch_span_links_to_every_request_it_carried(
    serve, task: TextEmbeddingTask, tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    # One session, 20 ms per batch: while the first batch runs, the other requests queue and share a batch.
    async with serve(fake_model(task=task, delay_s=0.02), tracing=tracing, cache="off", max_wait_ms=10) as served:
        replies = await asyncio.gather(
            *(served.client.post("/v1/embeddings", json={"input": f"sentence {i}"}) for i in range(12))
        )
        assert [reply.status_code for reply in replies] == [200] * 12
    spans = exported.get_finished_spans()
    requests = {(s.context.trace_id, s.context.span_id) for s in spans if s.kind is SpanKind.SERVER}
    batches = _by_name(spans, "batch")
    linked = [(link.context.trace_id, link.context.span_id) for batch in batches for link in batch.links]
    assert len(requests) == 12 and sorted(linked) == sorted(requests)  # each request in exactly one batch
    assert max(len(batch.links) for batch in batches) > 1  # and batches carried several traces
    for batch in batches:
        assert batch.parent is None and batch.attributes["inferopt.batch.size"] == len(batch.links)
        assert batch.attributes["inferopt.model_path"] == "default"


@pytest.mark.anyio
async def test_a_malformed_traceparent_starts_a_fresh_trace_and_errors_are_spans_too(
    serve, task: TextEmbeddingTask, tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    async with serve(fake_model(task=task), tracing=tracing) as served:
        bad = await served.client.post(
            "/v1/embeddings", json={"input": "x"}, headers={"traceparent": f"00-{TRACE.upper()}-{PARENT}-01"}
        )
        refused = await served.client.post("/v1/embeddings", json={"input": "x"}, headers={"x-priority": "urgent"})
    assert bad.status_code == 200 and refused.status_code == 422
    fresh, failed = (span for span in exported.get_finished_spans() if span.kind is SpanKind.SERVER)
    assert fresh.parent is None and f"{fresh.context.trace_id:032x}" != TRACE
    assert failed.attributes["http.response.status_code"] == 422
    assert failed.attributes["inferopt.error.reason"] == "invalid"
    assert [event.name for event in failed.events] == ["error"]


@pytest.mark.anyio
async def test_an_unreachable_collector_drops_spans_with_a_count_and_requests_still_succeed(
    serve, task: TextEmbeddingTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.2")  # seconds: the exporter's retries give up quickly
    metrics = ServeMetrics()
    tracing = Tracing.from_config(f"http://127.0.0.1:{free_port()}", metrics)  # nothing listens there
    assert tracing is not None
    async with serve(fake_model(task=task), tracing=tracing) as served:
        replies = [await served.client.post("/v1/embeddings", json={"input": f"s {i}"}) for i in range(5)]
        assert [reply.status_code for reply in replies] == [200] * 5
    # The lifespan's end shut tracing down: the buffered spans were tried, failed, and counted.
    dropped = metrics.trace_spans_dropped.labels("export_failed")._value.get()
    assert dropped >= 5 * (1 + len(STAGES))


def test_tracing_is_on_only_when_an_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not wanted(None) and Tracing.from_config(None, ServeMetrics()) is None
    assert wanted("http://collector:4318")
    assert wanted(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not wanted("http://collector:4318", {"OTEL_SDK_DISABLED": "true"})
    assert not wanted("http://collector:4318", {"OTEL_TRACES_EXPORTER": "none"})
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("https://c.example/otlp/v1/traces") == "https://c.example/otlp/v1/traces"


@pytest.mark.parametrize("endpoint", ["collector:4318", "ftp://collector", "http://"])
def test_an_otlp_endpoint_that_is_not_an_http_url_is_refused(endpoint: str) -> None:
    with pytest.raises(InputError, match="--otlp-endpoint"):
        ServeConfig(otlp_endpoint=endpoint)


@pytest.mark.anyio
async def test_a_sampled_out_request_makes_no_spans_and_says_so_in_its_traceparent(
    serve, task: TextEmbeddingTask, exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the SDK's own variable, read by the provider
    tracing = Tracing.to_exporter(exported, ServeMetrics())
    async with serve(fake_model(task=task), tracing=tracing, cache="off") as served:
        response = await served.client.post("/v1/embeddings", json={"input": "not sampled"})
    flags = int(response.headers["traceparent"].rsplit("-", 1)[1], 16)
    assert response.status_code == 200 and not flags & 1  # the sampled bit is off
    assert exported.get_finished_spans() == ()  # neither its stages nor a batch span linking to it


@pytest.mark.anyio
async def test_a_grpc_call_has_its_span_stages_and_the_callers_trace(
    serve, task: TextEmbeddingTask, tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    from inferopt.serve.grpc_client import GrpcClient

    metadata = (("traceparent", f"00-{TRACE}-{PARENT}-01"),)
    async with serve(fake_model(task=task), tracing=tracing, grpc_port=0) as served:
        client = GrpcClient(f"127.0.0.1:{served.app.state.grpc.port}")
        try:
            await client.infer("fake-minilm", {"text": ["a traced call"]}, metadata=metadata)
        finally:
            await client.close()
    spans = exported.get_finished_spans()
    (request,) = [span for span in spans if span.kind is SpanKind.SERVER]
    assert request.name == "inference.GRPCInferenceService/ModelInfer"
    assert request.attributes["rpc.system"] == "grpc" and request.attributes["rpc.grpc.status_code"] == 0
    assert f"{request.context.trace_id:032x}" == TRACE and f"{request.parent.span_id:016x}" == PARENT
    children = {
        span.name for span in spans if span.parent is not None and span.parent.span_id == request.context.span_id
    }
    assert {"parse", "queue", "inference", "postprocess"} <= children
