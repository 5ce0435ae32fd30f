"""The Redis cache tier: shared across replicas, entries expire after a TTL.

Redis is an optimisation, never a dependency: when it stops answering, the server logs one warning, sets
`inferopt_cache_redis_up` to 0, counts `inferopt_cache_requests_total{tier="redis",result="error"}` and serves
from the model. It tries Redis again once per `retry_every_s` and logs when it is back. Each call is bounded
by a short timeout and never retried inline, so a dead Redis costs a request at most `timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from inferopt.serve.cache import CachedResult, OutputForm
from inferopt.serve.metrics import ServeMetrics

log = logging.getLogger("inferopt.serve")
TIER = "redis"
MAX_WRITES_IN_FLIGHT = 64  # past this, new entries are not written: the cache is best-effort


def redacted(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class RedisTier:
    def __init__(
        self,
        url: str,
        ttl_s: int,
        metrics: ServeMetrics,
        outputs: dict[str, OutputForm],
        *,
        timeout_s: float = 0.25,
        retry_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = redacted(url)
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.outputs = outputs  # output name -> dtype and item shape: what an entry of this model holds
        self.timeout_s = timeout_s
        self.retry_every_s = retry_every_s
        self._clock = clock
        # No inline retries (redis-py's default is 10 with backoff): a request must not stall on a dead Redis.
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._up = True
        self._next_try = 0.0
        self._pending: dict[str, CachedResult] = {}
        self._writes: set[asyncio.Task[None]] = set()
        metrics.redis_up.set(1)

    @property
    def up(self) -> bool:
        return self._up

    async def check(self) -> bool:
        """One PING at startup, so that a wrong URL is reported at once, not at the first request."""
        try:
            await asyncio.wait_for(self._client.ping(), self.timeout_s * 4)
        except Exception as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    async def get_many(self, keys: list[str]) -> dict[str, CachedResult]:
        if not keys:
            return {}
        if not self._should_try():
            self.metrics.cache(TIER, "error", len(keys))
            return {}
        try:
            values = await asyncio.wait_for(self._client.mget(keys), self.timeout_s)
        except Exception as exc:  # connection refused/reset, timeout, protocol error: all mean "not now"
            self._mark_down(exc)
            self.metrics.cache(TIER, "error", len(keys))
            return {}
        self._mark_up()
        found = self._decode(keys, values)
        self.metrics.cache(TIER, "hit", len(found))
        self.metrics.cache(TIER, "miss", len(keys) - len(found))
        return found

    def _decode(self, keys: list[str], values: Sequence[object]) -> dict[str, CachedResult]:
        """Entries by key. decode_responses is off, so values are bytes, or None for a miss. A value that is not
        an entry of this model (written by something else, or damaged) is a miss: the fresh result replaces it."""
        found = {}
        for key, value in zip(keys, values, strict=True):
            if not isinstance(value, bytes):
                continue
            try:
                found[key] = CachedResult.from_bytes(value, self.outputs)
            except ValueError as exc:
                log.warning("Redis cache at %s: ignoring the value under %s (%s)", self.url, key, exc)
        return found

    def put(self, key: str, entry: CachedResult) -> None:
        """Write behind: entries put in one event-loop turn (one batch's results) go out as one pipeline."""
        if not self._should_try():
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending[key] = entry

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending or len(self._writes) >= MAX_WRITES_IN_FLIGHT:
            return
        task = asyncio.get_running_loop().create_task(self._write(pending))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, entries: dict[str, CachedResult]) -> None:
        values = {}
        for key, entry in entries.items():
            try:
                values[key] = entry.to_bytes()
            except (ValueError, struct.error) as exc:  # an output this format cannot hold: not cached, Redis is fine
                log.warning("Redis cache at %s: not writing %s (%s)", self.url, key, exc)
        if not values:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, value in values.items():
                pipe.set(key, value, ex=self.ttl_s)
            await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except Exception as exc:
            self._mark_down(exc)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=self.timeout_s)
        await self._client.aclose()

    def _should_try(self) -> bool:
        """While Redis is down, one caller per retry period probes it; the rest go straight to the model
        instead of each waiting up to timeout_s on the same dead socket."""
        if self._up:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry_every_s  # this caller is the probe
        return True

    def _mark_down(self, exc: BaseException) -> None:
        self._next_try = self._clock() + self.retry_every_s
        if self._up:
            self._up = False
            self.metrics.redis_up.set(0)
            log.warning(
                "Redis cache at %s is unreachable (%s: %s); serving without it, retrying every %.0f s",
                self.url,
                type(exc).__name__,
                exc,
                self.retry_every_s,
            )

    def _mark_up(self) -> None:
        if not self._up:
            self._up = True
            self.metrics.redis_up.set(1)
            log.warning("Redis cache at %s is back", self.url)
