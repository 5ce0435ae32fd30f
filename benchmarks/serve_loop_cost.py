"""Event-loop CPU per request of `inferopt serve`, in-process: the ASGI app called directly, no sockets.

    python benchmarks/serve_loop_cost.py [--requests 6000] [--concurrency 64] [--profile]

On 2 cores the event loop's CPU is taken from the runtime sessions, so it bounds HTTP throughput against
the in-process harness. This isolates it: a fake runtime (no model time) in its batch threads, the real
app, tokenizer, batcher and metrics on a uvloop loop, and CPU counted on the loop's thread only.
- miss: every request a new sentence, cache off (tokenize -> batcher -> response);
- hit: a handful of sentences, in-process cache on (key -> LRU -> response).
`--profile` adds cProfile's table for the loop thread (which roughly doubles the cost it measures).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvloop
from fastapi import FastAPI

from inferopt.serve.app import create_app
from inferopt.serve.config import ServeConfig
from inferopt.serve.testing import fake_model

WARMUP = 300


def request_scope(length: int) -> dict[str, object]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


async def post(app: FastAPI, body: bytes) -> None:
    """One POST /v1/embeddings through the ASGI interface, as uvicorn would make it; fails unless 200."""
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        nonlocal delivered
        if delivered:  # the app only asks again to watch for a disconnect
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    await app(request_scope(len(body)), receive, send)
    if statuses != [200]:
        raise SystemExit(f"error: the server answered {statuses}")


def bodies(kind: str, count: int) -> Iterator[bytes]:
    for i in range(count):
        n = i if kind == "miss" else i % 10
        yield b'{"input": "sentence number %d, about a cat that sat on the mat"}' % n


async def measure(kind: str, requests: int, concurrency: int, profile: bool) -> None:
    config = ServeConfig(access_log=False, cache="off" if kind == "miss" else "memory")
    app = create_app(config, fake_model(sessions=2, batch_size=8))
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        while app.state.inferopt.phase == "loading":
            await asyncio.sleep(0.01)
        queue = bodies(kind, WARMUP + requests)
        await asyncio.gather(*(post(app, next(queue)) for _ in range(WARMUP)))

        async def connection() -> None:
            for body in queue:
                await post(app, body)

        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), time.thread_time()
        if profiler:
            profiler.enable()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    print(f"{kind:4s}: {requests / wall:7.0f} req/s, event-loop CPU {cpu / requests * 1e6:5.0f} us per request")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    uvloop.install()
    for kind in ("hit", "miss"):
        asyncio.run(measure(kind, args.requests, args.concurrency, args.profile))


if __name__ == "__main__":
    main()
