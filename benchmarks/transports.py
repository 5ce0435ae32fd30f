"""What each way of reaching the model costs, in one run on the text artifact: in-process, HTTP/1.1 over TCP, HTTP
over a Unix socket, gRPC over TCP, gRPC over a Unix socket; HTTP also with a lean client.

    python benchmarks/transports.py build/demo/artifact [--requests 2000] [--duration 15] [--json OUT]

One `inferopt serve` process listens on all four sockets (--port, --uds, --grpc-port, --grpc-uds); the
in-process row runs the same artifact through the same InferenceService (batcher, cache) in this process,
with no protocol and no socket. Every remote row speaks the Open Inference Protocol v2 (the JSON body over
HTTP, the protobuf message over gRPC) with the pooled client a Python caller would use: one httpx.AsyncClient
(keep-alive connections), one grpc.aio channel (HTTP/2 multiplexing). Three more HTTP rows use the load
generator's lean connections (64 of them, kept alive; the request written as bytes, the response framed and
never decoded): the floor the server and the socket set, with almost nothing spent in the client; the last of
them posts OpenAI's /v1/embeddings with base64 vectors, the lightest body the server has for a text.

Two passes, each with its own server:
1. cache hit: one sentence, asked again and again at concurrency 1. Every answer comes from the in-process cache,
   so a row's latency is its transport and protocol alone; its overhead is that minus the in-process hit's.
2. model: distinct STS-B sentences with the cache off, at concurrency 1 (latency, --requests of them) and 64
   (closed loop for --duration seconds: throughput).
Overheads are differences of medians (and of p99s) against the in-process row of the same pass. Target (issue
13): the best socket path adds <= 0.3 ms p50 over in-process at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.serve import STSB_DEV, Server, sentences  # noqa: E402

from inferopt.serve.testing import free_port  # noqa: E402

Call = Callable[[str], Awaitable[None]]
HIT_TEXT = "A man is playing a guitar on the street."


@dataclass
class Row:
    transport: str
    p50_ms: float
    p99_ms: float
    n: int
    overhead_p50_ms: float = 0.0
    overhead_p99_ms: float = 0.0
    throughput_rps: float | None = None


async def latencies(call: Call, texts: list[str], warmup: int = 100) -> list[float]:
    for text in texts[:warmup]:
        await call(text)
    out = []
    for text in texts:
        started = time.perf_counter()
        await call(text)
        out.append(time.perf_counter() - started)
    return out


async def throughput(call: Call, texts: list[str], concurrency: int, seconds: float) -> float:
    """Requests per second of `concurrency` closed-loop workers over `seconds` (after a 2 s warm-up)."""
    done = 0
    stop_at = 0.0
    counting = False

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop_at:
            await call(texts[i % len(texts)])
            i += concurrency
            if counting:
                done += 1

    for phase_seconds, count in ((2.0, False), (seconds, True)):
        counting = count
        done = 0
        stop_at = time.perf_counter() + phase_seconds
        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done / (time.perf_counter() - started)


class InProcess:
    """The artifact behind the server's own InferenceService in this process: no protocol, no socket."""

    def __init__(self, artifact: Path, cache: str) -> None:
        from inferopt.artifact import load_artifact
        from inferopt.serve.config import ServeConfig
        from inferopt.serve.metrics import ServeMetrics
        from inferopt.serve.model import ServingModel
        from inferopt.serve.state import ServerState

        loaded = load_artifact(artifact)
        self.state = ServerState(
            ServeConfig(artifact=artifact, cache=cache, access_log=False),
            lambda: ServingModel.from_artifact(loaded),
            ServeMetrics(),
        )

    async def __aenter__(self) -> Call:
        await self.state.start()
        service = self.state.ready.service  # type: ignore[union-attr]

        async def call(text: str) -> None:
            (computed,) = await service.infer([text], time.monotonic() + 30)
            assert computed.result.outputs["embeddings"].shape[-1] > 0

        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.state.stop()


def http_call(client: object, name: str) -> Call:
    from inferopt.serve.wire.oip_v2 import encode_infer_request

    path = f"/v2/models/{name}/infer"

    async def call(text: str) -> None:
        response = await client.post(path, content=encode_infer_request({"text": [text]}))  # type: ignore[attr-defined]
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    return call


