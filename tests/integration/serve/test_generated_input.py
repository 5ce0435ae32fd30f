"""Generated input on every route of a real server (uvicorn in a thread, the text task's real tokenizer, a fake
runtime, jobs in Redis): a few hundred schemathesis cases per route from the server's own OpenAPI schema, and
Hypothesis tensors for OIP v2 over REST and gRPC. No 5xx, no call without an answer, and the server still
serves afterwards. The other tasks run the same helpers on their real artifacts (test_serve_<task>.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from tests.fuzz import every_route, grpc_messages, oip_v2_bodies

from inferopt.serve.config import ServeConfig
from inferopt.serve.testing import FAKE_NAME, ServerThread, fake_model
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.redis
JOBS = "redis://127.0.0.1:6379/12"
KEY = "k-fuzz-7d1e5a9c3b"


@pytest.fixture(scope="module")
def server(task: TextEmbeddingTask) -> Iterator[ServerThread]:
    store = redis.Redis.from_url(JOBS)
    store.flushdb()
    config = ServeConfig(access_log=False, jobs=JOBS, grpc_port=0, max_items=64, max_queue=256)
    with ServerThread(fake_model(task=task), config) as running:
        yield running
    store.flushdb()


def test_no_route_answers_5xx_to_generated_input(server: ServerThread) -> None:
    seen = every_route(server.url, FAKE_NAME, examples=100)
    assert len(seen) == 16  # every operation of the schema was exercised
    embeddings = seen["POST /v1/embeddings"]
    assert embeddings[200] > 0 and embeddings[422] > 0 and sum(embeddings.values()) >= 150
    assert seen["POST /v1/jobs"][422] > 0  # job bodies reached the instance parser
    assert seen["POST /v2/models/{name}/infer"][422] > 0
    assert httpx.post(f"{server.url}/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_generated_tensors_over_rest_and_grpc_never_fail_the_server(server: ServerThread) -> None:
    rest = oip_v2_bodies(server.url, FAKE_NAME, examples=300)
    assert rest[200] > 0 and rest[422] > 0
    inputs = httpx.get(f"{server.url}/v2/models/{FAKE_NAME}").json()["inputs"]
    calls = grpc_messages(server.grpc_target, FAKE_NAME, inputs, examples=300)
    assert calls["INVALID_ARGUMENT"] > 0 and calls["NOT_FOUND"] > 0
    assert sum(calls.values()) == 300  # every call answered


def test_with_keys_every_generated_request_without_one_is_a_401(task: TextEmbeddingTask) -> None:
    config = ServeConfig(access_log=False, api_keys=(KEY,), max_items=64)
    with ServerThread(fake_model(task=task), config) as keyed:
        seen = every_route(keyed.url, FAKE_NAME, examples=20)
        open_paths = {"GET /health/live", "GET /health/ready", "GET /v2/health/live", "GET /v2/health/ready"}
        for label, counts in seen.items():
            assert set(counts) == ({200} if label in open_paths or label == "GET /metrics" else {401}), label
        keyed_seen = every_route(keyed.url, FAKE_NAME, examples=20, headers={"authorization": f"Bearer {KEY}"})
        assert keyed_seen["POST /v1/embeddings"][200] > 0 and 401 not in keyed_seen["POST /v1/embeddings"]
