"""The embedding service: texts in, embeddings and their stage timings out, per item.

Each input goes, in order, to the in-process LRU, to an identical input already in flight (single-flight), to
the Redis tier, and only then is tokenized (in a thread, off the event loop) and queued in the batcher. So a
list request sends only its misses to the runtime, and a burst of one popular input computes it once.
Results fill the cache tiers on their way back, even for a request whose deadline has passed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

from inferopt.serve.batcher import Batcher, BatcherClosed, DeadlineExceeded, ItemResult
from inferopt.serve.cache import CachedEmbedding, CacheKeys, Flight, MemoryLRU, SingleFlight
from inferopt.serve.cache_redis import RedisTier
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.model import ServingModel
from inferopt.serve.tokenize_stage import TokenizeStage

Tokenized = tuple[list[int], bool]  # token ids (cut at max_length), and whether the text was cut
_Outcome = tuple[CachedEmbedding, ItemResult] | BaseException  # a finished item, as the loop receives it


@dataclass(frozen=True)
class Computed:
    """One input's embedding and where its time went (0 for the stages a cache hit skipped)."""

    embedding: CachedEmbedding
    source: str  # memory | redis | model
    lookup_s: float = 0.0  # Redis round trip
    tokenize_s: float = 0.0
    queue_s: float = 0.0
    inference_s: float = 0.0


@dataclass(frozen=True)
class _Miss:
    key: str | None
    flight: Flight
    text: str


class EmbeddingService:
    def __init__(
        self,
        model: ServingModel,
        batcher: Batcher,
        metrics: ServeMetrics,
        *,
        keys: CacheKeys | None,
        memory: MemoryLRU | None,
        redis: RedisTier | None = None,
    ) -> None:
        self.model = model
        self.batcher = batcher
        self.metrics = metrics
        self.tokenizing: TokenizeStage[Tokenized] = TokenizeStage(self._tokenize)
        self.keys = keys  # None: caching and single-flight are off
        self.memory = memory
        self.redis = redis
        self.flights = SingleFlight()

    async def embed(self, texts: list[str], deadline: float) -> list[Computed]:
        """Embeddings of `texts` in order. Raises DeadlineExceeded, or what an item failed with."""
        slots: list[Computed | asyncio.Future[object]] = []
        misses: list[_Miss] = []
        memory_hits = 0
        for text in texts:
            key = self.keys(text) if self.keys is not None else None
            hit = self.memory.get(key) if self.memory is not None and key is not None else None
            if hit is not None:
                memory_hits += 1
                slots.append(Computed(hit, "memory"))
                continue
            flight = self.flights.join(key, deadline) if key is not None else None
            if flight is None:
                flight = self.flights.lead(key, deadline)
                misses.append(_Miss(key, flight, text))
            slots.append(flight.future)
        if self.memory is not None:
            self.metrics.cache("memory", "hit", memory_hits)
            self.metrics.cache("memory", "miss", len(texts) - memory_hits)
        if misses:
            await self._resolve(misses, deadline)
        return await _gather(slots, deadline)

    async def _resolve(self, misses: list[_Miss], deadline: float) -> None:
        """Settle each miss's flight from Redis, or queue it in the batcher. Never leaves a flight hanging."""
        try:
            misses, lookup_s = await self._from_redis(misses)
            if not misses:
                return
            started = time.perf_counter()
            tokenized = await self.tokenizing.run([m.text for m in misses])
            tokenize_s = time.perf_counter() - started
            items = self.batcher.submit([ids for ids, _ in tokenized], deadline)
        except BaseException as exc:
            # Followers must not inherit this request's cancellation (a CancelledError is not theirs to raise).
            shared = exc if isinstance(exc, Exception) else BatcherClosed("the request computing this input stopped")
            for miss in misses:
                self.flights.land(miss.key, miss.flight, error=shared)
            raise
        loop = asyncio.get_running_loop()
        for miss, item, (_, cut) in zip(misses, items, tokenized, strict=True):
            miss.flight.item = item
            item.extend_deadline(miss.flight.deadline)  # a follower that joined while we tokenized
            landed = partial(self._landed, miss, lookup_s, tokenize_s)
            item.future.add_done_callback(partial(_finish_in_worker, loop, landed, item.tokens, cut))

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

    def _tokenize(self, texts: list[str]) -> list[Tokenized]:
        """Runs in the tokenize stage's thread. A text is cut only if it reached max_length; only those get
        the (slower) untruncated count that tells a cut text from one exactly max_length long."""
        tokenizer = self.model.tokenizer
        return [
            (row, len(row) >= tokenizer.max_length and tokenizer.count_tokens(text) > len(row))
            for row, text in zip(tokenizer.encode_ids(texts), texts, strict=True)
        ]

    def close(self) -> None:
        self.tokenizing.close()

    def _landed(self, miss: _Miss, lookup_s: float, tokenize_s: float, outcome: _Outcome) -> None:
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
        computed = Computed(entry, "model", lookup_s, tokenize_s, result.queue_s, result.inference_s)
        self.flights.land(miss.key, miss.flight, computed)


def _finish_in_worker(
    loop: asyncio.AbstractEventLoop,
    landed: Callable[[_Outcome], None],
    tokens: int,
    truncated: bool,
    future: Future[ItemResult],
) -> None:
    """Runs in the batcher thread that finished the item: make its cache entry there (the JSON encoding stays
    off the event loop), then hand it to the loop."""
    outcome: _Outcome
    if future.cancelled():
        outcome = DeadlineExceeded("cancelled")
    elif (error := future.exception()) is not None:
        outcome = error
    else:
        result = future.result()
        try:
            outcome = (CachedEmbedding(result.vector, tokens, truncated), result)
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
