"""Async jobs against real Redis (DB 14, flushed by each test), servers in process (ASGI) around FakeBackends:
a job's predictions equal :predict's, progress moves chunk by chunk, every refusal has its status code, and a
job survives its server stopping: the next server on the same Redis finishes it, no item lost or repeated."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fastapi import FastAPI

from inferopt.serve import jobs as jobs_module
from inferopt.serve.app import create_app
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel
from inferopt.serve.testing import FAKE_ARTIFACT_ID, FAKE_NAME, QuickWarmFake, fake_model, free_port
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
JOBS_REDIS = "redis://127.0.0.1:6379/14"
PREFIX = "inferopt:jobs:"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def jobs_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(JOBS_REDIS)
    client.flushdb()  # fails loudly when Redis is not at 127.0.0.1:6379: deselect with -m "not redis"
    yield client
    client.flushdb()
    client.close()


@dataclass
class Server:
    app: FastAPI
    client: httpx.AsyncClient

    async def metric(self, prefix: str) -> float:
        for line in (await self.client.get("/metrics")).text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@asynccontextmanager
async def serving(model: ServingModel, **config: Any) -> AsyncIterator[Server]:
    """A ready server (lifespan included) for `model`; leaving the block stops it as SIGTERM would."""
    settings = {"access_log": False, "cache": "off", "jobs": JOBS_REDIS, "jobs_chunk_items": 4} | config
    app = create_app(ServeConfig(**settings), model)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inferopt.test") as client:
            while app.state.inferopt.phase == "loading":
                await asyncio.sleep(0.005)
            yield Server(app, client)


def texts(n: int, tag: str = "text") -> list[str]:
    return [f"{tag} number {i}" for i in range(n)]


class Recording(QuickWarmFake):
    """A FakeBackend that keeps every row it computed (its token ids), to count how often each input ran."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(384, delay_s=delay_s)
        self.rows: list[bytes] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True):
            self.rows.append(ids[mask.astype(bool)].astype(np.int64).tobytes())
        return super().run(inputs)


def recorded(task: TextEmbeddingTask, delay_s: float = 0.0) -> tuple[ServingModel, Recording]:
    backend = Recording(delay_s)
    return fake_model(task=task, backends=[backend]), backend


def runs_of(task: TextEmbeddingTask, instances: list[str], *backends: Recording) -> list[int]:
    """How many times each instance went through the runtime, over all `backends`."""
    counts = Counter(row for backend in backends for row in backend.rows)
    arrays = task.collate(task.preprocess(instances))
    rows = [
        ids[mask.astype(bool)].astype(np.int64).tobytes()
        for ids, mask in zip(arrays["input_ids"], arrays["attention_mask"], strict=True)
    ]
    return [counts[row] for row in rows]


async def submit(server: Server, instances: list[Any], **extra: Any) -> httpx.Response:
    return await server.client.post("/v1/jobs", json={"model": FAKE_NAME, "instances": instances, **extra})


async def wait_for(server: Server, job_id: str, statuses: set[str], timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = (await server.client.get(f"/v1/jobs/{job_id}")).json()
        if body.get("status") in statuses:
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body} after {timeout_s} s"
        await asyncio.sleep(0.02)


async def test_a_job_gives_the_predictions_predict_gives(task: TextEmbeddingTask, jobs_redis: redis.Redis) -> None:
    instances = [*texts(9), {"text": "an object instance"}]
    async with serving(fake_model(task=task)) as server:
        submitted = await submit(server, instances)
        assert submitted.status_code == 202
        job = submitted.json()
        assert submitted.headers["location"] == job["location"] == f"/v1/jobs/{job['id']}"
        assert (job["status"], job["items"]) == ("queued", 10) and len(job["id"]) >= 16
        done = await wait_for(server, job["id"], {"succeeded", "failed"})
        predict = await server.client.post(f"/v1/models/{FAKE_NAME}:predict", json={"instances": instances})
        finished = await server.metric('inferopt_jobs_total{status="succeeded"}')
        durations = await server.metric("inferopt_job_duration_seconds_count")
    assert done["status"] == "succeeded" and (done["done"], done["progress"]) == (10, 1.0)
    assert done["result"] == predict.json()  # {"predictions": [...]}, in order
    assert done["created_at"] <= done["started_at"] <= done["finished_at"] and "error" not in done
    assert (finished, durations) == (1, 1)
    assert 0 < jobs_redis.ttl(f"{PREFIX}job:{job['id']}") <= 3600
    assert not jobs_redis.exists(f"{PREFIX}job:{job['id']}:input")  # the input goes once the job ends


async def test_progress_moves_chunk_by_chunk(task: TextEmbeddingTask, jobs_redis: redis.Redis) -> None:
    async with serving(fake_model(task=task, delay_s=0.03)) as server:
        job = (await submit(server, texts(40))).json()  # 10 chunks of 4
        seen = []
        while not seen or seen[-1]["status"] != "succeeded":
            seen.append((await server.client.get(f"/v1/jobs/{job['id']}")).json())
            await asyncio.sleep(0.01)
    done = [body["done"] for body in seen]
    assert done == sorted(done) and done[-1] == 40
    assert any(0 < body["done"] < 40 and body["status"] == "running" for body in seen)
    assert all(d % 4 == 0 for d in done)  # progress moves a whole chunk at a time
    assert len(seen[-1]["result"]["predictions"]) == 40


