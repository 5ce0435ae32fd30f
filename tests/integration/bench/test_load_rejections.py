"""429s as refusals with latencies of their own: counted, timed from the intended send, Retry-After noted.

Against a server of known behaviour (load_servers.py) on a thread of this process, over loopback; the load
generator sends from its own process, as it always does. Rates are low (the machine has 2 cores).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from load_servers import Behaviour, Respond, TestServer
from rich.console import Console

from inferopt.bench.load_console import print_load_result
from inferopt.bench.loadgen import LoadConfig, Phase, run_load, run_phases
from inferopt.bench.schedule import arrival_offsets

REFUSE_DELAY_S = 0.02  # the server refuses late, so the refusals' latency is told apart from the 200s'
BODY = b'{"object":"list","data":[]}'


class Refuser(Behaviour):
    """Request k (1-based, the preflight is 1) gets 200 at once when k % 3 == 1; else 429 after
    REFUSE_DELAY_S, with Retry-After when k % 3 == 2. `refuse_from` > 0: only requests after it are refused."""

    def __init__(self, refuse_from: int = 0) -> None:
        super().__init__()
        self.refuse_from = refuse_from
        self.answered = {"200": 0, "429 retry-after": 0, "429 bare": 0}

    def handle(self, loop: asyncio.AbstractEventLoop, body: bytes, respond: Respond) -> None:
        self.n += 1
        if (self.refuse_from and self.n <= self.refuse_from) or self.n % 3 == 1:
            self._answer(respond, "200", 200, {})
        elif self.n % 3 == 2:
            loop.call_later(REFUSE_DELAY_S, self._answer, respond, "429 retry-after", 429, {"Retry-After": "1"})
        else:
            loop.call_later(REFUSE_DELAY_S, self._answer, respond, "429 bare", 429, {})

    def _answer(self, respond: Respond, kind: str, status: int, headers: dict[str, str]) -> None:
        self.answered[kind] += 1
        respond(status, BODY, headers)


def test_429s_are_counted_timed_and_their_retry_after_noted(
    serve: Callable[[Behaviour], TestServer], texts_file: str
) -> None:
    refuser = Refuser()
    server = serve(refuser)
    result = run_load(LoadConfig(server.url, rate=150, duration_s=2.5, warmup_s=0.0, inputs=Path(texts_file)))
    answered = refuser.answered
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


def test_phases_run_back_to_back_and_are_summarized_each_on_its_own(
    serve: Callable[[Behaviour], TestServer], texts_file: str
) -> None:
    """Two phases at their own rates; from the first refusal on, the server refuses two requests in three."""
    phases = [Phase(100, 1.5, warmup_s=0.5, name="normal"), Phase(250, 1.5, name="overload")]
    first = arrival_offsets(100, 1.5, "poisson", 0)
    server = serve(Refuser(refuse_from=1 + first.size))
    run = run_phases(LoadConfig(server.url, inputs=Path(texts_file)), phases)
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
