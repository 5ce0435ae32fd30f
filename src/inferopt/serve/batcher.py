"""The micro-batcher: items from all requests share one queue and N runtime workers (threads) drain it.

Dispatch policy, per worker that is free:
- if no other worker is running, it takes what is queued at once: an idle server adds no latency;
- otherwise it takes a batch as soon as one is full (`max_batch` items or `max_tokens` queued cost), or
  when the oldest item has waited `max_wait_s`: while the runtime is busy, a short wait buys bigger batches.

Which items make up the batch is `batching.pick_batch`: around the oldest, the closest in cost, of its group,
within the padding limit. The task collates the batch and splits the outputs back into items (`BatchCodec`);
workers are threads because onnxruntime releases the GIL.

Admission is by predicted wait, not only by queue length: a request whose items would wait longer than
its deadline allows (or than `max_wait_s`, serve's --max-queue-ms) is refused at once (WaitTooLong), so the
ones accepted still meet their deadlines. The wait is the items queued ahead of it over the workers'
measured service rate (items per second of runtime, times the workers): a capacity, not the recent
throughput, so an idle server that has seen little traffic predicts no wait.

Two lanes: items of a high-priority request (interactive traffic) are batched before any low-priority one
(bulk: jobs), and a high request's predicted wait counts only the high items ahead of it. A batch holds
items of one lane. Low items wait while high ones keep coming; that is the point of the lane.

Knows nothing of HTTP, asyncio or which task it serves: callers get `concurrent.futures.Future`s. An item
whose deadline passes while it waits is dropped before it reaches the runtime; a batch that fails is
retried item by item, so a failing input fails alone.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from inferopt.batching import BatchPolicy, pick_batch
from inferopt.runtime.base import Arrays, Backend
from inferopt.tasks.base import Item

__all__ = [
    "HIGH",
    "LANES",
    "LOW",
    "BatchCodec",
    "BatchPolicy",
    "Batcher",
    "BatcherClosed",
    "DeadlineExceeded",
    "ItemResult",
    "QueueFull",
    "WaitTooLong",
]

log = logging.getLogger("inferopt.serve")

BatchObserver = Callable[[int, int, float], None]  # (items, padded cost, seconds in the runtime)
WaitObserver = Callable[[str, list[float]], None]  # (lane, each item's queue wait in seconds), per batch
# (the batch's items, when it started, when it finished), on the batcher's clock: the tracer's batch span
TraceObserver = Callable[[Sequence["QueuedItem"], float, float], None]
OutputObserver = Callable[[Sequence[Item], Arrays], None]  # a batch's items and its outputs (drift windows)
DRAIN_WINDOW_S = 5.0  # completions older than this no longer count towards the drain rate
HIGH, LOW = "high", "low"
LANES = (HIGH, LOW)


class QueueFull(Exception):
    def __init__(self, depth: int, retry_after_s: int) -> None:
        super().__init__(f"queue full ({depth} items); retry after {retry_after_s} s")
        self.depth = depth
        self.retry_after_s = retry_after_s


class WaitTooLong(QueueFull):
    """The request's items would wait in the queue longer than its deadline (or --max-queue-ms) allows."""

    def __init__(self, depth: int, retry_after_s: int, expected_s: float, limit_s: float) -> None:
        super().__init__(depth, retry_after_s)
        self.expected_s = expected_s
        self.limit_s = limit_s


class DeadlineExceeded(Exception):
    """The item's deadline passed while it waited in the queue; it never reached the runtime."""


class BatcherClosed(Exception):
    """The batcher is draining for shutdown and takes no new work."""


class BatchCodec(Protocol):
    """What the batcher needs of a task: items -> model inputs, model outputs -> each item's."""

    def collate(self, items: Sequence[Item]) -> Arrays: ...

    def split(self, outputs: Arrays, items: Sequence[Item]) -> list[Arrays]: ...


@dataclass(frozen=True)
class ItemResult:
    outputs: Arrays  # this item's
    queue_s: float  # submitted -> its batch started
    inference_s: float  # its batch started -> result ready (collate and the runtime call)


