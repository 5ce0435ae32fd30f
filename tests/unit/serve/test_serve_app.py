"""The HTTP API in process (ASGI transport, lifespan running): exact vectors from FakeBackend, the timing
contract, per-item caching, single-flight, truncation, health, metrics, docs and errors."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading

import numpy as np
import pytest

from inferopt.runtime.fake import FakeBackend
from inferopt.serve.testing import FAKE_NAME, fake_embedding, fake_model
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.anyio
STAGES = ["decode", "preprocess", "queue", "inference", "postprocess", "encode", "total"]


def vectors(body: dict) -> list[np.ndarray]:
    return [np.asarray(item["embedding"], dtype=np.float32) for item in body["data"]]


def server_timing(header: str) -> dict[str, float]:
    entries = [part.strip().split(";dur=") for part in header.split(",")]
    return {name: float(ms) for name, ms in entries}


async def wait_running(backend: FakeBackend, count: int = 1) -> None:
    while len(backend.calls) < count:
        await asyncio.sleep(0.002)


async def test_embeddings_are_the_models_vectors_in_input_order(serve, task: TextEmbeddingTask) -> None:
    texts = ["hello world", "a somewhat longer sentence about serving models", "short"]
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post("/v1/embeddings", json={"input": texts, "model": FAKE_NAME})
    assert response.status_code == 200
    body = response.json()
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert {item["object"] for item in body["data"]} == {"embedding"} and body["object"] == "list"
    for text, vector in zip(texts, vectors(body), strict=True):
        np.testing.assert_array_equal(vector, fake_embedding(task, text))
    tokens = sum(len(row) for row in task.tokenizer.encode_ids(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["model"] == FAKE_NAME


async def test_base64_is_little_endian_float32(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post("/v1/embeddings", json={"input": "hi there", "encoding_format": "base64"})
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), fake_embedding(task, "hi there"))


async def test_timing_headers_follow_the_contract(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task, delay_s=0.02)) as served:
        response = await served.client.post(
            "/v1/embeddings", json={"input": "time me"}, headers={"x-request-id": "abc-1"}
        )
    headers = response.headers
    timing = server_timing(headers["server-timing"])
    assert list(timing) == STAGES
    assert timing["inference"] >= 20.0  # the fake sleeps 20 ms per batch
    assert timing["total"] >= timing["inference"] + timing["queue"]
    assert float(headers["x-inference-time"]) == pytest.approx(timing["inference"] / 1000, abs=1e-6)
    assert float(headers["x-queue-time"]) == pytest.approx(timing["queue"] / 1000, abs=1e-6)
    assert headers["x-request-id"] == "abc-1"  # a caller's id is kept for tracing


async def test_cache_is_per_item_and_hits_skip_queue_and_inference(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task)
    backend = model.backends[0]
    async with serve(model) as served:
        backend.calls.clear()
        await served.client.post("/v1/embeddings", json={"input": ["alpha", "beta"]})
        second = await served.client.post("/v1/embeddings", json={"input": ["Beta", "gamma"]})  # uncased model
        assert backend.calls == [2, 1]  # only "gamma" reached the runtime
        third = await served.client.post("/v1/embeddings", json={"input": ["gamma", "alpha", "beta"]})
        assert backend.calls == [2, 1]
        assert await served.metric('inferopt_cache_requests_total{result="hit",tier="memory"}') == 4
        assert await served.metric('inferopt_cache_requests_total{result="miss",tier="memory"}') == 3
    np.testing.assert_array_equal(vectors(second.json())[0], fake_embedding(task, "beta"))
    assert third.headers["x-queue-time"] == "0.000000" and third.headers["x-inference-time"] == "0.000000"
    assert [t for s, t in server_timing(third.headers["server-timing"]).items() if s in ("queue", "inference")] == [
        0,
        0,
    ]


async def test_with_cache_off_every_request_runs(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task)
    async with serve(model, cache="off") as served:
        model.backends[0].calls.clear()
        for _ in range(2):
            await served.client.post("/v1/embeddings", json={"input": ["same", "same"]})
        assert model.backends[0].calls == [2, 2]
        assert "inferopt_cache_requests_total{" not in (await served.client.get("/metrics")).text


async def test_identical_inputs_in_flight_are_computed_once(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, delay_s=0.15)
    backend = model.backends[0]
    async with serve(model) as served:
        backend.calls.clear()
        blocker = asyncio.create_task(served.client.post("/v1/embeddings", json={"input": "blocker"}))
        await wait_running(backend)
        same = [
            served.client.post("/v1/embeddings", json={"input": text}) for text in ("Popular", "popular", "POPULAR")
        ]
        responses = await asyncio.gather(blocker, *same)
        within = await served.client.post("/v1/embeddings", json={"input": ["fresh", "fresh", "fresh"]})
    assert [r.status_code for r in responses] == [200] * 4
    assert backend.calls == [1, 1, 1]  # blocker, "popular" once, "fresh" once
    expected = fake_embedding(task, "popular")
    for response in responses[1:]:
        np.testing.assert_array_equal(vectors(response.json())[0], expected)
    assert len(within.json()["data"]) == 3


async def test_over_long_texts_are_truncated_and_say_so(serve, task: TextEmbeddingTask) -> None:
    long_a, long_b = "word " * 400, "word " * 500 + "different ending"
    async with serve(fake_model(task=task)) as served:
        response = await served.client.post("/v1/embeddings", json={"input": [long_a, long_b, "short one"]})
        exact = await served.client.post("/v1/embeddings", json={"input": "short one"})
    assert response.status_code == 200
    assert response.headers["x-truncated-inputs"] == "2"
    assert "x-truncated-inputs" not in exact.headers
    first, second, _ = vectors(response.json())
    np.testing.assert_array_equal(first, second)  # both cut to the same first 256 tokens
    assert response.json()["usage"]["prompt_tokens"] == 256 * 2 + len(task.tokenizer.encode_ids(["short one"])[0])


async def test_models_health_docs(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task, dim=32, batch_size=8)) as served:
        models = (await served.client.get("/v1/models")).json()
        live = await served.client.get("/health/live")
        ready = await served.client.get("/health/ready")
        docs = await served.client.get("/docs")
        schema = (await served.client.get("/openapi.json")).json()
    card = models["data"][0]
    assert (card["id"], card["dimensions"], card["max_batch"], card["max_length"]) == (FAKE_NAME, 32, 8, 256)
    assert live.status_code == 200 and ready.status_code == 200 and ready.json()["status"] == "ready"
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    request_schema = schema["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "input" in request_schema["properties"]
    assert {"400", "413", "422", "429", "503", "504"} <= set(schema["paths"]["/v1/embeddings"]["post"]["responses"])


async def test_not_ready_until_loaded_and_warm(serve, task: TextEmbeddingTask) -> None:
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return fake_model(task=task)

    async with serve(slow_loader, wait_ready=False) as served:
        assert (await served.client.get("/health/live")).status_code == 200
        not_ready = await served.client.get("/health/ready")
        refused = await served.client.post("/v1/embeddings", json={"input": "early"})
        release.set()
        while served.state.phase != "ready":
            await asyncio.sleep(0.005)
        ready = await served.client.get("/health/ready")
        accepted = await served.client.post("/v1/embeddings", json={"input": "later"})
    assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert ready.status_code == 200 and accepted.status_code == 200


async def test_every_session_runs_every_warm_up_shape_before_ready(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, sessions=2, batch_size=8)
    async with serve(model) as served:
        assert (await served.client.get("/health/ready")).status_code == 200
        policy = served.state.require_ready().policy
        shapes = [b["input_ids"].shape for b in task.warmup_batches(policy.max_batch, policy.max_tokens)]
        assert shapes == [(1, 16), (8, 16), (8, 256)]
        for backend in model.backends:
            assert backend.calls == [rows for rows, _ in shapes]  # type: ignore[attr-defined]


async def test_a_model_that_fails_to_load_is_reported(serve) -> None:
    def broken():
        raise OSError("model.onnx: cannot read")

    async with serve(broken, wait_ready=False) as served:
        while served.state.phase == "loading":
            await asyncio.sleep(0.005)
        ready = await served.client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "failed", "detail": "loading failed: model.onnx: cannot read"}


async def test_draining_refuses_new_work_with_503(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        served.state.begin_drain()
        refused = await served.client.post("/v1/embeddings", json={"input": "too late"})
        ready = await served.client.get("/health/ready")
        assert await served.metric('inferopt_rejected_total{reason="shutting_down"}') == 1
    assert refused.status_code == 503 and "shutting down" in refused.json()["error"]["message"]
    assert ready.status_code == 503 and ready.json()["status"] == "draining"


async def test_a_model_failure_is_a_500_that_leaks_nothing(serve, task: TextEmbeddingTask, caplog) -> None:
    poison = task.tokenizer.encode_ids(["zebra"])[0][1]
    async with serve(fake_model(task=task, fail_on_token=poison)) as served:
        with caplog.at_level(logging.ERROR, logger="inferopt.serve"):
            failed = await served.client.post("/v1/embeddings", json={"input": ["fine", "a zebra"]})
        fine = await served.client.post("/v1/embeddings", json={"input": "fine"})
    assert failed.status_code == 500
    request_id = failed.headers["x-request-id"]
    message = failed.json()["error"]["message"]
    assert request_id in message and "fail" not in message and "token" not in message
    assert any(request_id in r.getMessage() and "told to fail" in str(r.exc_info[1]) for r in caplog.records)
    assert fine.status_code == 200  # the good item of the failed request was computed and cached meanwhile


async def test_each_request_gets_one_json_access_log_line_on_stderr_with_its_request_id(
    serve, task: TextEmbeddingTask, capfdbinary
) -> None:
    import orjson

    async with serve(fake_model(task=task), access_log=True) as served:
        capfdbinary.readouterr()  # only this test's requests
        ok = await served.client.post("/v1/embeddings", json={"input": ["one", "two"]})
        bad = await served.client.post("/v1/embeddings", json={"input": []}, headers={"x-request-id": "trace-7"})
        err = capfdbinary.readouterr().err
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith(b'{"ts"')]
    assert len(lines) == 2
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == {ok.headers["x-request-id"], "trace-7"} and bad.headers["x-request-id"] == "trace-7"
    line = by_id[ok.headers["x-request-id"]]
    fields = (line["method"], line["path"], line["status"], line["items"], line["tokens"], line["cached"])
    assert fields == ("POST", "/v1/embeddings", 200, 2, 6, 0)  # 6 tokens: [CLS] word [SEP], twice
    assert line["ms"] > 0 and {"ts", "client", "queue_ms", "inference_ms"} <= set(line)
    assert by_id["trace-7"]["status"] == 422


async def test_metrics_use_the_design_names(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task)) as served:
        await served.client.post("/v1/embeddings", json={"input": ["one", "two", "three"]})
        await served.client.post("/v1/embeddings", content=b"{")
        text = (await served.client.get("/metrics")).text
        assert await served.metric('inferopt_rejected_total{reason="malformed"}') == 1
        assert (
            await served.metric('inferopt_batch_size_bucket{lane="high",le="2.0",model_path="default"}') == 0
        )  # warm-up aside, one batch of 3
        assert await served.metric('inferopt_batch_size_bucket{lane="high",le="4.0",model_path="default"}') >= 1
    for name in (
        'inferopt_request_duration_seconds_bucket{le="0.0009765625",route="/v1/embeddings",status="200"}',
        'inferopt_stage_duration_seconds_count{stage="preprocess"}',
        'inferopt_stage_duration_seconds_count{stage="queue"}',
        'inferopt_stage_duration_seconds_count{stage="inference"}',
        'inferopt_stage_duration_seconds_count{stage="postprocess"}',
        "inferopt_batch_tokens_bucket",
        'inferopt_queue_depth{model_path="default"} 0.0',
    ):
        assert name in text, name
    assert "inferopt_cache_redis_up" not in text  # no Redis tier, so no claim that Redis is down


@pytest.mark.anyio
async def test_under_a_root_path_the_inference_routes_answer_below_it(task: TextEmbeddingTask) -> None:
    """Mounted under a prefix (Ray Serve's --route-prefix, a proxy's root path), the scope's path carries the
    prefix and root_path names it: the hot path matches what lies below it, as Starlette's routing does."""
    import httpx

    from inferopt.serve.app import create_app
    from inferopt.serve.config import ServeConfig
    from inferopt.serve.testing import fake_embedding, fake_model

    app = create_app(ServeConfig(access_log=False), fake_model(task=task))
    hot, hot_paths = app.hot_path, []

    async def counted(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        hot_paths.append(scope["path"])
        await hot(scope, receive, send)

    app.hot_path = counted  # type: ignore[assignment]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/embed")
        async with httpx.AsyncClient(transport=transport, base_url="http://inferopt.test") as client:
            while app.state.inferopt.phase == "loading":
                await asyncio.sleep(0.005)
            embedded = await client.post("/embed/v1/embeddings", json={"input": "under a prefix"})
            health = await client.get("/embed/health/ready")
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["data"][0]["embedding"] == pytest.approx(fake_embedding(task, "under a prefix").tolist())
    assert health.status_code == 200
    assert hot_paths == ["/embed/v1/embeddings"]  # the inference route took the hot path, not the full stack
