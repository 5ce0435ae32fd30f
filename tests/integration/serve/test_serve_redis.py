"""The Redis tier against real Redis: entries shared across servers with a TTL, and a Redis that stops mid-run
(the server keeps answering, says so once, and goes back to Redis when it returns)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import redis

from inferopt.runtime.fake import FakeBackend
from inferopt.serve.cache import CacheKeys
from inferopt.serve.config import ServeConfig
from inferopt.serve.testing import FAKE_ARTIFACT_ID, ServerThread, fake_embedding, fake_model, free_port, wait_until
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.redis
SHARED_REDIS = "redis://127.0.0.1:6379/13"  # a DB of its own, flushed by each test


def post(client: httpx.Client, texts: list[str]) -> httpx.Response:
    return client.post("/v1/embeddings", json={"input": texts})


def assert_served_by_the_model(client: httpx.Client, task: TextEmbeddingTask, text: str) -> None:
    """One text in, 200 and exactly the fake model's vector for it out."""
    response = post(client, [text])
    assert response.status_code == 200
    vector = np.asarray(response.json()["data"][0]["embedding"], np.float32)
    np.testing.assert_array_equal(vector, fake_embedding(task, text))


def metric(client: httpx.Client, prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SHARED_REDIS)
    client.flushdb()  # fails loudly when Redis is not at 127.0.0.1:6379: deselect with -m "not redis"
    yield client
    client.flushdb()
    client.close()


@contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--daemonize", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=0.2)
        wait_until(probe.ping, timeout_s=10, what="redis-server up")
        probe.close()
        yield process
    finally:
        process.terminate()
        process.wait(10)


def test_redis_tier_shares_entries_across_servers_with_ttl(task: TextEmbeddingTask, shared_redis: redis.Redis) -> None:
    config = ServeConfig(cache=SHARED_REDIS, cache_ttl=60, access_log=False)
    keys = CacheKeys(FAKE_ARTIFACT_ID, task.cache_key)
    with ServerThread(fake_model(task=task), config) as first, httpx.Client(base_url=first.url) as client:
        assert post(client, ["alpha", "beta"]).status_code == 200
        wait_until(lambda: shared_redis.exists(keys("alpha"), keys("beta")) == 2, timeout_s=5, what="write-behind")
    assert 0 < shared_redis.ttl(keys("alpha")) <= 60

    model = fake_model(task=task)  # a second replica: empty memory, same artifact
    backend: FakeBackend = model.backends[0]
    with ServerThread(model, config) as second, httpx.Client(base_url=second.url) as client:
        backend.calls.clear()
        response = post(client, ["BETA", "gamma"])
        repeat = post(client, ["beta"])  # now in this replica's memory tier
        hits = metric(client, 'inferopt_cache_requests_total{result="hit",tier="redis"}')
        misses = metric(client, 'inferopt_cache_requests_total{result="miss",tier="redis"}')
        memory_hits = metric(client, 'inferopt_cache_requests_total{result="hit",tier="memory"}')
    assert backend.calls == [1]  # only "gamma" was computed; "beta" came from Redis
    assert (hits, misses, memory_hits) == (1, 1, 1)
    assert response.headers["x-inference-time"] != "0.000000"  # gamma was computed
    assert repeat.headers["x-inference-time"] == "0.000000"
    for text, item in zip(["beta", "gamma"], response.json()["data"], strict=True):
        np.testing.assert_array_equal(np.asarray(item["embedding"], np.float32), fake_embedding(task, text))


def test_a_foreign_value_under_our_key_is_a_miss_and_gets_replaced(
    task: TextEmbeddingTask, shared_redis: redis.Redis
) -> None:
    keys = CacheKeys(FAKE_ARTIFACT_ID, task.cache_key)
    shared_redis.set(keys("alpha"), b"not an embedding")
    config = ServeConfig(cache=SHARED_REDIS, access_log=False)
    with ServerThread(fake_model(task=task), config) as server, httpx.Client(base_url=server.url) as client:
        assert_served_by_the_model(client, task, "alpha")
        assert metric(client, 'inferopt_cache_requests_total{result="miss",tier="redis"}') == 1
        wait_until(lambda: shared_redis.get(keys("alpha")) != b"not an embedding", timeout_s=5, what="overwrite")


def test_a_redis_that_is_not_there_at_startup_is_a_warning_not_a_failure(
    task: TextEmbeddingTask, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServeConfig(cache=f"redis://127.0.0.1:{free_port()}/0", access_log=False)  # nothing listens there
    caplog.set_level(logging.WARNING, logger="inferopt.serve")
    with ServerThread(fake_model(task=task), config) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/health/ready").status_code == 200
        assert_served_by_the_model(client, task, "served without redis")
        assert metric(client, "inferopt_cache_redis_up") == 0
    assert any("is unreachable" in r.getMessage() for r in caplog.records if r.name == "inferopt.serve")


def test_server_survives_redis_stopping_and_reconnects(
    task: TextEmbeddingTask, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = ServeConfig(cache=f"redis://127.0.0.1:{port}/0", access_log=False)
    keys = CacheKeys(FAKE_ARTIFACT_ID, task.cache_key)
    caplog.set_level(logging.WARNING, logger="inferopt.serve")
    with own_redis(port) as server_process:
        client_redis = redis.Redis(port=port)
        with (
            ServerThread(fake_model(task=task), config) as server,
            httpx.Client(base_url=server.url) as client,
        ):
            assert post(client, ["before the outage"]).status_code == 200
            wait_until(lambda: client_redis.exists(keys("before the outage")), timeout_s=5, what="first write")

            server_process.terminate()
            server_process.wait(10)
            assert_served_by_the_model(client, task, "during the outage")
            assert metric(client, "inferopt_cache_redis_up") == 0
            assert metric(client, 'inferopt_cache_requests_total{result="error",tier="redis"}') >= 1
            assert post(client, ["still during"]).status_code == 200

            with own_redis(port):
                # The tier tries again once a second: keep sending new inputs (memory misses) until one finds it.
                fresh = (f"probe {i}" for i in range(10_000))
                wait_until(
                    lambda: (
                        post(client, [next(fresh)]).status_code == 200
                        and metric(client, "inferopt_cache_redis_up") == 1
                    ),
                    timeout_s=10,
                    what="reconnect",
                )
                assert post(client, ["after the outage"]).status_code == 200
                wait_until(lambda: client_redis.exists(keys("after the outage")), timeout_s=5, what="write after")
        client_redis.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "inferopt.serve"]
    assert sum("is unreachable" in m for m in warnings) == 1  # one warning per outage, not one per request
    assert any("is back" in m for m in warnings)
