"""The inference service, for any task: raw inputs in, results and their stage timings out, per item.

An input that names an entity first gets that entity's stored features (through the feature cache: memory,
Redis, then the store; the groups in parallel), so that what is cached below is keyed by the features
themselves, never by an id whose data may have changed. Then each input goes, in order, to the in-process LRU,
to an identical input already in flight (single-flight), to the Redis tier, and only then is preprocessed by
the task (in a thread, off the event loop) and queued in the batcher of its model path. So a list request sends
only its misses to the runtime, and a burst of one popular input computes it once. Results fill the cache tiers
on their way back, even for a request whose deadline has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from inferopt.runtime.base import Arrays
from inferopt.serve.batcher import HIGH, Batcher, BatcherClosed, DeadlineExceeded, ItemResult, QueuedItem
from inferopt.serve.cache import CachedResult, CacheKeys, Flight, MemoryLRU, SingleFlight
from inferopt.serve.cache_redis import RedisTier
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.model import ServingModel
from inferopt.serve.preprocess_stage import PreprocessStage
from inferopt.serve.trace_context import REQUEST_SPAN
from inferopt.sources.features import EntityRef, FeatureRecord, FeaturesUnavailable
from inferopt.tasks.base import DEFAULT_PATH, Item

_Outcome = tuple[CachedResult, ItemResult] | BaseException  # a finished item, as the loop receives it


@dataclass(frozen=True)
class Computed:
    """One input's result and where its time went (0 for the stages a cache hit skipped)."""

    result: CachedResult
    source: str  # memory | redis | model
    lookup_s: float = 0.0  # Redis round trip
    preprocess_s: float = 0.0
    queue_s: float = 0.0
    inference_s: float = 0.0
    features_s: float = 0.0  # reading stored features (the whole request's, in parallel)
    features: dict[str, Any] | None = None  # each feature group's age and source, for the response's debug
    enqueued: float | None = None  # when the model's item entered the queue (time.monotonic), for its spans


class FeatureReader(Protocol):
    """What the service needs of the feature cache (serve/feature_cache.py)."""

    async def read(self, ref: EntityRef) -> FeatureRecord: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class _Miss:
    key: str | None
    flight: Flight
    raw: Any


