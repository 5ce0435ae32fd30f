"""The soak's verdict: a steady server passes, a leak of memory, descriptors or threads is caught however the
load makes the counts wobble, and a run too short to judge says so."""

from __future__ import annotations

import os

import pytest

from inferopt.bench.soak import ProcessSample, SoakTargets, judge, sample_process
from inferopt.errors import InputError

TARGETS = SoakTargets(settle_s=60)


def run(rss: list[float], fds: list[int], threads: list[int], p99: list[float]) -> dict:
    samples = [ProcessSample(30.0 * i, r, f, t) for i, (r, f, t) in enumerate(zip(rss, fds, threads, strict=True))]
    windows = [(30.0 * (i + 1), p) for i, p in enumerate(p99)]
    return judge(samples, windows, TARGETS).to_dict()


def test_a_steady_server_passes_though_its_connections_come_and_go() -> None:
    verdict = run([400, 410, 420, 421, 420, 422, 421, 420, 421], [17, 40, 21, 39, 22, 40, 19, 38, 20],
                  [12] * 9, [20, 22, 19, 21, 20, 22, 21, 20, 19])  # fmt: skip
    assert verdict["passed"], verdict
    assert abs(verdict["rss_growth"]) < 0.01 and verdict["fd_growth"] <= 0


def test_each_kind_of_leak_is_caught() -> None:
    rss = run([400, 410, 420, 430, 440, 450, 460, 470, 480], [17] * 9, [12] * 9, [20] * 9)
    assert not rss["checks"]["rss"] and rss["rss_growth"] == pytest.approx(
        480 / 430 - 1
    )  # the thirds of the 7 settled samples
    fds = run([400] * 9, [17, 17, 18, 19, 20, 21, 22, 23, 24], [12] * 9, [20] * 9)
    assert not fds["checks"]["fds"] and fds["fd_growth"] == 24 - 19
    threads = run([400] * 9, [17] * 9, [12, 12, 12, 12, 13, 13, 14, 14, 15], [20] * 9)
    assert not threads["checks"]["threads"]
    slower = run([400] * 9, [17] * 9, [12] * 9, [20, 20, 20, 22, 24, 26, 28, 30, 32])
    assert not slower["checks"]["p99"] and slower["p99_change"] > 0.2


def test_too_short_a_run_is_refused_and_a_live_process_is_read() -> None:
    with pytest.raises(InputError, match="samples after its 60 s settling time"):
        run([400, 400], [17, 17], [12, 12], [20, 20])
    me = sample_process(os.getpid(), 0.0)
    assert me.rss_mb > 10 and me.fds >= 3 and me.threads >= 1
