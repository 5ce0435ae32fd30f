"""W3C traceparent: a valid one is continued (same trace, flags; this server's own span), a malformed or absent
one starts a fresh trace, never an error; every response returns it and the access log carries the trace id."""

from __future__ import annotations

import re

import orjson
import pytest

from inferopt.serve.testing import fake_model
from inferopt.serve.trace_context import from_headers, parse
from inferopt.tasks.text_embedding import TextEmbeddingTask

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01".encode()
HEADER = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def test_a_valid_traceparent_is_continued_with_a_span_of_its_own() -> None:
    assert parse(VALID) == (TRACE, PARENT, "01")
    context = from_headers([(b"traceparent", VALID)])
    assert (context.trace_id, context.parent_id, context.flags) == (TRACE, PARENT, "01")
    assert context.span_id != PARENT and re.fullmatch("[0-9a-f]{16}", context.span_id)
    assert context.header() == f"00-{TRACE}-{context.span_id}-01".encode()
    assert parse(f"01-{TRACE}-{PARENT}-00-extra".encode()) == (TRACE, PARENT, "00")  # a later version's extra fields


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        f"00-{TRACE.upper()}-{PARENT}-01".encode(),  # upper case is not the format
        f"00-{TRACE}-{PARENT}-01-extra".encode(),  # version 00 has no more fields
        f"ff-{TRACE}-{PARENT}-01".encode(),  # version ff is invalid
        f"00-{'0' * 32}-{PARENT}-01".encode(),  # an all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01".encode(),  # an all-zero parent
        f"00-{TRACE[:-1]}-{PARENT}-01".encode(),
        f"00_{TRACE}_{PARENT}_01".encode(),
    ],
)
def test_a_malformed_traceparent_starts_a_fresh_trace(value: bytes) -> None:
    assert parse(value) is None
    context = from_headers([(b"traceparent", value)])
    assert context.parent_id is None and re.fullmatch("[0-9a-f]{32}", context.trace_id) and context.trace_id != TRACE


def test_fresh_traces_are_distinct() -> None:
    assert len({from_headers([]).trace_id for _ in range(1000)}) == 1000


@pytest.mark.anyio
async def test_responses_return_the_trace_and_the_access_log_names_it(
    serve, task: TextEmbeddingTask, capfdbinary
) -> None:
    async with serve(fake_model(task=task), access_log=True) as served:
        capfdbinary.readouterr()
        continued = await served.client.post(
            "/v1/embeddings", json={"input": ["a"]}, headers={"traceparent": VALID.decode()}
        )
        fresh = await served.client.post("/v1/embeddings", json={"input": ["b"]}, headers={"traceparent": "nonsense"})
        refused = await served.client.post("/v1/embeddings", json={"input": []})
        err = capfdbinary.readouterr().err
    assert continued.status_code == 200 and fresh.status_code == 200 and refused.status_code == 422
    returned = [HEADER.fullmatch(r.headers["traceparent"]) for r in (continued, fresh, refused)]
    assert all(returned)
    assert returned[0].group(1) == TRACE and returned[0].group(2) != PARENT  # type: ignore[union-attr]
    assert returned[1].group(1) != TRACE  # type: ignore[union-attr]
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith(b'{"ts"')]
    assert [line["trace_id"] for line in lines] == [m.group(1) for m in returned]  # type: ignore[union-attr]
