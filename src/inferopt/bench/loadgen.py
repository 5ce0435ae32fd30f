"""`inferopt load`: offer a server a known load and measure, honestly, what latency it gives.

Open loop (the default): the intended send time of every request is computed up front from a seed
(`schedule.py`); sender processes (`sender.py`) fire each request at its time whatever the server is doing,
and latency counts from the intended time. A server that stalls for 200 ms therefore shows 200 ms in its
tail instead of silently pausing the client (coordinated omission). The generator checks itself: if more
than 1% of requests left over 1 ms late the run is INVALID, because then the numbers describe the client.

Closed loop (`concurrency`): N connections, each sending when the previous answer arrives; for capacity
sweeps and cross-checks with wrk, labelled as such because it cannot see stalls.

Phases (`run_phases`): one open-loop schedule made of consecutive rates (a normal load, an overload, the
recovery after it), sent by the same senders over the same connections, so the next phase starts at its
first intended send and not after a new process has started; each phase is summarized over its own window.
"""

from __future__ import annotations

import http.client
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np

from inferopt.bench.http1 import Target, encode_post, parse_target
from inferopt.bench.inputs import (
    INFER_SUFFIX,
    bytes_input,
    distinct_inputs,
    load_inputs,
    request_body,
    v2_text_input,
)
from inferopt.bench.load_result import CLOSED_LOOP, OPEN_LOOP, LoadResult, merge_records, summarize
from inferopt.bench.schedule import ARRIVALS, Arrival, arrival_offsets, input_sequence
from inferopt.bench.sender import PROGRESS_FIELDS, WorkerPlan, WorkerRecord
from inferopt.errors import InputError

LEAD_IN_S = 0.25  # between handing out the plans and the first intended send: connections open meanwhile
MAX_SCHEDULED = 5_000_000  # the sender keeps ~130 bytes per request: about 650 MB
CLOSED_LOOP_INPUTS = 65_536
PREFLIGHT_TIMEOUT_S = 5.0
CLIENT_MISTAKES = frozenset({400, 401, 403, 404, 405, 411, 413, 415, 422})

ProgressCallback = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class LoadConfig:
    url: str
    rate: float | None = 100.0  # open loop, requests per second
    duration_s: float = 20.0  # the whole run, warm-up included
    warmup_s: float = 2.0
    arrival: Arrival = "poisson"
    concurrency: int | None = None  # closed loop when set
    inputs: Path | None = None
    zipf: float | None = None
    distinct: int | None = None
    in_order: bool = False  # request i carries input i (cycling): a replay of the file's sequence
    model: str | None = None
    items_per_request: int = 1
    seed: int = 0
    timeout_s: float = 30.0
    connections: int = 1000  # open loop: most connections held at once
    workers: int = 1

    def __post_init__(self) -> None:
        _positive("--duration", self.duration_s)
        _positive("--timeout", self.timeout_s)
        if self.warmup_s < 0:
            raise InputError(f"--warmup must be >= 0, got {self.warmup_s:g}", "pass 0 for no warm-up")
        if self.duration_s <= self.warmup_s:
            raise InputError(
                f"--duration {self.duration_s:g}s is not longer than --warmup {self.warmup_s:g}s, "
                "so nothing would be measured",
                "make --duration longer than --warmup",
            )
        if self.arrival not in ARRIVALS:
            raise InputError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}", "")
        for flag, value in (("--workers", self.workers), ("--connections", self.connections),
                            ("--items-per-request", self.items_per_request)):  # fmt: skip
            if value < 1:
                raise InputError(f"{flag} must be at least 1, got {value}", "")
        if self.zipf is not None and self.zipf <= 0:
            raise InputError(f"--zipf must be > 0, got {self.zipf:g}", "1.1 is a typical cache-study skew")
        if self.zipf is not None and self.in_order:
            raise InputError("--in-order replays the inputs file as it is; --zipf samples it", "pick one")
        self._check_mode()

    def _check_mode(self) -> None:
        if self.concurrency is not None:
            if self.concurrency < self.workers:
                raise InputError(f"--concurrency {self.concurrency} is less than --workers {self.workers}", "")
            return
        if self.rate is None or not self.rate > 0:
            raise InputError(f"--rate must be > 0 requests/s, got {self.rate}", "e.g. --rate 100")
        if self.rate * self.duration_s > MAX_SCHEDULED:
            raise InputError(
                f"--rate {self.rate:g} for {self.duration_s:g}s schedules more than {MAX_SCHEDULED:,} requests",
                "shorten --duration",
            )

    @property
    def mode(self) -> str:
        return CLOSED_LOOP if self.concurrency is not None else OPEN_LOOP

    def with_rate(self, rate: float) -> LoadConfig:
        return LoadConfig(**(asdict(self) | {"rate": rate, "concurrency": None}))


