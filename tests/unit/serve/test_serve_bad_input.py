"""Each bad input over HTTP: the status code of DESIGN.md, a message naming the field, a rejection metric, and
no effect on the good requests batched at the same moment."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inferopt.serve.testing import fake_embedding, fake_model
from inferopt.tasks.text_embedding import TextEmbeddingTask

pytestmark = pytest.mark.anyio

CASES = [
    # (name, body bytes, extra headers, status, words the message must contain)
    ("malformed json", b'{"input": ["a",', {}, 400, ["not valid JSON"]),
    ("non-utf8", b'{"input": "caf\xe9"}', {}, 400, ["UTF-8"]),
    ("not an object", b'["a"]', {}, 422, ["body", "JSON object"]),
    ("missing input", b'{"model": "fake-minilm"}', {}, 422, ["input is required"]),
    ("wrong type", b'{"input": 42}', {}, 422, ["input must be a string or a list"]),
    ("wrong item type", b'{"input": ["a", {"b": 1}]}', {}, 422, ["input[1]", "must be a string"]),
    ("token arrays", b'{"input": [[101, 102]]}', {}, 422, ["input[0]"]),
    ("empty string", b'{"input": ""}', {}, 422, ["input", "empty"]),
    ("empty item", b'{"input": ["a", "  "]}', {}, 422, ["input[1]", "empty"]),
    ("empty list", b'{"input": []}', {}, 422, ["input", "empty list"]),
    ("too many items", b'{"input": ["a", "b", "c", "d", "e"]}', {}, 413, ["5 items", "at most 4"]),
    ("model not a string", b'{"input": "a", "model": 4}', {}, 422, ["model must be a string"]),
    ("bad encoding", b'{"input": "a", "encoding_format": "int8"}', {}, 422, ["encoding_format"]),
    ("bad timeout header", b'{"input": "a"}', {"x-request-timeout-ms": "soon"}, 422, ["x-request-timeout-ms"]),
    ("body too large", b'{"input": "' + b"a" * 3000 + b'"}', {}, 413, ["limit", "--max-request-bytes"]),
]


@pytest.mark.parametrize(("name", "body", "headers", "status", "words"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_its_status_and_names_the_field(
    serve, task: TextEmbeddingTask, name: str, body: bytes, headers: dict[str, str], status: int, words: list[str]
) -> None:
    async with serve(fake_model(task=task), max_items=4, max_request_bytes=2048) as served:
        response = await served.client.post(
            "/v1/embeddings", content=body, headers={"content-type": "application/json", **headers}
        )
        rejected = sum(
            [
                await served.metric(f'inferopt_rejected_total{{reason="{r}"}}')
                for r in ("malformed", "too_large", "invalid")
            ]
        )
    assert response.status_code == status
    error = response.json()["error"]
    for word in words:
        assert word in error["message"], error
    assert error["code"] == status
    assert rejected == 1


async def test_a_chunked_body_over_the_limit_is_refused_without_content_length(serve, task: TextEmbeddingTask) -> None:
    async def chunks():
        yield b'{"input": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    async with serve(fake_model(task=task), max_request_bytes=2048) as served:
        response = await served.client.post("/v1/embeddings", content=chunks())
    assert response.status_code == 413


async def test_bad_requests_do_not_disturb_good_ones_batched_with_them(serve, task: TextEmbeddingTask) -> None:
    model = fake_model(task=task, delay_s=0.1)
    backend = model.backends[0]
    good = ["first good one", "second good one", "third"]
    async with serve(model, max_items=4, max_request_bytes=2048) as served:
        backend.calls.clear()
        blocker = asyncio.create_task(served.client.post("/v1/embeddings", json={"input": "blocker"}))
        while not backend.calls:
            await asyncio.sleep(0.002)
        requests = [served.client.post("/v1/embeddings", json={"input": text}) for text in good]
        requests += [
            served.client.post("/v1/embeddings", content=body, headers=headers) for _, body, headers, _, _ in CASES
        ]
        responses = await asyncio.gather(blocker, *requests)
    assert [r.status_code for r in responses[1 : 1 + len(good)]] == [200] * len(good)
    assert [r.status_code for r in responses[1 + len(good) :]] == [case[3] for case in CASES]
    assert backend.calls == [1, len(good)]  # the good ones rode one batch
    for text, response in zip(good, responses[1:], strict=False):
        np.testing.assert_array_equal(
            np.asarray(response.json()["data"][0]["embedding"], np.float32), fake_embedding(task, text)
        )
