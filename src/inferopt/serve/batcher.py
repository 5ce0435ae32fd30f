"""The micro-batcher: items from all requests share one queue and N runtime workers (threads) drain it.

Dispatch policy, per worker that is free:
- if no other worker is running, it takes what is queued at once: an idle server adds no latency;
- otherwise it takes a batch as soon as one is full (`max_batch` items or `max_tokens` queued cost), or
  when the oldest item has waited `max_wait_s`: while the runtime is busy, a short wait buys bigger batches.

Which items make up the batch is `batching.pick_batch`: around the oldest, the closest in cost, of its group,
within the padding limit. The task collates the batch and splits the outputs back into items (`BatchCodec`);
workers are threads because onnxruntime releases the GIL.

Knows nothing of HTTP, asyncio or which task it serves: callers get `concurrent.futures.Future`s. An item
whose deadline passes while it waits is dropped before it reaches the runtime; a batch that fails is
retried item by item, so a failing input fails alone.
"""

from __future__ import annotations

import logging
import math
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

__all__ = ["BatchCodec", "BatchPolicy", "Batcher", "BatcherClosed", "DeadlineExceeded", "ItemResult", "QueueFull"]

log = logging.getLogger("inferopt.serve")

BatchObserver = Callable[[int, int, float], None]  # (items, padded cost, seconds in the runtime)
DRAIN_WINDOW_S = 5.0  # completions older than this no longer count towards the drain rate


class QueueFull(Exception):
    def __init__(self, depth: int, retry_after_s: int) -> None:
        super().__init__(f"queue full ({depth} items); retry after {retry_after_s} s")
        self.depth = depth
        self.retry_after_s = retry_after_s


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

    __slots__ = ("cost", "deadline", "enqueued", "future", "group", "item")

    def __init__(self, item: Item, deadline: float, enqueued: float) -> None:
        self.item = item
        self.cost = item.cost
        self.group = item.group
        self.deadline = deadline
        self.enqueued = enqueued
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("Batcher needs at least one backend")
        self.backends = list(backends)
        self.policy = policy
        self.codec = codec
        self.on_batch = on_batch
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[QueuedItem] = []
        self._queued_cost = 0
        self._busy = 0
        self._closed = False
        self._completions: deque[tuple[float, int]] = deque()
        self._threads: list[threading.Thread] = []

    # -- callers' side -------------------------------------------------------------------------------

    def start(self) -> Batcher:
        for i, backend in enumerate(self.backends):
            thread = threading.Thread(target=self._worker, args=(backend,), name=f"inferopt-batch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def submit(self, items: Sequence[Item], deadline: float | Sequence[float] = math.inf) -> list[QueuedItem]:
        """Queue the items of one request, all or none: a request never half-enters a full queue. `deadline`:
        one for all, or one per item (an item other requests wait for too lives until the last of them)."""
        now = self._clock()
        deadlines = [deadline] * len(items) if isinstance(deadline, (int, float)) else list(deadline)
        queued = [QueuedItem(item, until, now) for item, until in zip(items, deadlines, strict=True)]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            if len(self._queue) + len(queued) > self.policy.max_queue:
                raise QueueFull(len(self._queue), self._retry_after_locked(now))
            self._queue.extend(queued)
            self._queued_cost += sum(item.cost for item in queued)
            self._cond.notify_all()
        return queued

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
                    self._busy -= 1
                    self._completions.append((self._clock(), len(batch)))
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
            wait = self._wait_s(now)
            if wait <= 0:
                batch = pick_batch(self._queue, self.policy)
                self._remove_locked(batch)
                self._busy += 1
                return batch, []
            soonest_deadline = min(item.deadline for item in self._queue) - now
            self._cond.wait(min(wait, soonest_deadline))

    def _wait_s(self, now: float) -> float:
        """How long a free worker should still wait before taking a batch (<= 0: take it now)."""
        if self._busy == 0 or self._closed:
            return 0.0
        if len(self._queue) >= self.policy.max_batch or self._queued_cost >= self.policy.max_tokens:
            return 0.0
        return self._queue[0].enqueued + self.policy.max_wait_s - now

    def _remove_locked(self, items: list[QueuedItem]) -> None:
        gone = {id(item) for item in items}
        self._queue = [item for item in self._queue if id(item) not in gone]
        self._queued_cost -= sum(item.cost for item in items)

    def _run(self, backend: Backend, batch: list[QueuedItem]) -> None:
        started = self._clock()
        # A future cancelled by its caller is dropped here; after this call nobody can cancel the rest.
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outputs = self._infer(backend, live)
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            log.warning("a batch of %d failed (%s); retrying its items one by one", len(live), exc)
            for item in live:
                self._run_alone(backend, item, started)
            return
        done = self._clock()
        for item, result in zip(live, outputs, strict=True):
            item.future.set_result(ItemResult(result, started - item.enqueued, done - started))
        self._observe(len(live), len(live) * max(item.cost for item in live), done - started)

    def _run_alone(self, backend: Backend, item: QueuedItem, started: float) -> None:
        try:
            (result,) = self._infer(backend, [item])
        except Exception as exc:
            item.future.set_exception(exc)
            return
        done = self._clock()
        item.future.set_result(ItemResult(result, started - item.enqueued, done - started))
        self._observe(1, item.cost, done - started)

    def _infer(self, backend: Backend, queued: list[QueuedItem]) -> list[Arrays]:
        items = [q.item for q in queued]
        outputs = backend.run(self.codec.collate(items))
        for name, value in outputs.items():
            if value.shape[0] != len(items):
                raise RuntimeError(f"the runtime returned {value.shape[0]} rows of {name} for a batch of {len(items)}")
        return self.codec.split(outputs, items)

    def _observe(self, items: int, padded_tokens: int, seconds: float) -> None:
        if self.on_batch is not None:
            try:
                self.on_batch(items, padded_tokens, seconds)
            except Exception:  # metrics must never fail a batch
                log.exception("batch observer failed")

    def _drain_rate_locked(self, now: float) -> float:
        while self._completions and self._completions[0][0] < now - DRAIN_WINDOW_S:
            self._completions.popleft()
        if not self._completions:
            return 0.0
        span = max(now - self._completions[0][0], 0.05)
        return sum(n for _, n in self._completions) / span

    def _retry_after_locked(self, now: float) -> int:
        """Seconds until the queue has drained at the current rate: what a 429's Retry-After says."""
        rate = self._drain_rate_locked(now)
        if rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(len(self._queue) / rate))))