@dataclass(frozen=True)
class Phase:
    """One leg of a phased open-loop run: `rate` req/s for `duration_s`, its first `warmup_s` not measured."""

    rate: float
    duration_s: float
    warmup_s: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        label = f"phase {self.name!r}: " if self.name else ""
        if not (self.rate > 0 and self.duration_s > 0):
            raise InputError(f"{label}rate and duration must be > 0, got {self.rate:g} and {self.duration_s:g}", "")
        if not 0 <= self.warmup_s < self.duration_s:
            raise InputError(f"{label}warm-up {self.warmup_s:g}s must be >= 0 and shorter than the phase", "")


@dataclass
class PhasedRun:
    """What `run_phases` measured: a result per phase, and the raw record to summarize any other window."""

    phases: list[LoadResult]
    record: WorkerRecord
    start: float  # absolute time.monotonic() of the schedule's offset 0
    offsets_s: list[float] = field(default_factory=list)  # where each phase begins, from the start
    interrupted_at: float | None = None

    def window(self, begin_s: float, end_s: float, offered_rate: float | None = None) -> LoadResult:
        """The requests intended in [begin_s, end_s) seconds from the start, summarized as a run of their own."""
        end = self.start + end_s
        partial = None
        if self.interrupted_at is not None and self.interrupted_at < end:
            end = max(self.interrupted_at, self.start + begin_s)
            partial = f"interrupted {self.interrupted_at - self.start:.1f}s into the schedule"
        window = (self.start + begin_s, end)
        return summarize(self.record, mode=OPEN_LOOP, offered_rate=offered_rate, window=window, partial=partial)


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise InputError(f"{flag} must be > 0, got {value:g}", "")


def build_requests(config: LoadConfig, target: Target) -> list[bytes]:
    """Every distinct request, HTTP-encoded once: the senders only pick one and write it."""
    inputs = distinct_inputs(load_inputs(config.inputs), config.distinct)
    k = config.items_per_request
    v2_text = v2_text_input(target) if target.path.endswith(INFER_SUFFIX) and bytes_input(inputs) else "text"
    requests = []
    for i in range(len(inputs)):
        group = [inputs[(i * k + j) % len(inputs)] for j in range(k)]
        body = request_body(target.path, group, model=config.model, v2_text_input=v2_text)
        requests.append(encode_post(target, body))
    return requests


def preflight(target: Target, request: bytes) -> int:
    """One request before the run, so a wrong URL fails in a second with a clear message, not after a
    whole run of connection errors. Client mistakes (404, 422...) stop here; server errors do not: the run
    goes ahead and counts them."""
    body = request.split(b"\r\n\r\n", 1)[1]
    cls = http.client.HTTPSConnection if target.tls else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=PREFLIGHT_TIMEOUT_S)
    try:
        conn.request("POST", target.path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read(300).decode("utf-8", "replace").strip()
    except ConnectionRefusedError as exc:
        raise InputError(f"Cannot reach {target.url}: connection refused", "start the server or fix the URL") from exc
    except socket.gaierror as exc:
        raise InputError(f"Cannot resolve host {target.host!r}", "check the URL") from exc
    except TimeoutError as exc:
        waited = f"{PREFLIGHT_TIMEOUT_S:g}s"
        raise InputError(f"{target.url} did not answer within {waited}", "is the server stuck?") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"Cannot reach {target.url} ({exc})", "check the URL and that the server is up") from exc
    finally:
        conn.close()
    if response.status in CLIENT_MISTAKES:
        raise InputError(
            f"{target.url} answered {response.status} to a test request: {answer[:200]!r}",
            "check the URL path, the --model name and the inputs",
        )
    return response.status


