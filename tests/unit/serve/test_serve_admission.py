"""Overload through HTTP: a request predicted to wait past its deadline (or --max-queue-ms) is a 429 with
Retry-After at once, counted as predicted_wait, and the requests admitted are answered; x-priority picks the
lane, and an unknown value is a 422 naming the header."""

from __future__ import annotations

import asyncio

import pytest

from inferopt.serve.testing import fake_model
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.anyio
DELAY_S = 0.2  # per batch of one: the server finishes 5 items per second


async def test_a_request_that_would_wait_past_its_deadline_is_refused_and_the_admitted_are_answered(
    serve, task: TextEmbeddingTask
) -> None:
    async with serve(fake_model(task=task, delay_s=DELAY_S), max_batch=1, cache="off") as served:
        client = served.client

        async def embed(text: str, timeout_ms: int) -> object:
            headers = {"x-request-timeout-ms": str(timeout_ms)}
            return await client.post("/v1/embeddings", json={"input": [text]}, headers=headers)

        assert (await embed("measure the service rate", 5000)).status_code == 200
        running = asyncio.ensure_future(embed("occupies the worker", 5000))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(embed(f"waits {i}", 5000)) for i in range(2)]
        await asyncio.sleep(0.05)
        refused = await embed("cannot make it", 300)  # 2 ahead + itself at 5/s: about 0.6 s, 0.3 s left
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "would hold this request about" in refused.json()["error"]["message"]
        admitted = asyncio.ensure_future(embed("can make it", 2000))
        answers = await asyncio.gather(running, *queued, admitted)
        assert [a.status_code for a in answers] == [200] * 4
        assert await served.metric('inferopt_rejected_total{reason="predicted_wait"}') == 1
        waits = 'inferopt_queue_wait_seconds_count{lane="high",model_path="default"}'
        for _ in range(100):  # the worker observes a batch just after its results are out
            if await served.metric(waits) >= 5:
                break
            await asyncio.sleep(0.01)
        assert await served.metric(waits) >= 5


async def test_max_queue_ms_caps_the_predicted_wait_whatever_the_deadline(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task, delay_s=DELAY_S), max_batch=1, cache="off", max_queue_ms=100) as served:
        client = served.client
        service = served.state.require_ready().service
        preprocessed: list[str] = []
        original = service.preprocessing.run

        async def counted(raws: list[str]) -> object:
            preprocessed.extend(raws)
            return await original(raws)

        service.preprocessing.run = counted  # type: ignore[method-assign]
        assert (await client.post("/v1/embeddings", json={"input": ["rate"]})).status_code == 200
        first = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": ["busy"]}))
        await asyncio.sleep(0.05)
        second = await client.post("/v1/embeddings", json={"input": ["over 100 ms"]})  # 1 ahead: about 0.2 s
        assert second.status_code == 429
        assert (await first).status_code == 200
        assert preprocessed == ["rate", "busy"]  # refused before its text was tokenized


async def test_the_priority_header_picks_a_lane_and_an_unknown_one_is_a_422(serve, task: TextEmbeddingTask) -> None:
    async with serve(fake_model(task=task), cache="off") as served:
        client = served.client
        for value in ("low", "HIGH", " high "):
            ok = await client.post("/v1/embeddings", json={"input": [value]}, headers={"x-priority": value})
            assert ok.status_code == 200
        bad = await client.post("/v1/embeddings", json={"input": ["x"]}, headers={"x-priority": "urgent"})
        assert bad.status_code == 422
        assert bad.json()["error"]["param"] == "x-priority" and "high or low" in bad.json()["error"]["message"]
        assert await served.metric('inferopt_batch_size_count{lane="low",model_path="default"}') >= 1
