"""From raw per-request timestamps to what a load run found: percentiles, rates, errors, and whether to trust it.

Only requests whose intended time falls in the measured window (after the warm-up) count. Latency is
`done - intended`: in open loop that includes any time the request spent waiting because the server (or the
generator) was behind, which is the point; in closed loop intended is the moment the previous answer came
back, so latency is just the service time and stalls stay hidden (the output says so).

A 429 is an error like any other in `errors`, and also a refusal with latencies of its own (`rejections`): an
overloaded server that sheds load should refuse at once, and say when to come back (Retry-After).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inferopt.bench.histogram import LatencyHistogram
from inferopt.bench.sender import ABANDONED, ERROR_NAMES, LATE_S, NOT_SENT, WorkerRecord

MAX_LATE_FRACTION = 0.01  # more than 1% of requests sent over 1 ms late: the generator, not the server, was slow
OPEN_LOOP, CLOSED_LOOP = "open-loop", "closed-loop"
REJECTED = 429


@dataclass
class Rejections:
    """The measured requests the server refused with 429 (they are in `LoadResult.errors` too)."""

    count: int = 0
    with_retry_after: int = 0  # of those, how many carried a Retry-After header
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # from intended send time, as for 2xx
    service_ms: dict[str, float | None] = field(default_factory=dict)  # from actual send time


@dataclass
class LoadResult:
    mode: str
    offered_rate: float | None  # open loop only
    achieved_rate: float  # successful responses per second completed inside the window
    window_s: float
    measured: int  # requests intended inside the window that got an outcome
    ok: int
    errors: dict[str, int]  # by HTTP status or failure kind ("timeout", "connection error")
    latency_ms: dict[str, float | None]  # successful requests, from intended send time
    service_ms: dict[str, float | None]  # successful requests, from actual send time
    dispatch_lag_ms: dict[str, float | None]  # generator's own lateness (open loop)
    late_fraction: float
    connections: int
    partial: str | None = None  # why the run ended early, if it did
    sender_priority: str = ""  # the scheduling the sender processes got (SCHED_FIFO 1, nice -10, ...)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    histogram: str = ""  # HdrHistogram base64 encoding of latency_ms (microsecond units)
    rejections: Rejections = field(default_factory=Rejections)  # the 429s among the measured requests

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_fraction(self) -> float:
        return self.error_count / self.measured if self.measured else 0.0

    @property
    def valid(self) -> bool:
        return self.mode == CLOSED_LOOP or self.late_fraction <= MAX_LATE_FRACTION

    @property
    def invalid_reason(self) -> str | None:
        if self.valid:
            return None
        lag = self.dispatch_lag_ms
        p99 = f"; dispatch lag p99 {lag['p99']:.1f} ms" if lag.get("p99") is not None else ""
        return (
            f"INVALID: the load generator fell behind: {self.late_fraction:.1%} of requests left more than "
            f"{LATE_S * 1000:g} ms after their intended time{p99}. Lower --rate or add --workers"
        )

    def notes(self) -> list[str]:
        """The caveats a reader must see next to the numbers."""
        notes = [r for r in (self.invalid_reason,) if r]
        if self.partial:
            notes.append(f"PARTIAL: {self.partial}")
        if self.error_count:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
            notes.append(f"ERRORS: {self.error_fraction:.1%} of requests failed ({kinds})")
        if self.mode == CLOSED_LOOP:
            notes.append("CLOSED LOOP: latency is service time only; server stalls are hidden, use --rate for SLOs")
        return notes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {"valid": self.valid, "invalid_reason": self.invalid_reason, "notes": self.notes()}
        data["error_fraction"] = self.error_fraction
        return data


def summarize(
    record: WorkerRecord,
    *,
    mode: str,
    offered_rate: float | None,
    window: tuple[float, float],
    partial: str | None = None,
) -> LoadResult:
    """`window` = (start, end) in absolute monotonic seconds; an interrupted run passes a shortened end."""
    start, end = window
    in_window = (record.intended >= start) & (record.intended < end)
    resolved = (record.status != NOT_SENT) & (record.status != ABANDONED)
    measured = in_window & resolved
    ok = measured & (record.status >= 200) & (record.status < 300)
    latency = LatencyHistogram.of(record.done[ok] - record.intended[ok])
    service = LatencyHistogram.of(record.done[ok] - record.sent[ok])
    lag = record.dispatched[measured] - record.intended[measured]
    all_ok = (record.status >= 200) & (record.status < 300)
    completed_in_window = all_ok & (record.done >= start) & (record.done < end)
    refused = measured & (record.status == REJECTED)
    window_s = max(end - start, 1e-9)
    return LoadResult(
        mode=mode,
        offered_rate=offered_rate,
        achieved_rate=float(completed_in_window.sum()) / window_s,
        window_s=window_s,
        measured=int(measured.sum()),
        ok=int(ok.sum()),
        errors=_errors_by_kind(record.status[measured & ~ok]),
        latency_ms=latency.summary(),
        service_ms=service.summary(),
        dispatch_lag_ms=LatencyHistogram.of(np.maximum(lag, 0.0)).summary() if mode == OPEN_LOOP else {},
        late_fraction=float((lag > LATE_S).mean()) if mode == OPEN_LOOP and lag.size else 0.0,
        connections=record.connections_opened,
        rejections=Rejections(
            count=int(refused.sum()),
            with_retry_after=int((refused & record.retry_after_mask()).sum()),
            latency_ms=LatencyHistogram.of(record.done[refused] - record.intended[refused]).summary(),
            service_ms=LatencyHistogram.of(record.done[refused] - record.sent[refused]).summary(),
        ),
        partial=partial,
        histogram=latency.encode(),
    )


def _errors_by_kind(statuses: np.ndarray) -> dict[str, int]:
    codes, counts = np.unique(statuses, return_counts=True)
    return {ERROR_NAMES.get(int(c), str(int(c))): int(n) for c, n in zip(codes, counts, strict=True)}


def merge_records(records: list[WorkerRecord]) -> WorkerRecord:
    """One record for the whole run, in intended-time order, from the records of several sender processes."""
    if len(records) == 1:
        return records[0]
    intended = np.concatenate([r.intended for r in records])
    order = np.argsort(intended, kind="stable")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in records])[order]

    def cat_masks() -> np.ndarray:
        return np.concatenate([r.retry_after_mask() for r in records])[order]

    return WorkerRecord(
        intended=intended[order],
        dispatched=cat("dispatched"),
        sent=cat("sent"),
        done=cat("done"),
        status=cat("status"),
        connections_opened=sum(r.connections_opened for r in records),
        connect_failures=sum(r.connect_failures for r in records),
        retry_after=None if all(r.retry_after is None for r in records) else cat_masks(),
    )
