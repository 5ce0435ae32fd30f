"""429s as refusals with latencies of their own: counted, timed from the intended send, Retry-After noted.

Against a tiny HTTP server on a thread of this process, over loopback; the load generator sends from its own
process, as it always does. Rates are low (the machine has 2 cores).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from inferopt.bench.load_console import print_load_result
from inferopt.bench.loadgen import LoadConfig, Phase, run_load, run_phases
from inferopt.bench.schedule import arrival_offsets

REFUSE_DELAY_S = 0.02  # the server refuses late, so the refusals' latency is told apart from the 200s'
BODY = b'{"object":"list","data":[]}'


class Refuser:
    """Request k (1-based, the preflight is 1) gets 200 at once when k % 3 == 1; else 429 after
    REFUSE_DELAY_S, with Retry-After when k % 3 == 2. `refuse_from` > 0: only requests after it are refused."""

    def __init__(self, refuse_from: int = 0) -> None:
        self.n = 0
        self.refuse_from = refuse_from
        self.answered = {"200": 0, "429 retry-after": 0, "429 bare": 0}

    def answer(self) -> tuple[str, float, bytes]:
        self.n += 1
        if (self.refuse_from and self.n <= self.refuse_from) or self.n % 3 == 1:
            return "200", 0.0, b""
        if self.n % 3 == 2:
            return "429 retry-after", REFUSE_DELAY_S, b"Retry-After: 1\r\n"
        return "429 bare", REFUSE_DELAY_S, b""


class _Conn(asyncio.Protocol):
    def __init__(self, server: TinyServer) -> None:
        self.server, self.buf = server, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            kind, delay, extra = self.server.refuser.answer()
            self.server.loop.call_later(delay, self.respond, kind, extra)

    def respond(self, kind: str, extra: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.server.refuser.answered[kind] += 1
        status = b"200 OK" if kind == "200" else b"429 Too Many Requests"
        head = b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + extra
        self.transport.write(head + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)


class TinyServer:
    def __init__(self, refuser: Refuser) -> None:
        self.refuser = refuser
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(lambda: _Conn(self), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.close()

    def __enter__(self) -> TinyServer:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"sentence {i}\n" for i in range(20)), encoding="utf-8")
    return path


@pytest.fixture
def refusing_server() -> Iterator[TinyServer]:
    with TinyServer(Refuser()) as server:
        yield server


def test_429s_are_counted_timed_and_their_retry_after_noted(refusing_server: TinyServer, texts: Path) -> None:
    result = run_load(LoadConfig(refusing_server.url, rate=150, duration_s=2.5, warmup_s=0.0, inputs=texts))
    answered = refusing_server.refuser.answered
    scheduled = arrival_offsets(150, 2.5, "poisson", 0).size
    assert sum(answered.values()) == scheduled + 1  # + the preflight, which got a 200
    refused = result.rejections
    assert result.measured == scheduled and result.ok == answered["200"] - 1
    assert refused.count == answered["429 retry-after"] + answered["429 bare"] == result.errors["429"]
    assert refused.with_retry_after == answered["429 retry-after"] > 0
    assert refused.count > refused.with_retry_after
    # Every refusal is timed, from its intended send: none is quicker than the server's delay.
    assert refused.latency_ms["n"] == refused.count == refused.service_ms["n"]
    assert refused.latency_ms["min"] >= REFUSE_DELAY_S * 1000 * 0.99
    assert refused.latency_ms["p50"] >= refused.service_ms["p50"]
    assert refused.latency_ms["max"] < 1000.0
    # ...and kept out of the 2xx latencies, which keep their meaning.
    assert result.latency_ms["n"] == result.ok
    assert result.latency_ms["p50"] < REFUSE_DELAY_S * 1000
    data = result.to_dict()
    assert data["rejections"]["count"] == refused.count
    assert data["rejections"]["with_retry_after"] == refused.with_retry_after
    assert data["rejections"]["latency_ms"]["p50"] == refused.latency_ms["p50"]
    console = Console(record=True, width=160)
    print_load_result(result, console)
    printed = console.export_text()
    assert f"{refused.count:,} (" in printed and f"{refused.with_retry_after:,} with Retry-After" in printed
    assert "rejected 429 (from intended send)" in printed


def test_phases_run_back_to_back_and_are_summarized_each_on_its_own(texts: Path) -> None:
    """Two phases at their own rates; from the first refusal on, the server refuses two requests in three."""
    phases = [Phase(100, 1.5, warmup_s=0.5, name="normal"), Phase(250, 1.5, name="overload")]
    first = arrival_offsets(100, 1.5, "poisson", 0)
    with TinyServer(Refuser(refuse_from=1 + first.size)) as server:
        run = run_phases(LoadConfig(server.url, inputs=texts), phases)
    normal, overload = run.phases
    assert run.offsets_s == [0.0, 1.5]
    assert normal.offered_rate == 100 and overload.offered_rate == 250
    assert normal.config["phase"] == "normal" and overload.config["phase_start_s"] == 1.5
    assert normal.measured == int((first >= 0.5).sum()) and normal.rejections.count == 0 and not normal.errors
    assert overload.measured == arrival_offsets(250, 1.5, "poisson", 1).size
    assert overload.rejections.count == overload.errors["429"] > overload.measured // 2
    assert 0 < overload.rejections.with_retry_after < overload.rejections.count
    # One schedule, one sender: the whole record is there, and any window of it can be summarized.
    assert run.record.intended.size == first.size + overload.measured
    assert run.window(1.5, 3.0).rejections.count == overload.rejections.count
    assert run.window(0.0, 3.0).measured == run.record.intended.size
