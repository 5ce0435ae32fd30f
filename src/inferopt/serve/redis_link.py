"""A Redis connection for tiers that must never become a dependency (the prediction cache, the feature cache).

Every call is bounded by a short timeout and never retried inline (redis-py's default retries with backoff), so
a dead Redis costs a caller at most `timeout_s`. While Redis does not answer, one caller per `retry_every_s`
probes it and the others skip it at once; the link logs one warning when Redis goes and one when it is back,
and tells its owner through `on_state` (a gauge) and `on_error` (a counter). Writes are write-behind: what is
put in one event-loop turn goes out as one pipeline, and at most MAX_WRITES_IN_FLIGHT pipelines are pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger("inferopt.serve")
MAX_WRITES_IN_FLIGHT = 64  # past this, new entries are not written: the tiers are best-effort


def redacted(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class RedisLink:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        fallback: str,
        timeout_s: float = 0.25,
        retry_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[bool], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        """`name` and `fallback` word the warnings: "Redis cache at URL is unreachable (...); serving without it"."""
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = redacted(url)
        self.name = name
        self.fallback = fallback
        self.timeout_s = timeout_s
        self.retry_every_s = retry_every_s
        self._clock = clock
        self._on_state = on_state
        self._on_error = on_error
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._up = True
        self._next_try = 0.0
        self._pending: dict[str, tuple[bytes, int]] = {}
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self._up

    async def ping(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._client.ping(), timeout_s)
        except Exception as exc:
            self._down(exc)
            return False
        self._back()
        return True

    async def mget(self, keys: list[str]) -> list[bytes | None] | None:
        """The values under `keys` (None for each missing one); None when Redis could not be asked."""
        if not self.may_try():
            return None
        try:
            values = await asyncio.wait_for(self._client.mget(keys), self.timeout_s)
        except Exception as exc:  # refused, reset, timed out, protocol error: all mean "not now"
            self._down(exc)
            return None
        self._back()
        return [value if isinstance(value, bytes) else None for value in values]

    def may_try(self) -> bool:
        """Whether to call Redis now: always while it is up; while it is down, once per retry period (the
        caller is then the probe)."""
        if self._up:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry_every_s
        return True

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Write behind; the caller has asked may_try() first (so it does not encode what cannot be written)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending[key] = (value, ttl_s)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending or len(self._writes) >= MAX_WRITES_IN_FLIGHT:
            return
        task = asyncio.get_running_loop().create_task(self._write(pending))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, entries: dict[str, tuple[bytes, int]]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, (value, ttl_s) in entries.items():
                pipe.set(key, value, ex=ttl_s)
            await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except Exception as exc:
            self._down(exc)

    async def close(self) -> None:
        self._flush()
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=self.timeout_s * 2)
        await self._client.aclose()

    def _down(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error()
        self._next_try = self._clock() + self.retry_every_s
        if self._up:
            self._up = False
            if self._on_state is not None:
                self._on_state(False)
            log.warning(
                "%s at %s is unreachable (%s: %s); %s, retrying every %g s",
                self.name,
                self.url,
                type(exc).__name__,
                exc,
                self.fallback,
                self.retry_every_s,
            )

    def _back(self) -> None:
        if not self._up:
            self._up = True
            if self._on_state is not None:
                self._on_state(True)
            log.warning("%s at %s is back", self.name, self.url)