class QueuedItem:
    """One input in the queue. `extend_deadline` lets a second waiter on the same input keep it alive."""

    __slots__ = ("cost", "deadline", "enqueued", "future", "group", "item", "lane", "trace")

    def __init__(self, item: Item, deadline: float, enqueued: float, lane: str = HIGH, trace: object = None) -> None:
        self.item = item
        self.trace = trace  # the requesting span's context, when tracing is on: its batch span links to it
        self.cost = item.cost
        self.group = item.group
        self.deadline = deadline
        self.enqueued = enqueued
        self.lane = lane
        self.future: Future[ItemResult] = Future()

    def extend_deadline(self, deadline: float) -> None:
        # A plain float store is atomic under the GIL; the worker reads it under the batcher's lock.
        self.deadline = max(self.deadline, deadline)


class Batcher:
    def __init__(
        self,
        backends: Sequence[Backend],
        policy: BatchPolicy,
        codec: BatchCodec,
        *,
        on_batch: BatchObserver | None = None,
        on_wait: WaitObserver | None = None,
        on_traced: TraceObserver | None = None,
        on_outputs: OutputObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        nice: int = 0,
    ) -> None:
        """`nice`: how many steps of CPU priority the worker threads run below the rest of the process."""
        if not backends:
            raise ValueError("Batcher needs at least one backend")
        self.backends = list(backends)
        self.policy = policy
        self.codec = codec
        self.on_batch = on_batch
        self.on_wait = on_wait
        self.on_traced = on_traced
        self.on_outputs = on_outputs
        self.nice = nice
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[QueuedItem] = []
        self._queued_cost = 0
        self._high = 0  # high-lane items in the queue
        self._service = _Window()  # finished batches: (finished at, items, runtime seconds)
        self._running: dict[int, float] = {}  # busy worker thread -> when its current batch started
        self._closed = False
        self._completions = _Window()  # batches taken from the queue: (taken at, items)
        self._threads: list[threading.Thread] = []

    # -- callers' side -------------------------------------------------------------------------------

    def start(self) -> Batcher:
        for i, backend in enumerate(self.backends):
            thread = threading.Thread(target=self._worker, args=(backend,), name=f"inferopt-batch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def submit(
        self,
        items: Sequence[Item],
        deadline: float | Sequence[float] = math.inf,
        *,
        lane: str = HIGH,
        max_wait_s: float = math.inf,
        trace: object = None,
    ) -> list[QueuedItem]:
        """Queue the items of one request, all or none: a request never half-enters a full queue. `deadline`:
        one for all, or one per item (an item other requests wait for too lives until the last of them).
        QueueFull when the queue has no room; WaitTooLong when the items would wait past the soonest deadline
        or `max_wait_s`, as the queue ahead of them and the measured service rate predict."""
        now = self._clock()
        deadlines = [deadline] * len(items) if isinstance(deadline, (int, float)) else list(deadline)
        queued = [QueuedItem(item, until, now, lane, trace) for item, until in zip(items, deadlines, strict=True)]
        with self._cond:
            self._admit_locked(now, len(queued), min(deadlines, default=math.inf), lane, max_wait_s)
            self._queue.extend(queued)
            self._queued_cost += sum(item.cost for item in queued)
            self._high += len(queued) if lane == HIGH else 0
            self._cond.notify_all()
        return queued

    def admit(self, items: int, deadline: float, *, lane: str = HIGH, max_wait_s: float = math.inf) -> None:
        """Raise what submit would for `items` more items of `lane` due by `deadline`, without queueing them:
        checked before they are preprocessed, a refusal costs little of what an overloaded server lacks."""
        with self._cond:
            self._admit_locked(self._clock(), items, deadline, lane, max_wait_s)

    def _admit_locked(self, now: float, items: int, deadline: float, lane: str, max_wait_s: float) -> None:
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        if len(self._queue) + items > self.policy.max_queue:
            raise QueueFull(len(self._queue), self._retry_after_locked(now))
        limit = min(max_wait_s, deadline - now)
        expected = self._expected_wait_locked(now, lane, items)
        if expected > limit:
            raise WaitTooLong(len(self._queue), self._retry_after_locked(now), expected, limit)

    def expected_wait(self, lane: str = HIGH, items: int = 1) -> float:
        """Seconds `items` more of `lane` would wait before their batch starts, as predicted now."""
        with self._cond:
            return self._expected_wait_locked(self._clock(), lane, items)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def drain_rate(self) -> float:
        """Items finished per second over the last few seconds (0 when nothing finished lately)."""
        with self._cond:
            return self._drain_rate_locked(self._clock())

    def close(self, timeout: float | None = None) -> None:
        """Take no new items, finish the queued ones, stop the workers: within `timeout` seconds in all, not
        per worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        until = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if until is None else max(0.0, until - time.monotonic()))

    # -- workers' side -------------------------------------------------------------------------------

    def _worker(self, backend: Backend) -> None:
        lower_priority(self.nice)
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(backend, batch)
            except Exception:  # a bug here must not kill the worker and strand the queue
                log.exception("batch worker error")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("batch worker error"))
            finally:
                with self._cond:
                    self._running.pop(threading.get_ident(), None)
                    now = self._clock()
                    self._completions.add(now, len(batch))
                    self._drain_rate_locked(now)  # prunes the old completions: a server never refused keeps none
                    self._cond.notify_all()

    def _next_batch(self) -> list[QueuedItem] | None:
        while True:
            with self._cond:
                batch, expired = self._poll_locked()
            # Futures run their callbacks inline: complete them outside the lock.
            for item in expired:
                if item.future.set_running_or_notify_cancel():
                    item.future.set_exception(DeadlineExceeded("deadline passed in the queue"))
            if not expired:
                return batch

    def _poll_locked(self) -> tuple[list[QueuedItem] | None, list[QueuedItem]]:
        while True:
            now = self._clock()
            expired = [item for item in self._queue if item.deadline <= now]
            if expired:
                self._remove_locked(expired)
                return None, expired
            if not self._queue:
                if self._closed:
                    return None, []
                self._cond.wait()
                continue
            lane = self._lane_locked()
            wait = self._wait_s(now, lane)
            if wait <= 0:
                batch = pick_batch(lane, self.policy)
                self._remove_locked(batch)
                self._running[threading.get_ident()] = now
                return batch, []
            soonest_deadline = min(item.deadline for item in self._queue) - now
            self._cond.wait(min(wait, soonest_deadline))

    def _lane_locked(self) -> list[QueuedItem]:
        """The items the next batch is taken from: the high lane's while it has any, else the low lane's."""
        if self._high == 0 or self._high == len(self._queue):
            return self._queue
        return [item for item in self._queue if item.lane == HIGH]

    def _wait_s(self, now: float, lane: list[QueuedItem]) -> float:
        """How long a free worker should still wait before taking a batch (<= 0: take it now)."""
        if not self._running or self._closed:
            return 0.0
        if len(self._queue) >= self.policy.max_batch or self._queued_cost >= self.policy.max_tokens:
            return 0.0
        return lane[0].enqueued + self.policy.max_wait_s - now

    def _remove_locked(self, items: list[QueuedItem]) -> None:
        gone = {id(item) for item in items}
        self._queue = [item for item in self._queue if id(item) not in gone]
        self._queued_cost -= sum(item.cost for item in items)
        self._high -= sum(item.lane == HIGH for item in items)

    def _run(self, backend: Backend, batch: list[QueuedItem]) -> None:
        started = self._clock()
        # A future cancelled by its caller is dropped here; after this call nobody can cancel the rest.
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batched, outputs = self._infer(backend, live)
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            log.warning("a batch of %d failed (%s); retrying its items one by one", len(live), exc)
            for item in live:
                self._run_alone(backend, item, started)
            return
        done = self._clock()
        self._served(done, len(live), done - started)
        self._finished(live, batched, outputs, started, done)

    def _run_alone(self, backend: Backend, item: QueuedItem, started: float) -> None:
        try:
            batched, outputs = self._infer(backend, [item])
        except Exception as exc:
            item.future.set_exception(exc)
            return
        self._finished([item], batched, outputs, started, self._clock())

    def _finished(
        self, live: list[QueuedItem], batched: Arrays, outputs: list[Arrays], started: float, done: float
    ) -> None:
        """Hand the results back and tell the observers. The drift window hears first: a response's items are
        in it by the time the response is sent."""
        _notify(self.on_outputs, "output", [item.item for item in live], batched)
        for item, result in zip(live, outputs, strict=True):
            item.future.set_result(ItemResult(result, started - item.enqueued, done - started))
        _notify(self.on_batch, "batch", len(live), len(live) * max(item.cost for item in live), done - started)
        _notify(self.on_wait, "wait", live[0].lane, [started - item.enqueued for item in live])
        _notify(self.on_traced, "trace", live, started, done)

    def _infer(self, backend: Backend, queued: list[QueuedItem]) -> tuple[Arrays, list[Arrays]]:
        """The batch's outputs, and each item's."""
        items = [q.item for q in queued]
        outputs = backend.run(self.codec.collate(items))
        for name, value in outputs.items():
            if value.shape[0] != len(items):
                raise RuntimeError(f"the runtime returned {value.shape[0]} rows of {name} for a batch of {len(items)}")
        return outputs, self.codec.split(outputs, items)

    def _served(self, done: float, items: int, seconds: float) -> None:
        with self._cond:
            self._service.add(done, items, seconds)
            self._service.prune(done)  # here too: an idle queue never asks

    def _drain_rate_locked(self, now: float) -> float:
        window = self._completions
        window.prune(now)
        if not window.entries:
            return 0.0
        return window.items / max(now - window.entries[0][0], 0.05)

    def _capacity_locked(self, now: float) -> float:
        """Items per second the workers finish while busy, over the last few seconds (0: nothing measured)."""
        window = self._service
        window.prune(now)
        if window.seconds <= 0:
            return 0.0
        return window.items / window.seconds * len(self.backends)

    def _expected_wait_locked(self, now: float, lane: str, items: int) -> float:
        """Until a worker is free (when all are busy: the soonest a running batch should end, at the mean
        batch time), then the queue ahead of `items` new ones of `lane` (all of it for low; the high lane's
        for high) and themselves, over the service rate; 0 when there is no rate to go by yet. Under overload
        batches are full and long, so the running one is a large part of a new item's wait."""
        ahead = self._high if lane == HIGH else len(self._queue)
        if ahead == 0 and len(self._running) < len(self.backends):
            return 0.0  # a free worker takes it at once
        capacity = self._capacity_locked(now)
        if capacity <= 0:
            return 0.0
        return self._until_a_worker_is_free_locked(now) + (ahead + items) / capacity

    def _until_a_worker_is_free_locked(self, now: float) -> float:
        if len(self._running) < len(self.backends) or not self._service.entries:
            return 0.0
        mean_batch_s = self._service.seconds / len(self._service.entries)
        return max(0.0, mean_batch_s - (now - min(self._running.values())))  # the earliest started ends first

    def _retry_after_locked(self, now: float) -> int:
        """Seconds until the queue has drained at the current rate: what a 429's Retry-After says."""
        rate = self._drain_rate_locked(now)
        if rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(len(self._queue) / rate))))


