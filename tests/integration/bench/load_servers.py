"""Small HTTP servers with known behaviour, for testing the load generator and the profiler without `serve`.

Each runs a raw asyncio HTTP/1.1 server on its own thread and event loop, on a free loopback port. The load
generator sends from its own process, so the server has this process to itself. A `Behaviour` decides, per
request, what to answer and when: immediately, after a stall of the whole server, at a fixed capacity of K
requests per second, with an error status, never, or with a Server-Timing header of measured stage times.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Respond = Callable[[int, bytes, dict[str, str]], None]
BODY = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}],"model":"test"}'


class Behaviour:
    """Answers at once with 200. Subclasses change when or what; `n` counts requests seen."""

    def __init__(self) -> None:
        self.n = 0

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        respond(200, BODY, {})


@dataclass
class Stall(Behaviour):
    """Blocks the whole server once for `stall_s` (a GC pause), on the first request at or after `at`."""

    at: float
    stall_s: float = 0.2
    stalled: bool = False
    n: int = 0

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        if not self.stalled and time.monotonic() >= self.at:
            self.stalled = True
            time.sleep(self.stall_s)
        respond(200, BODY, {})


@dataclass
class Capacity(Behaviour):
    """Serves at most `per_second` requests per second, one after another: each answer is scheduled 1/K after
    the previous one (or after arrival, if the server was idle). Above K the backlog grows without bound."""

    per_second: float
    free_at: float = 0.0
    n: int = 0

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        self.free_at = max(loop.time(), self.free_at) + 1.0 / self.per_second
        loop.call_at(self.free_at, respond, 200, BODY, {})


@dataclass
class Faulty(Behaviour):
    """Every `error_every`-th request gets a 500; every `hang_every`-th is never answered."""

    error_every: int = 10
    hang_every: int = 0
    n: int = 0

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        if self.hang_every and self.n % self.hang_every == 0:
            return
        if self.error_every and self.n % self.error_every == 0:
            respond(500, b'{"error":{"message":"boom"}}', {})
            return
        respond(200, BODY, {})


@dataclass
class Timed(Behaviour):
    """Spends known times in named stages (blocking sleeps) and reports them, measured, in Server-Timing."""

    stages_s: dict[str, float] = field(
        default_factory=lambda: {
            "decode": 0.0005,
            "preprocess": 0.001,
            "queue": 0.002,
            "inference": 0.003,
            "postprocess": 0.0005,
            "encode": 0.0005,
        }
    )
    unreported_s: float = 0.0  # time spent in no named stage: it shows only in the server's total
    fail_after: int | None = None  # answer 503 from this request on
    n: int = 0

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            respond(503, b'{"error":{"message":"draining"}}', {})
            return
        started = time.perf_counter()
        if self.unreported_s:  # even sleep(0) costs a system call: ~0.1 ms unaccounted
            time.sleep(self.unreported_s)
        spent = {}
        for stage, seconds in self.stages_s.items():
            t0 = time.perf_counter()
            time.sleep(seconds)
            spent[stage] = time.perf_counter() - t0
        spent["total"] = time.perf_counter() - started
        header = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in spent.items())
        respond(200, BODY, {"Server-Timing": header, "x-inference-time": f"{spent['inference']:.6f}"})


class _Connection(asyncio.Protocol):
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.transports.add(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.transports.discard(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4 : end + 4 + length], self.buf[end + 4 + length :]
            self.server.behaviour.handle(self.server.loop, body, self.respond)

    def respond(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        self.transport.write(head.encode() + body)


class TestServer:
    """`with TestServer(behaviour) as server:` serves on `server.url` until the block ends."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.loop = asyncio.new_event_loop()
        self.transports: set[asyncio.BaseTransport] = set()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, backlog=2048)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for transport in list(self.transports):
            transport.abort()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    def __enter__(self) -> TestServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# Run in a process of its own, with the scheduling the sender gets (SCHED_FIFO where allowed).
_TIMER_PROBE = """
import os, time
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
except (PermissionError, AttributeError):
    pass
late = 0
for _ in range(2000):
    due = time.perf_counter() + 0.001
    time.sleep(0.001)
    late += time.perf_counter() - due > 0.001
print(late / 2000)
"""


def host_timer_late() -> float:
    """The share of 1 ms sleeps this machine wakes up from more than 1 ms late (about 2 s to measure). A VM
    whose host pre-empts it keeps no schedule to the millisecond, whatever the load generator does."""
    probe = subprocess.run([sys.executable, "-c", _TIMER_PROBE], capture_output=True, text=True, timeout=60)
    return float(probe.stdout.strip())