class InferenceService:
    def __init__(
        self,
        model: ServingModel,
        batchers: dict[str, Batcher],
        metrics: ServeMetrics,
        *,
        keys: CacheKeys | None,
        memory: MemoryLRU | None,
        redis: RedisTier | None = None,
        features: FeatureReader | None = None,
        max_queue_s: float = math.inf,
    ) -> None:
        """`batchers`: one per model path, the default path's among them; `features`: reads the stored features
        of inputs that name an entity (None: the server was started without a feature store)."""
        self.model = model
        self.batchers = batchers
        self.batcher = batchers[DEFAULT_PATH]
        self.metrics = metrics
        self.features = features
        self.max_queue_s = max_queue_s  # --max-queue-ms: the longest predicted queue wait a request is admitted to
        self._reads_features = model.task.stored_features() is not None  # else inputs never name entities
        self.preprocessing: PreprocessStage[Item] = PreprocessStage(model.task.preprocess)
        self.keys = keys  # None: caching and single-flight are off
        self.memory = memory
        self.redis = redis
        self.flights = SingleFlight()

    async def infer(self, inputs: list[Any], deadline: float, lane: str = HIGH) -> list[Computed]:
        """Results of `inputs` (the task's raw inputs) in order; `lane`: the request's priority. Raises
        DeadlineExceeded, QueueFull (WaitTooLong), EntityNotFound, FeaturesUnavailable, or what an item failed
        with."""
        if not self._reads_features:
            return await self._infer(inputs, deadline, lane)
        started = time.perf_counter()
        inputs, debug = await self._with_features(inputs, deadline)
        features_s = time.perf_counter() - started
        results = await self._infer(inputs, deadline, lane)
        if not any(info is not None for info in debug):
            return results
        return [
            replace(result, features=info, features_s=features_s) if info is not None else result
            for result, info in zip(results, debug, strict=True)
        ]

    async def _with_features(self, inputs: list[Any], deadline: float) -> tuple[list[Any], list[dict[str, Any] | None]]:
        """The inputs with their entities' stored features filled in (each entity read once), and each one's
        feature debug (None for an input that carried its own)."""
        task = self.model.task
        refs = [task.entity(raw) for raw in inputs]
        wanted = list(dict.fromkeys(ref for ref in refs if ref is not None))
        if not wanted:
            return inputs, [None] * len(inputs)
        if self.features is None:
            raise FeaturesUnavailable("postgres", "this server was started without --features postgresql://...")
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise DeadlineExceeded("deadline passed")
        read = self.features.read
        try:
            # asyncio.timeout, not wait_for, and no gather for one entity: each would wrap the read in a task.
            async with asyncio.timeout(timeout):
                records = [await read(wanted[0])] if len(wanted) == 1 else await asyncio.gather(*map(read, wanted))
        except TimeoutError:
            raise DeadlineExceeded("deadline passed while reading stored features") from None
        by_ref = dict(zip(wanted, records, strict=True))
        filled = [
            raw if ref is None else task.with_features(raw, by_ref[ref]) for raw, ref in zip(inputs, refs, strict=True)
        ]
        return filled, [None if ref is None else by_ref[ref].debug() for ref in refs]

    async def _infer(self, inputs: list[Any], deadline: float, lane: str) -> list[Computed]:
        slots: list[Computed | asyncio.Future[object]] = []
        misses: list[_Miss] = []
        memory_hits = 0
        for raw in inputs:
            key = self.keys(raw) if self.keys is not None else None
            hit = self.memory.get(key) if self.memory is not None and key is not None else None
            if hit is not None:
                memory_hits += 1
                slots.append(Computed(hit, "memory"))
                continue
            flight = self.flights.join(key, deadline) if key is not None else None
            if flight is None:
                flight = self.flights.lead(key, deadline)
                misses.append(_Miss(key, flight, raw))
            slots.append(flight.future)
        if self.memory is not None:
            self.metrics.cache("memory", "hit", memory_hits)
            self.metrics.cache("memory", "miss", len(inputs) - memory_hits)
        if misses:
            await self._resolve(misses, lane)
        return await _gather(slots, deadline)

    async def _resolve(self, misses: list[_Miss], lane: str) -> None:
        """Settle each miss's flight from Redis, or queue it in the batcher. Never leaves a flight hanging."""
        try:
            misses, lookup_s = await self._from_redis(misses)
            if not misses:
                return
            if len(self.batchers) == 1:  # every item goes to the one batcher: refuse now, not after preprocessing
                deadline = min(m.flight.deadline for m in misses)
                self.batcher.admit(len(misses), deadline, lane=lane, max_wait_s=self.max_queue_s)
            started = time.perf_counter()
            raws = [m.raw for m in misses]
            task = self.model.task
            items = task.preprocess(raws) if task.inline_preprocess else await self.preprocessing.run(raws)
            preprocess_s = time.perf_counter() - started
            # Each flight's deadline, already pushed out by any request that joined it meanwhile: queued with
            # the first requester's alone, an item could expire before the later requesters' reached it.
            queued = self._submit(items, [m.flight.deadline for m in misses], lane)
        except BaseException as exc:
            # Followers must not inherit this request's cancellation (a CancelledError is not theirs to raise).
            shared = exc if isinstance(exc, Exception) else BatcherClosed("the request computing this input stopped")
            for miss in misses:
                self.flights.land(miss.key, miss.flight, error=shared)
            raise
        loop = asyncio.get_running_loop()
        postprocess = self.model.task.postprocess
        for miss, item in zip(misses, queued, strict=True):
            miss.flight.item = item  # later joins extend the queued item's deadline through the flight
            landed = partial(self._landed, miss, lookup_s, preprocess_s, item.enqueued)
            item.future.add_done_callback(partial(_finish_in_worker, loop, landed, item.item, postprocess))

    def _submit(self, items: list[Item], deadlines: list[float], lane: str) -> list[QueuedItem]:
        """Queue each item in its model path's batcher (the default one for a path this artifact lacks, and the
        item then says so), in input order. One path's full queue fails the request; items already queued on
        another path still run, and only fill the caches."""
        paths = [item.path if item.path in self.batchers else DEFAULT_PATH for item in items]
        trace = REQUEST_SPAN.get()
        if len(self.batchers) == 1 or all(path == DEFAULT_PATH for path in paths):
            items = [item if item.path == DEFAULT_PATH else replace(item, path=DEFAULT_PATH) for item in items]
            return self.batcher.submit(items, deadlines, lane=lane, max_wait_s=self.max_queue_s, trace=trace)
        queued: list[QueuedItem | None] = [None] * len(items)
        for path in dict.fromkeys(paths):
            rows = [i for i, p in enumerate(paths) if p == path]
            batch = [items[i] if items[i].path == path else replace(items[i], path=path) for i in rows]
            submitted = self.batchers[path].submit(
                batch, [deadlines[i] for i in rows], lane=lane, max_wait_s=self.max_queue_s, trace=trace
            )
            for i, q in zip(rows, submitted, strict=True):
                queued[i] = q
        return queued  # type: ignore[return-value]

    async def _from_redis(self, misses: list[_Miss]) -> tuple[list[_Miss], float]:
        """The misses Redis did not have either, and the time the look-up took (a miss pays it too)."""
        if self.redis is None:
            return misses, 0.0
        started = time.perf_counter()
        found = await self.redis.get_many([m.key for m in misses if m.key is not None])
        lookup_s = time.perf_counter() - started
        rest = []
        for miss in misses:
            entry = found.get(miss.key) if miss.key is not None else None
            if entry is None:
                rest.append(miss)
                continue
            if self.memory is not None and miss.key is not None:
                self.memory.put(miss.key, entry)
            self.flights.land(miss.key, miss.flight, Computed(entry, "redis", lookup_s=lookup_s))
        return rest, lookup_s

    def close(self) -> None:
        self.preprocessing.close()

    def close_batchers(self, timeout: float) -> None:
        """Finish what every model path has queued, within `timeout` seconds in all."""
        until = time.monotonic() + timeout
        for batcher in self.batchers.values():
            batcher.close(max(0.0, until - time.monotonic()))

    def _landed(self, miss: _Miss, lookup_s: float, preprocess_s: float, enqueued: float, outcome: _Outcome) -> None:
        """On the event loop, when the batcher finished the item: fill the caches, release the waiters."""
        if isinstance(outcome, BaseException):
            self.flights.land(miss.key, miss.flight, error=outcome)
            return
        entry, result = outcome
        if miss.key is not None:
            if self.memory is not None:
                self.memory.put(miss.key, entry)
            if self.redis is not None:
                self.redis.put(miss.key, entry)
        computed = Computed(
            entry, "model", lookup_s, preprocess_s, result.queue_s, result.inference_s, enqueued=enqueued
        )
        self.flights.land(miss.key, miss.flight, computed)