async def test_unknown_expired_and_malformed_ids_are_404(task: TextEmbeddingTask, jobs_redis: redis.Redis) -> None:
    async with serving(fake_model(task=task), jobs_ttl=120) as server:
        unknown = await server.client.get("/v1/jobs/NoSuchJobAtAll_0123")
        odd = [await server.client.get(f"/v1/jobs/{job_id}") for job_id in ("a*b", "x" * 65, "a%3Ab", "%20")]
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "job NoSuchJobAtAll_0123 does not exist (or its result expired after 120 s)"}
    assert [r.status_code for r in odd] == [404] * 4
    assert all("does not exist" in r.json()["error"] for r in odd)


async def test_refusals_at_submission(task: TextEmbeddingTask, jobs_redis: redis.Redis) -> None:
    async with serving(fake_model(task=task), jobs_max_items=5, jobs_max_request_bytes=2000) as server:
        too_many = await submit(server, texts(6))
        too_big = await submit(server, ["x" * 3000])
        bad_instance = await submit(server, ["fine", 5, "also fine"])
        empty_text = await submit(server, ["fine", "   "])
        not_json = await server.client.post("/v1/jobs", content=b"{nope")
        no_model = await server.client.post("/v1/jobs", json={"instances": ["a"]})
        other_model = await server.client.post("/v1/jobs", json={"model": "gpt-4", "instances": ["a"]})
        no_instances = await submit(server, [])
        rejected = await server.metric('inferopt_rejected_total{reason="invalid"}')
    assert too_many.status_code == 413 and "at most 5 per job (--jobs-max-items)" in too_many.json()["error"]
    assert too_big.status_code == 413 and "--jobs-max-request-bytes" in too_big.json()["error"]
    assert bad_instance.status_code == 422 and "instances[1] must be a string" in bad_instance.json()["error"]
    assert empty_text.status_code == 422 and "instances[1] is empty" in empty_text.json()["error"]
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    assert no_model.status_code == 422 and '"model"' in no_model.json()["error"]
    assert other_model.status_code == 404 and "'gpt-4' is not served here" in other_model.json()["error"]
    assert no_instances.status_code == 422 and "empty list" in no_instances.json()["error"]
    assert rejected == 4
    assert jobs_redis.dbsize() == 0  # nothing refused was stored, so no job can fail halfway on bad input


async def test_too_many_pending_jobs_is_429_with_retry_after(task: TextEmbeddingTask, jobs_redis: redis.Redis) -> None:
    async with serving(fake_model(task=task, delay_s=0.02), jobs_max_pending=2) as server:
        first = await submit(server, texts(40, "first"))
        second = await submit(server, texts(40, "second"))
        third = await submit(server, texts(4, "third"))
        pending = await server.metric("inferopt_jobs_pending")
        await wait_for(server, first.json()["id"], {"succeeded"})
        after = await submit(server, texts(4, "after"))  # room again once one finished
    assert (first.status_code, second.status_code, third.status_code, after.status_code) == (202, 202, 429, 202)
    assert third.headers["retry-after"] == "10" and "--jobs-max-pending" in third.json()["error"]
    assert pending == 2


async def test_jobs_off_is_503_with_the_flag_to_turn_them_on(task: TextEmbeddingTask) -> None:
    async with serving(fake_model(task=task), jobs=None) as server:
        posted = await submit(server, ["a"])
        got = await server.client.get("/v1/jobs/anything")
    assert posted.status_code == got.status_code == 503
    assert posted.json() == {"error": "jobs are off: start the server with --jobs redis://HOST:PORT/DB"}


async def test_a_job_survives_its_server_stopping_and_finishes_on_the_next(
    task: TextEmbeddingTask, jobs_redis: redis.Redis
) -> None:
    instances = texts(48, "restart")  # 12 chunks of 4
    first_model, first_backend = recorded(task, delay_s=0.05)
    async with serving(first_model) as first:
        job_id = (await submit(first, instances)).json()["id"]
        while (await first.client.get(f"/v1/jobs/{job_id}")).json()["done"] < 8:
            await asyncio.sleep(0.01)
    stopped = {k.decode(): v.decode() for k, v in jobs_redis.hgetall(f"{PREFIX}job:{job_id}").items()}
    assert stopped["status"] == "running" and 8 <= int(stopped["done"]) < 48  # unfinished, not failed
    assert jobs_redis.zscore(f"{PREFIX}queue:{FAKE_NAME}", job_id) is not None  # given back to the queue
    done_by_first = int(stopped["done"])

    second_model, second_backend = recorded(task)
    async with serving(second_model) as second:
        done = await wait_for(second, job_id, {"succeeded", "failed"})
        predict = await second.client.post(f"/v1/models/{FAKE_NAME}:predict", json={"instances": instances})
    assert done["status"] == "succeeded" and done["done"] == 48
    assert done["result"] == predict.json()  # complete and in order: nothing lost, nothing repeated
    second_backend.rows = second_backend.rows[: len(second_backend.rows) - 48]  # less what :predict computed
    assert runs_of(task, instances, first_backend) == [1] * done_by_first + [0] * (48 - done_by_first)
    assert runs_of(task, instances, first_backend, second_backend) == [1] * 48  # each instance ran exactly once


