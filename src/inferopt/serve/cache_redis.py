"""The Redis cache tier: shared across replicas, entries expire after a TTL.

Redis is an optimisation, never a dependency: when it stops answering, the server logs one warning, sets
`inferopt_cache_redis_up` to 0, counts `inferopt_cache_requests_total{tier="redis",result="error"}` and serves
from the model. It tries Redis again once per `retry_every_s` and logs when it is back. Each call is bounded
by a short timeout and never retried inline, so a dead Redis costs a request at most `timeout_s` (the
connection's behaviour is redis_link.py's, shared with the feature cache).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence

from inferopt.serve.cache import CachedResult, OutputForm
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.redis_link import RedisLink, redacted

__all__ = ["TIER", "RedisTier", "redacted"]

log = logging.getLogger("inferopt.serve")
TIER = "redis"


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
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.outputs = outputs  # output name -> dtype and item shape: what an entry of this model holds
        self.link = RedisLink(
            url,
            name="Redis cache",
            fallback="serving without it",
            timeout_s=timeout_s,
            retry_every_s=retry_every_s,
            clock=clock,
            on_state=lambda up: metrics.redis_up.set(int(up)),
        )
        self.url = self.link.url
        metrics.redis_up.set(1)

    @property
    def up(self) -> bool:
        return self.link.up

    async def check(self) -> bool:
        """One PING at startup, so that a wrong URL is reported at once, not at the first request."""
        return await self.link.ping(self.link.timeout_s * 4)

    async def get_many(self, keys: list[str]) -> dict[str, CachedResult]:
        if not keys:
            return {}
        values = await self.link.mget(keys)
        if values is None:  # down (or being probed and failing): every key counts as an error
            self.metrics.cache(TIER, "error", len(keys))
            return {}
        found = self._decode(keys, values)
        self.metrics.cache(TIER, "hit", len(found))
        self.metrics.cache(TIER, "miss", len(keys) - len(found))
        return found

    def _decode(self, keys: list[str], values: Sequence[bytes | None]) -> dict[str, CachedResult]:
        """Entries by key. A value that is not an entry of this model (written by something else, or damaged)
        is a miss: the fresh result replaces it."""
        found = {}
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue
            try:
                found[key] = CachedResult.from_bytes(value, self.outputs)
            except ValueError as exc:
                log.warning("Redis cache at %s: ignoring the value under %s (%s)", self.url, key, exc)
        return found

    def put(self, key: str, entry: CachedResult) -> None:
        """Write behind: entries put in one event-loop turn (one batch's results) go out as one pipeline."""
        if not self.link.may_try():
            return
        try:
            value = entry.to_bytes()
        except (ValueError, struct.error) as exc:  # an output this format cannot hold: not cached, Redis is fine
            log.warning("Redis cache at %s: not writing %s (%s)", self.url, key, exc)
            return
        self.link.put(key, value, self.ttl_s)

    async def close(self) -> None:
        await self.link.close()