class LeanHttp:
    """inferopt's load-generator connections (inferopt.bench.http1): the request written as bytes, the response
    only framed (status and length), never decoded. The floor of what the server and the socket cost, with
    next to nothing spent in the client; a Go or Rust client comes closer to it than httpx does."""

    def __init__(
        self,
        path: str,
        body: Callable[[str], bytes],
        connect: Callable[[Callable[[], object]], Awaitable[tuple[object, object]]],
    ) -> None:
        from inferopt.bench.http1 import parse_target

        self.target = parse_target(f"http://inferopt{path}")
        self.body = body
        self.connect = connect
        self.idle: asyncio.Queue[object] = asyncio.Queue()
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self.tags = 0

    async def open(self, connections: int) -> LeanHttp:
        for _ in range(connections):
            _, conn = await self.connect(lambda: _connection(self))
            self.idle.put_nowait(conn)
        return self

    def on_response(self, conn: object, status: int, done: float, keep_alive: bool) -> None:
        self.waiting.pop(conn.tag).set_result(status)  # type: ignore[attr-defined]
        conn.tag = -1  # type: ignore[attr-defined]

    def on_lost(self, conn: object) -> None:
        future = self.waiting.pop(conn.tag, None)  # type: ignore[attr-defined]
        if future is not None and not future.done():
            future.set_exception(ConnectionError("the server closed the connection"))

    async def call(self, text: str) -> None:
        from inferopt.bench.http1 import encode_post

        conn = await self.idle.get()
        self.tags += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.tags] = future
        conn.send(encode_post(self.target, self.body(text)), self.tags)  # type: ignore[attr-defined]
        status = await future
        self.idle.put_nowait(conn)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()  # type: ignore[attr-defined]


def _connection(sink: LeanHttp) -> object:
    from inferopt.bench.http1 import Http1Connection

    return Http1Connection(sink)  # type: ignore[arg-type]


def grpc_call(client: object, name: str) -> Call:
    async def call(text: str) -> None:
        outputs = await client.infer(name, {"text": [text]})  # type: ignore[attr-defined]
        assert outputs["embeddings"].shape[-1] > 0

    return call


async def each_transport(
    artifact: Path, server: Server, sockets: dict[str, str], cache: str, run: Callable
) -> list[Row]:  # type: ignore[type-arg]
    """`run(name, call)` for in-process and the four remote transports, in that order."""
    import httpx

    from inferopt.artifact import load_artifact
    from inferopt.serve.grpc_client import GrpcClient

    name = load_artifact(artifact).model_name
    rows = []
    async with InProcess(artifact, cache) as call:
        rows.append(await run("in-process", call))
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    clients = {
        "HTTP/1.1, TCP": httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60),
        "HTTP/1.1, Unix socket": httpx.AsyncClient(
            base_url="http://inferopt",
            transport=httpx.AsyncHTTPTransport(uds=sockets["uds"], limits=limits),
            timeout=60,
        ),
    }
    for label, client in clients.items():
        async with client:
            rows.append(await run(label, http_call(client, name)))
    loop = asyncio.get_running_loop()
    port = int(server.url.rsplit(":", 1)[1])
    tcp = partial_connect(loop.create_connection, host="127.0.0.1", port=port)
    uds = partial_connect(loop.create_unix_connection, path=sockets["uds"])
    infer, embeddings = (f"/v2/models/{name}/infer", oip_v2_body), ("/v1/embeddings", openai_base64_body)
    lean_rows = {
        "HTTP/1.1, TCP, lean client": (*infer, tcp),
        "HTTP/1.1, Unix socket, lean client": (*infer, uds),
        # The lightest body the server has for a text: OpenAI's route, the vector as base64 (no JSON floats).
        "HTTP/1.1, Unix socket, lean, OpenAI b64": (*embeddings, uds),
    }
    for label, (path, body, connect) in lean_rows.items():
        lean = await LeanHttp(path, body, connect).open(64)
        try:
            rows.append(await run(label, lean.call))
        finally:
            lean.close()
    for label, target in (("gRPC, TCP", sockets["grpc"]), ("gRPC, Unix socket", f"unix:{sockets['grpc_uds']}")):
        async with GrpcClient(target) as grpc_client:
            rows.append(await run(label, grpc_call(grpc_client, name)))
    return rows


def oip_v2_body(text: str) -> bytes:
    from inferopt.serve.wire.oip_v2 import encode_infer_request

    return encode_infer_request({"text": [text]})


def openai_base64_body(text: str) -> bytes:
    return json.dumps({"input": text, "encoding_format": "base64"}).encode()


def partial_connect(opener: Callable[..., Awaitable[tuple[object, object]]], **where: object) -> Callable:  # type: ignore[type-arg]
    async def connect(factory: Callable[[], object]) -> tuple[object, object]:
        return await opener(factory, **where)

    return connect


def summarize(label: str, seconds: list[float]) -> Row:
    ms = np.asarray(seconds) * 1000
    return Row(label, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(ms))


