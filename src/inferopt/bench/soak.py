"""A server's health over a long stretch of traffic: its resident memory, open file descriptors, threads and
p99, sampled window by window, and judged against the soak targets (benchmarks/soak.py runs 30 minutes; the
suite's leak check 2).

The process figures come from /proc (Linux): what the kernel holds for the server's process, not what Python
thinks it allocated. The p99 of each window comes from the open-loop generator's own record (latency from the
intended send time), so a slow window is never hidden by a client that waited.

Side traffic runs beside the timed load and is not in its p99: list requests (several inputs at once) and
bad requests (malformed JSON, wrong fields, an unknown model), so the paths that allocate differently are
exercised all along; each answer's status is counted.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inferopt.errors import InputError


@dataclass(frozen=True)
class ProcessSample:
    at_s: float  # seconds since the soak began
    rss_mb: float
    fds: int
    threads: int


def sample_process(pid: int, at_s: float) -> ProcessSample:
    """The process's resident set, open descriptors and threads, read from /proc."""
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        raise InputError(f"process {pid} is not running (or this is not Linux: /proc/{pid} is missing)", "")
    status = dict(
        line.split(":", 1) for line in (proc / "status").read_text(encoding="ascii").splitlines() if ":" in line
    )
    rss_kb = int(status["VmRSS"].split()[0])
    return ProcessSample(at_s, rss_kb / 1024.0, len(os.listdir(proc / "fd")), int(status["Threads"]))


class Sampler(threading.Thread):
    """Samples `pid` every `every_s` seconds (and once at the start) until `stop()`."""

    def __init__(self, pid: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[ProcessSample] = []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while True:
            self.samples.append(sample_process(self.pid, time.monotonic() - self._t0))
            if self._halt.wait(self.every_s):
                return

    def stop(self) -> list[ProcessSample]:
        self._halt.set()
        self.join(10)
        self.samples.append(sample_process(self.pid, time.monotonic() - self._t0))
        return self.samples


BAD_BODIES = (
    b'{"input": ',  # malformed JSON
    b'{"input": ""}',  # an empty text
    b'{"input": [1, 2]}',  # not strings
    b'{"input": "x", "encoding_format": "hex"}',
    b"\xff\xfe not utf-8",
)


class SideTraffic(threading.Thread):
    """List requests and bad requests at `rate` per second in all (a list, then a bad one, in turn) to the
    server's /v1/embeddings, over one keep-alive connection; statuses counted by kind."""

    def __init__(self, host: str, port: int, texts: list[str], rate: float, list_size: int = 8) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.texts, self.rate, self.list_size = host, port, texts, rate, list_size
        self.statuses: dict[str, Counter[int]] = {"list": Counter(), "bad": Counter()}
        self.failures = 0  # connection errors and timeouts: requests that got no answer
        self._halt = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        bodies = itertools.cycle(BAD_BODIES)
        for n in itertools.count():
            if self._halt.wait(1.0 / self.rate):
                break
            kind = "bad" if n % 2 else "list"
            if kind == "list":
                start = (n * self.list_size) % max(1, len(self.texts) - self.list_size)
                body = json.dumps({"input": self.texts[start : start + self.list_size]}).encode()
            else:
                body = next(bodies)
            try:
                connection.request("POST", "/v1/embeddings", body, {"content-type": "application/json"})
                response = connection.getresponse()
                response.read()
                self.statuses[kind][response.status] += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


@dataclass(frozen=True)
class SoakTargets:
    """The issue's targets for 30 minutes; the suite's 2-minute leak check passes looser ones."""

    settle_s: float = 300.0  # only samples after this count
    rss_growth: float = 0.05  # most relative RSS growth, the last third's highest over the first third's
    fd_growth: int = 0  # most added open descriptors, likewise
    thread_growth: int = 0  # most added threads, likewise
    p99_flat: float = 0.20  # the last third's median window p99 within this of the first third's


@dataclass
class SoakVerdict:
    rss_growth: float
    fd_growth: int
    thread_growth: int
    p99_change: float | None  # (the last third's median window p99) / (the first third's) - 1, after settling
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def judge(samples: list[ProcessSample], p99s: list[tuple[float, float | None]], targets: SoakTargets) -> SoakVerdict:
    """`p99s`: (window end in seconds, p99 ms) per window. After settling, the samples are cut in thirds and
    the last third is compared with the first: the highest RSS, descriptor and thread counts of each (open
    connections and lazily started pool threads come and go with the load; a leak only grows), and the
    median window p99 of each."""
    settled = [s for s in samples if s.at_s >= targets.settle_s]
    if len(settled) < 3:
        raise InputError(
            f"the soak has {len(settled)} samples after its {targets.settle_s:g} s settling time; it needs 3",
            "run it longer, or sample more often",
        )
    first, last = _thirds(settled)
    rss_growth = max(s.rss_mb for s in last) / max(s.rss_mb for s in first) - 1.0
    fd_growth = max(s.fds for s in last) - max(s.fds for s in first)
    thread_growth = max(s.threads for s in last) - max(s.threads for s in first)
    windows = [p for t, p in p99s if t > targets.settle_s and p is not None]
    change = None
    if len(windows) >= 3:
        early, late = _thirds(windows)
        change = statistics.median(late) / statistics.median(early) - 1.0
    checks = {
        "rss": rss_growth <= targets.rss_growth,
        "fds": fd_growth <= targets.fd_growth,
        "threads": thread_growth <= targets.thread_growth,
        "p99": change is not None and abs(change) <= targets.p99_flat,
    }
    return SoakVerdict(rss_growth, fd_growth, thread_growth, change, checks)


def _thirds(values: list[Any]) -> tuple[list[Any], list[Any]]:
    third = max(1, len(values) // 3)
    return values[:third], values[-third:]


def soak_chart(samples: list[ProcessSample], p99s: list[tuple[float, float | None]], title: str) -> bytes:
    """The four figures over time, one panel each."""
    import matplotlib

    from inferopt.report.plots import png_bytes

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 8.5), dpi=110, sharex=True)
    minutes = [s.at_s / 60 for s in samples]
    series = (
        ("RSS (MB)", [s.rss_mb for s in samples]),
        ("open file descriptors", [s.fds for s in samples]),
        ("threads", [s.threads for s in samples]),
    )
    for ax, (label, values) in zip(axes, series, strict=False):
        ax.plot(minutes, values, "o-", markersize=3)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    points = [(t / 60, p) for t, p in p99s if p is not None]
    axes[3].plot([t for t, _ in points], [p for _, p in points], "s-", markersize=3, color="tab:red")
    axes[3].set_ylabel("p99 per window (ms)", fontsize=8)
    axes[3].set_xlabel("minutes")
    axes[3].grid(alpha=0.3)
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)