def run_load(
    config: LoadConfig, on_progress: ProgressCallback | None = None, *, check_target: bool = True
) -> LoadResult:
    """One load run: schedule, send from `config.workers` processes, summarize. Ctrl-C ends it early and
    still returns what was measured, labelled partial."""
    target = parse_target(config.url)
    requests = build_requests(config, target)
    if check_target:
        preflight(target, requests[0])
    plans, total = _plans(config, target, requests)
    with _SenderPool(config.workers) as pool:
        start = pool.start(plans)
        record, interrupted_at = pool.collect(total, start, on_progress)
    measured_from, end = start + config.warmup_s, start + config.duration_s
    partial = None
    if interrupted_at is not None:
        end = max(min(end, interrupted_at), measured_from)
        partial = f"interrupted after {interrupted_at - start:.1f}s of {config.duration_s:g}s"
    result = summarize(record, mode=config.mode, offered_rate=config.rate if config.mode == OPEN_LOOP else None,
                       window=(measured_from, end), partial=partial)  # fmt: skip
    result.config = asdict(config) | {"url": target.url, "inputs": str(config.inputs or "built-in corpus")}
    result.sender_priority = ", ".join(sorted(set(pool.priorities)))
    return result


def run_phases(
    config: LoadConfig, phases: Sequence[Phase], on_progress: ProgressCallback | None = None, *,
    check_target: bool = True,
) -> PhasedRun:  # fmt: skip
    """Open loop through `phases` one after another, as a single schedule: phase k's arrivals (Poisson or
    constant at its rate, seeded with config.seed + k) follow phase k-1's end, the same sender processes send
    them all, and what one phase leaves in flight meets the next, as it would in production. `config` gives
    everything but the rate, duration and warm-up, which each phase has of its own."""
    if config.mode != OPEN_LOOP:
        raise InputError("phases are open loop", "drop --concurrency")
    if not phases:
        raise InputError("no phases to run", "give at least one")
    target = parse_target(config.url)
    requests = build_requests(config, target)
    if check_target:
        preflight(target, requests[0])
    starts = np.cumsum([0.0] + [p.duration_s for p in phases]).tolist()
    offsets = np.concatenate([
        begin + arrival_offsets(phase.rate, phase.duration_s, config.arrival, config.seed + k)
        for k, (phase, begin) in enumerate(zip(phases, starts, strict=False))
    ])  # fmt: skip
    if offsets.size > MAX_SCHEDULED:
        raise InputError(f"the phases schedule more than {MAX_SCHEDULED:,} requests", "shorten them")
    plans, total = _plans(replace(config, duration_s=starts[-1], warmup_s=0.0), target, requests, offsets)
    with _SenderPool(config.workers) as pool:
        start = pool.start(plans)
        record, interrupted_at = pool.collect(total, start, on_progress)
    run = PhasedRun([], record, start, starts[:-1], interrupted_at)
    for phase, begin in zip(phases, starts, strict=False):
        result = run.window(begin + phase.warmup_s, begin + phase.duration_s, phase.rate)
        result.config = asdict(config) | {
            "url": target.url, "inputs": str(config.inputs or "built-in corpus"), "rate": phase.rate,
            "duration_s": phase.duration_s, "warmup_s": phase.warmup_s, "phase": phase.name, "phase_start_s": begin,
        }  # fmt: skip
        result.sender_priority = ", ".join(sorted(set(pool.priorities)))
        run.phases.append(result)
    return run