def with_overheads(rows: list[Row]) -> list[Row]:
    base = rows[0]
    for row in rows:
        row.overhead_p50_ms = row.p50_ms - base.p50_ms
        row.overhead_p99_ms = row.p99_ms - base.p99_ms
    return rows


def start_server(artifact: Path, cache: str, logs: Path, work: Path) -> tuple[Server, dict[str, str]]:
    port, grpc_port = free_port(), free_port()
    sockets = {
        "uds": str(work / f"http-{cache}.sock"),
        "grpc": f"127.0.0.1:{grpc_port}",
        "grpc_uds": str(work / f"grpc-{cache}.sock"),
    }
    command = [
        sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", cache,
        "--no-access-log", "--grpc-port", str(grpc_port), "--grpc-uds", sockets["grpc_uds"],
    ]  # fmt: skip
    # uvicorn listens on one socket per process: the Unix-socket HTTP row gets a second server process, started
    # alike, and measured alone like every other row.
    return Server(f"inferopt-{cache}", command, port, "/health/ready", logs), sockets


def uds_server(artifact: Path, cache: str, logs: Path, sockets: dict[str, str]) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "inferopt", "serve", str(artifact), "--port", str(port), "--cache", cache,
        "--no-access-log", "--uds", sockets["uds"],
    ]  # fmt: skip
    return UdsServer(f"inferopt-{cache}-uds", command, port, "/health/ready", logs, sockets["uds"])


class UdsServer(Server):
    """A server that listens on a Unix socket only: ready once the socket answers /health/ready."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, logs: Path, path: str) -> None:
        super().__init__(name, command, port, ready_path, logs)
        self.path = path

    def __enter__(self) -> UdsServer:
        import subprocess

        import httpx

        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 300
        with httpx.Client(transport=httpx.HTTPTransport(uds=self.path), base_url="http://inferopt") as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    sys.exit(f"error: {self.name} exited; see {self.log}")
                try:
                    if client.get(self.ready_path).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
        sys.exit(f"error: {self.name} not ready after 300 s; see {self.log}")


def show(title: str, rows: list[Row], with_rate: bool) -> None:
    print(f"\n{title}")
    head = f"{'transport':<36}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
    print(head + (f"{'req/s @64':>11}" if with_rate else ""))
    for r in rows:
        line = f"{r.transport:<36}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}{r.overhead_p50_ms:>9.3f}{r.overhead_p99_ms:>9.3f}"
        print(line + (f"{r.throughput_rps:>11.1f}" if with_rate and r.throughput_rps is not None else ""))


async def hit_pass(artifact: Path, server: Server, sockets: dict[str, str], n: int) -> list[Row]:
    async def run(label: str, call: Call) -> Row:
        return summarize(label, await latencies(call, [HIT_TEXT] * n))

    return with_overheads(await each_transport(artifact, server, sockets, "memory", run))


async def model_pass(
    artifact: Path, server: Server, sockets: dict[str, str], texts: list[str], n: int, seconds: float
) -> list[Row]:
    async def run(label: str, call: Call) -> Row:
        row = summarize(label, await latencies(call, texts[:n]))
        row.throughput_rps = await throughput(call, texts, 64, seconds)
        return row

    return with_overheads(await each_transport(artifact, server, sockets, "off", run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--requests", type=int, default=2000, help="requests per row at concurrency 1")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per row at concurrency 64")
    parser.add_argument("--data", type=Path, default=STSB_DEV)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import uvloop

    texts = sentences(args.data)
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="inferopt-transports-") as tmp:
        work = Path(tmp)
        for cache, title in (("memory", "cache hit"), ("off", "model")):
            server, sockets = start_server(args.artifact, cache, work, work)
            with server, uds_server(args.artifact, cache, work, sockets):
                if cache == "memory":
                    rows = uvloop.run(hit_pass(args.artifact, server, sockets, args.requests))
                else:
                    rows = uvloop.run(model_pass(args.artifact, server, sockets, texts, args.requests, args.duration))
            show(f"{title} (concurrency 1, n={args.requests}; overhead vs in-process)", rows, cache == "off")
            results[title] = [asdict(r) for r in rows]
    best = min((r for r in results["cache hit"][1:]), key=lambda r: r["overhead_p50_ms"])  # type: ignore[arg-type, return-value]
    print(
        f"\nbest socket path: {best['transport']}, +{best['overhead_p50_ms']:.3f} ms p50 over in-process "
        f"(target <= 0.3 ms: {'met' if best['overhead_p50_ms'] <= 0.3 else 'missed'})"  # type: ignore[operator]
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
