"""The soak in miniature (benchmarks/soak.py runs 30 minutes): `inferopt serve` on the real MiniLM artifact, as
its own process, under 2 minutes of open-loop traffic (single texts with cache hits and misses, list requests,
bad requests), sampled every 10 s. Looser bounds than the soak's, since 2 minutes leave little to settle:
RSS growth <= 10%, at most 2 more descriptors and threads, no 5xx, nothing unanswered. No latency bound: speed
is for benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from inferopt.bench.loadgen import LoadConfig, Phase, run_phases
from inferopt.bench.soak import Sampler, SideTraffic, SoakTargets, judge
from inferopt.serve.testing import free_port

pytestmark = pytest.mark.slow
WINDOW_S, WINDOWS, RATE = 10.0, 12, 40.0
LOOSE = SoakTargets(settle_s=30.0, rss_growth=0.10, fd_growth=2, thread_growth=2, p99_flat=float("inf"))
TEXTS = [f"a sentence about topic {i}, with a few more words to embed" for i in range(400)]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's figures from /proc")
def test_two_minutes_of_mixed_traffic_leak_nothing(minilm_artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    command = [sys.executable, "-m", "inferopt", "serve", str(minilm_artifact), "--port", str(port),
               "--cache", "memory", "--no-access-log"]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health/ready", server)
        sampler = Sampler(server.pid, WINDOW_S)
        side = SideTraffic("127.0.0.1", port, TEXTS, rate=4.0)
        sampler.start()
        side.start()
        try:
            config = LoadConfig(f"http://127.0.0.1:{port}", inputs=inputs, zipf=1.1, timeout_s=30.0)
            run = run_phases(config, [Phase(RATE, WINDOW_S, name=f"window {i}") for i in range(WINDOWS)])
        finally:
            side.stop()
            samples = sampler.stop()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
    p99s = [(run.offsets_s[i] + WINDOW_S, r.latency_ms.get("p99")) for i, r in enumerate(run.phases)]
    verdict = judge(samples, p99s, LOOSE)
    assert verdict.checks["rss"] and verdict.checks["fds"] and verdict.checks["threads"], verdict.to_dict()
    sent = sum(r.measured for r in run.phases)
    assert sent > 0.9 * RATE * WINDOW_S * WINDOWS and all(not r.errors for r in run.phases), [
        r.errors for r in run.phases
    ]
    assert side.failures == 0 and set(side.statuses["list"]) == {200}
    assert set(side.statuses["bad"]) <= {400, 422} and sum(side.statuses["bad"].values()) > 100
    # Drained and stopped on SIGTERM (uvicorn re-raises the signal once it has shut down), with no traceback.
    assert server.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited before it was ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after 120 s")