def _plans(
    config: LoadConfig, target: Target, requests: list[bytes], offsets: np.ndarray | None = None
) -> tuple[list[WorkerPlan], int]:
    """Per-worker plans with times relative to the start (fixed once every worker is ready), and the number
    of scheduled requests (0 for closed loop, whose count is not known in advance). Open loop sends at
    `offsets` when given (a phased schedule), else at the config's rate."""
    w = config.workers

    def plan(inputs: np.ndarray, intended: np.ndarray | None, connections: int) -> WorkerPlan:
        return WorkerPlan(target, requests, inputs, intended, connections, start=0.0, stop=config.duration_s,
                          timeout_s=config.timeout_s)  # fmt: skip

    def sequence(count: int) -> np.ndarray:
        if config.in_order:
            return np.arange(count, dtype=np.int64) % len(requests)
        return input_sequence(count, len(requests), zipf=config.zipf, seed=config.seed)

    if config.mode == CLOSED_LOOP:
        inputs = sequence(CLOSED_LOOP_INPUTS)
        n = config.concurrency or 1
        return [plan(inputs[k::w], None, n // w + (k < n % w)) for k in range(w)], 0
    if offsets is None:
        offsets = arrival_offsets(config.rate, config.duration_s, config.arrival, config.seed)  # type: ignore[arg-type]
    inputs = sequence(offsets.size)
    # Round-robin: each process gets every w-th request, so all of them carry the same mix and rate.
    conns = math.ceil(config.connections / w)
    return [plan(inputs[k::w], offsets[k::w], conns) for k in range(w)], int(offsets.size)


class _SenderPool:
    """The sender processes and the pipes to them; progress is the sum of what each last reported."""

    def __init__(self, workers: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.inboxes: list[Connection] = []  # messages from each child
        self.outboxes: list[Connection] = []  # messages to each child
        self.counts = [tuple(0 for _ in PROGRESS_FIELDS) for _ in range(workers)]
        self.priorities: list[str] = []  # the scheduling each sender got, for the record
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")]))
        }
        for _ in range(workers):
            down_read, down_write = os.pipe()
            up_read, up_write = os.pipe()
            cmd = [sys.executable, "-m", "inferopt.bench.sender_process", str(down_read), str(up_write)]
            self.procs.append(subprocess.Popen(cmd, pass_fds=(down_read, up_write), env=env))
            os.close(down_read)
            os.close(up_write)
            self.inboxes.append(Connection(up_read, writable=False))
            self.outboxes.append(Connection(down_write, readable=False))

    def __enter__(self) -> _SenderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for box in self.outboxes + self.inboxes:
            box.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start(self, plans: list[WorkerPlan]) -> float:
        """Waits until every sender is up, then hands out the plans shifted to a common start time."""
        for k, inbox in enumerate(self.inboxes):
            try:
                ready = inbox.recv()
            except EOFError as exc:
                raise RuntimeError(f"load sender process {k} did not start (exit code {self.procs[k].poll()})") from exc
            if not (isinstance(ready, tuple) and ready[0] == "ready"):
                raise RuntimeError(f"load sender process {k} sent {ready!r} instead of ready")
            self.priorities.append(ready[1])
        start = time.monotonic() + LEAD_IN_S
        for outbox, plan in zip(self.outboxes, plans, strict=True):
            intended = None if plan.intended is None else plan.intended + start
            outbox.send(replace(plan, intended=intended, start=start, stop=start + plan.stop))
        return start

    def collect(
        self, total: int, start: float, on_progress: ProgressCallback | None
    ) -> tuple[WorkerRecord, float | None]:
        """Records from every sender. On Ctrl-C the senders are told to stop and what they measured is kept;
        a second Ctrl-C gives up on them."""
        records: dict[int, WorkerRecord] = {}
        interrupted_at: float | None = None
        while len(records) < len(self.inboxes):
            try:
                self._receive(records, timeout=0.25)
                if on_progress is not None:
                    on_progress(self.snapshot(total, start))
            except KeyboardInterrupt:
                if interrupted_at is not None:
                    raise
                interrupted_at = time.monotonic()
                for k, outbox in enumerate(self.outboxes):
                    if k not in records:
                        outbox.send("stop")
        return merge_records([records[k] for k in sorted(records)]), interrupted_at

    def _receive(self, records: dict[int, WorkerRecord], timeout: float) -> None:
        waiting = {id(self.inboxes[k]): k for k in range(len(self.inboxes)) if k not in records}
        for ready in wait([self.inboxes[k] for k in waiting.values()], timeout=timeout):
            k = waiting[id(ready)]
            while k not in records and self.inboxes[k].poll():
                try:
                    kind, payload = self.inboxes[k].recv()
                except EOFError as exc:
                    code = self.procs[k].wait()
                    raise RuntimeError(f"load sender process {k} died (exit code {code})") from exc
                if kind == "error":
                    raise RuntimeError(f"load sender process {k} failed:\n{payload}")
                if kind == "progress":
                    self.counts[k] = payload
                else:
                    records[k] = payload

    def snapshot(self, total: int, start: float) -> dict[str, float]:
        sums = np.sum(np.asarray(self.counts, dtype=np.float64), axis=0)
        return {"elapsed": time.monotonic() - start, "scheduled": float(total)} | dict(
            zip(PROGRESS_FIELDS, sums.tolist(), strict=True)
        )


def _package_root() -> str:
    """The folder holding the inferopt package, so the sender process imports this very copy of it."""
    import inferopt

    return str(Path(inferopt.__file__).resolve().parent.parent)