def _finish_in_worker(
    loop: asyncio.AbstractEventLoop,
    landed: Callable[[_Outcome], None],
    item: Item,
    postprocess: Callable[[Arrays, Item], Any],
    future: Future[ItemResult],
) -> None:
    """Runs in the batcher thread that finished the item: make its cache entry there (postprocessing and the
    JSON encoding stay off the event loop), then hand it to the loop."""
    outcome: _Outcome
    if future.cancelled():
        outcome = DeadlineExceeded("cancelled")
    elif (error := future.exception()) is not None:
        outcome = error
    else:
        result = future.result()
        try:
            entry = CachedResult.make(result.outputs, item.cost, item.truncated, lambda out: postprocess(out, item))
            outcome = (entry, result)
        except BaseException as exc:  # the waiters must hear of it: an unlanded flight would hang its input
            outcome = exc
    # RuntimeError: the loop closed during shutdown, and nobody is left to answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(landed, outcome)


async def _gather(slots: list[Computed | asyncio.Future[object]], deadline: float) -> list[Computed]:
    pending = {slot for slot in slots if isinstance(slot, asyncio.Future) and not slot.done()}
    if pending:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise DeadlineExceeded("deadline passed")
        # asyncio.wait (not wait_for) leaves the futures alone on timeout: other waiters still need them.
        _, late = await asyncio.wait(pending, timeout=timeout)
        if late:
            raise DeadlineExceeded("deadline passed")
    return [slot if isinstance(slot, Computed) else slot.result() for slot in slots]  # type: ignore[misc]