def _notify(observer: Callable[..., None] | None, what: str, *args: object) -> None:
    """Call an observer (metrics, drift, tracing), which must never fail a batch."""
    if observer is None:
        return
    try:
        observer(*args)
    except Exception:
        log.exception("%s observer failed", what)


def lower_priority(nice: int) -> None:
    """Run the calling thread `nice` steps of CPU priority below where it is. On Linux niceness is per thread,
    so the runtime workers can yield to the event loop when the cores are short: the loop admits, refuses and
    answers, and a refusal must not wait behind inference. Elsewhere setpriority would move the whole process,
    so it is left alone."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + nice)
    except OSError as exc:  # a sandbox may refuse it; the workers then run at the loop's priority
        log.warning("could not lower the runtime workers' CPU priority (%s)", exc)


class _Window:
    """Batches of the last DRAIN_WINDOW_S seconds, (at, items, seconds), with their running sums: admission
    reads a rate per request, and must not sum the window each time."""

    __slots__ = ("entries", "items", "seconds")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int, float]] = deque()
        self.items = 0
        self.seconds = 0.0

    def add(self, at: float, items: int, seconds: float = 0.0) -> None:
        self.entries.append((at, items, seconds))
        self.items += items
        self.seconds += seconds

    def prune(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] < now - DRAIN_WINDOW_S:
            _, items, seconds = entries.popleft()
            self.items -= items
            self.seconds -= seconds
        if not entries:
            self.items, self.seconds = 0, 0.0  # no float residue from the subtractions