async def test_a_job_whose_replica_died_is_resumed_once_its_lease_expired(
    task: TextEmbeddingTask, jobs_redis: redis.Redis
) -> None:
    async with serving(fake_model(task=task, delay_s=0.05), jobs_concurrency=1) as first:
        running = (await submit(first, texts(40, "busy"))).json()["id"]
        waiting = (await submit(first, texts(6, "orphan"))).json()["id"]  # queued behind the first
        # What a replica that died holding the job leaves: the job in the running set, its lease gone.
        jobs_redis.zrem(f"{PREFIX}queue:{FAKE_NAME}", waiting)
        jobs_redis.zadd(f"{PREFIX}running:{FAKE_NAME}", {waiting: time.time()})
        await wait_for(first, running, {"succeeded"})
        orphan = await wait_for(first, waiting, {"succeeded", "failed"})
    assert orphan["status"] == "succeeded" and len(orphan["result"]["predictions"]) == 6


async def test_two_replicas_share_the_queue_without_running_a_job_twice(
    task: TextEmbeddingTask, jobs_redis: redis.Redis
) -> None:
    (one_model, one_backend), (other_model, other_backend) = recorded(task, 0.05), recorded(task, 0.05)
    instances = [texts(12, f"job {j}") for j in range(6)]
    async with serving(one_model) as one, serving(other_model) as other:
        ids = [(await submit(one, job)).json()["id"] for job in instances]
        results = [await wait_for(other, job_id, {"succeeded", "failed"}) for job_id in ids]
    assert all(r["status"] == "succeeded" and len(r["result"]["predictions"]) == 12 for r in results)
    every = [text for job in instances for text in job]
    assert runs_of(task, every, one_backend, other_backend) == [1] * 72  # each instance ran exactly once
    # Both took part: the replica that took the submissions wakes at once, the other finds jobs when it polls.
    assert sum(runs_of(task, every, one_backend)) > 0 and sum(runs_of(task, every, other_backend)) > 0


async def test_a_chunk_failing_in_the_model_fails_its_job_alone(
    task: TextEmbeddingTask, jobs_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "BACKOFF_S", 0.01)
    poison = task.tokenizer.encode_ids(["zebra"])[0][1]
    model = fake_model(task=task, fail_on_token=poison)
    async with serving(model, jobs_concurrency=2) as server:
        bad = (await submit(server, ["fine", "fine too", "more", "and more", "a zebra", "after"])).json()["id"]
        good = (await submit(server, texts(8, "good"))).json()["id"]
        failed = await wait_for(server, bad, {"succeeded", "failed"})
        fine = await wait_for(server, good, {"succeeded", "failed"})
        predict = await server.client.post(f"/v1/models/{FAKE_NAME}:predict", json={"instances": ["unrelated"]})
        counted = await server.metric('inferopt_jobs_total{status="failed"}')
    assert failed["status"] == "failed" and "result" not in failed and failed["done"] == 4  # the first chunk
    assert failed["error"].startswith("chunk 1 (instances 4..5) failed in the model")
    assert bad in failed["error"] and "zebra" not in failed["error"] and "token" not in failed["error"]
    assert fine["status"] == "succeeded" and predict.status_code == 200 and counted == 1


async def test_a_server_of_another_artifact_fails_the_job_clearly(
    task: TextEmbeddingTask, jobs_redis: redis.Redis
) -> None:
    async with serving(fake_model(task=task, delay_s=0.05)) as first:
        job_id = (await submit(first, texts(40, "old"))).json()["id"]
        while (await first.client.get(f"/v1/jobs/{job_id}")).json()["done"] < 4:
            await asyncio.sleep(0.01)
    retrained = replace(fake_model(task=task), artifact_id="0ther0ther0ther0")
    async with serving(retrained) as second:
        done = await wait_for(second, job_id, {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["error"] == (
        f"job {job_id} was submitted for artifact {FAKE_ARTIFACT_ID}; this server serves artifact 0ther0ther0ther0, "
        "whose results may differ: submit the job again"
    )


async def test_a_job_store_that_does_not_answer_is_503_and_the_server_still_serves(
    task: TextEmbeddingTask, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="inferopt.serve"):
        async with serving(fake_model(task=task), jobs=nowhere) as server:
            posted = await submit(server, ["a"])
            got = await server.client.get("/v1/jobs/someid")
            predict = await server.client.post(f"/v1/models/{FAKE_NAME}:predict", json={"instances": ["a"]})
    assert posted.status_code == got.status_code == 503
    assert posted.json()["error"].startswith("the job store at redis://127.0.0.1:") and "retry later" in posted.text
    assert predict.status_code == 200
    assert any("does not answer" in r.getMessage() for r in caplog.records)
