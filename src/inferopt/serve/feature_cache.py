"""An entity's stored features, read through tiers: in-process memory, Redis (optional), then the store.

    cache = FeatureCache(store, spec, namespace=artifact_id, redis_url=None, max_stale_s=0.0,
                         clock=time.time, metrics=FeatureMetrics(registry))
    record = await cache.read(EntityRef("acme", 42))   # FeatureRecord: merged values, each group's age and source
    await cache.close()

`store` is a PostgresFeatures, or anything with `async fetch(group, ref) -> dict | None` (and optionally an
`up` property, which the `inferopt_feature_store_up` gauge then reports).

Each group of the spec is read on its own terms, all of them at once: a memory copy younger than the group's
`ttl_s` is served ("memory"); else a Redis copy younger than that ("redis"), kept in memory with its original
fetch time so that ages stay true; else the store is queried ("postgres") and the row kept in both tiers.
Age is `clock() - fetched_at`; the clock is wall time by default because Redis copies are shared by replicas.

Concurrent reads of one (group, tenant, entity) share one store query (single-flight). The query runs as its
own task: a reader that gives up (cancelled, deadline) does not cancel it for the others, and its failure
reaches every reader waiting on it.

When the store is unavailable (FeaturesUnavailable), a cached copy at most `ttl_s + max_stale_s` old is
served as "stale"; with none, the read raises FeaturesUnavailable. If any group has no row the entity is
unknown: EntityNotFound. "No row" is never cached, so an entity that appears is seen at once.

Tenants never share an entry: keys are the group, tenant and entity id (and the namespace in Redis), with
the variable-length parts length-prefixed, so no tenant string can spell another tenant's key. Redis is an
optimisation, never a dependency: its errors are counted and the read goes on to the store, as in
cache_redis.py. Used from the event loop only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from inferopt.serve.metrics import FeatureMetrics
from inferopt.serve.redis_link import RedisLink
from inferopt.sources.features import (
    EntityNotFound,
    EntityRef,
    FeatureGroup,
    FeatureRecord,
    FeatureSpec,
    FeaturesUnavailable,
    GroupRead,
)

log = logging.getLogger("inferopt.serve")
Entry = tuple[dict[str, Any], float]  # a group's values, and when the store was read for them (cache clock)
MemoryKey = tuple[str, str, int]  # group, tenant, entity id


class FeatureStore(Protocol):
    async def fetch(self, group: FeatureGroup, ref: EntityRef) -> dict[str, Any] | None: ...


class MemoryTier:
    """The most recently used entries, at most `max_entries`; an entry past the age its reader can still use
    (TTL plus the stale allowance) is dropped when read."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[MemoryKey, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: MemoryKey, now: float, max_age_s: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry[1] > max_age_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: MemoryKey, entry: Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: MemoryKey) -> None:
        self._entries.pop(key, None)


class FeatureCache:
    def __init__(
        self,
        store: FeatureStore,
        spec: FeatureSpec,
        *,
        namespace: str,
        redis_url: str | None = None,
        max_stale_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        metrics: FeatureMetrics | None = None,
        max_entries: int = 65_536,
    ) -> None:
        self.store = store
        self.spec = spec
        self.namespace = namespace
        self.max_stale_s = max_stale_s
        self.metrics = metrics
        self.memory = MemoryTier(max_entries)
        self.redis = (
            RedisLink(
                redis_url,
                name="Redis feature cache",
                fallback="reading the store",
                on_error=metrics.redis_errors.inc if metrics is not None else None,
            )
            if redis_url
            else None
        )
        self.redis_prefix = f"inferopt:features:{len(namespace)}:{namespace}:"
        self._clock = clock
        self._flights: dict[MemoryKey, asyncio.Task[Entry | None]] = {}
        self._store_ok = True  # for a store without an `up` of its own: the last fetch's outcome
        if metrics is not None:
            metrics.store_up.set_function(lambda: float(getattr(store, "up", self._store_ok)))

    async def read(self, ref: EntityRef) -> FeatureRecord:
        _check_ref(ref)
        now = self._clock()
        reads: dict[str, GroupRead] = {}
        missed: list[tuple[FeatureGroup, Entry | None]] = []
        for group in self.spec.groups:
            entry = self.memory.get(_memory_key(group, ref), now, group.ttl_s + self.max_stale_s)
            if entry is not None and now - entry[1] < group.ttl_s:
                reads[group.name] = self._served(group, entry, "memory", now)
            else:
                missed.append((group, entry))
        if missed and self.redis is not None:
            missed = await self._read_redis(ref, missed, reads)
        if missed:
            results = await asyncio.gather(
                *(self._read_store(group, ref, stale) for group, stale in missed), return_exceptions=True
            )
            self._land(ref, [group for group, _ in missed], results, reads)
        groups = {group.name: reads[group.name] for group in self.spec.groups}  # in the spec's order
        values = {column: value for read in groups.values() for column, value in (read.values or {}).items()}
        return FeatureRecord(ref, values, groups)

    async def close(self) -> None:
        """Let the fetches in flight land, then close Redis and the store."""
        if self._flights:
            await asyncio.wait(set(self._flights.values()))
        if self.redis is not None:
            await self.redis.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            await close()

    def redis_key(self, group: FeatureGroup, ref: EntityRef) -> str:
        return f"{self.redis_prefix}{len(group.name)}:{group.name}:{len(ref.tenant)}:{ref.tenant}:{ref.entity_id}"

    async def _read_redis(
        self, ref: EntityRef, missed: list[tuple[FeatureGroup, Entry | None]], reads: dict[str, GroupRead]
    ) -> list[tuple[FeatureGroup, Entry | None]]:
        """Serve the groups Redis holds fresh copies of; the rest, each with its youngest stale copy."""
        assert self.redis is not None
        keys = [self.redis_key(group, ref) for group, _ in missed]
        values = await self.redis.mget(keys) or [None] * len(keys)
        now = self._clock()
        still = []
        for (group, memory_entry), raw in zip(missed, values, strict=True):
            entry = self._decode(group, raw)
            if entry is not None and now - entry[1] < group.ttl_s:
                self.memory.put(_memory_key(group, ref), entry)
                reads[group.name] = self._served(group, entry, "redis", now)
                continue
            candidates = [e for e in (memory_entry, entry) if e is not None]
            still.append((group, max(candidates, key=lambda e: e[1]) if candidates else None))
        return still

    def _decode(self, group: FeatureGroup, raw: bytes | None) -> Entry | None:
        """A Redis value that is not a feature entry of this group (written by something else, or by a spec
        with other columns) is a miss: the fresh read replaces it."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            values, fetched_at = data["v"], float(data["t"])
            if isinstance(values, dict) and set(values) == set(group.columns) and math.isfinite(fetched_at):
                return values, fetched_at
        except (ValueError, TypeError, KeyError):
            pass
        log.warning("Redis feature cache: ignoring a value that is no entry of group %r", group.name)
        return None

    async def _read_store(self, group: FeatureGroup, ref: EntityRef, stale: Entry | None) -> GroupRead | None:
        key = _memory_key(group, ref)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fetch(group, ref, key))
            self._flights[key] = flight
            flight.add_done_callback(lambda task: self._landed(key, task))
        try:
            # Shielded: this reader being cancelled must not cancel the query the other readers wait on.
            entry = await asyncio.shield(flight)
        except FeaturesUnavailable:
            now = self._clock()
            if stale is not None and now - stale[1] <= group.ttl_s + self.max_stale_s:
                return self._served(group, stale, "stale", now)
            raise
        if entry is None:
            return None
        return self._served(group, entry, "postgres", self._clock())

    async def _fetch(self, group: FeatureGroup, ref: EntityRef, key: MemoryKey) -> Entry | None:
        fetched_at = self._clock()  # when the query starts: the row is at least this old
        started = time.perf_counter()
        try:
            values = await self.store.fetch(group, ref)
        except FeaturesUnavailable:
            self._store_ok = False
            raise
        finally:
            if self.metrics is not None:
                self.metrics.fetched(group.name, time.perf_counter() - started)
        self._store_ok = True
        if values is None:
            self.memory.drop(key)  # the entity is gone: its old copy must not be served as stale
            return None
        entry = (values, fetched_at)
        self.memory.put(key, entry)
        if self.redis is not None:
            self._write_redis(group, ref, entry)
        return entry

    def _write_redis(self, group: FeatureGroup, ref: EntityRef, entry: Entry) -> None:
        assert self.redis is not None
        if not self.redis.may_try():
            return
        try:
            encoded = json.dumps({"v": entry[0], "t": entry[1]}).encode()
        except (TypeError, ValueError) as exc:  # a store's value JSON cannot hold: served, just not shared
            log.warning("Redis feature cache: not writing group %r (%s)", group.name, exc)
            return
        self.redis.put(self.redis_key(group, ref), encoded, max(1, math.ceil(group.ttl_s + self.max_stale_s)))

    def _landed(self, key: MemoryKey, task: asyncio.Task[Entry | None]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every reader may have given up before a failure landed

    def _land(
        self,
        ref: EntityRef,
        groups: list[FeatureGroup],
        results: list[GroupRead | BaseException | None],
        reads: dict[str, GroupRead],
    ) -> None:
        """Take the store's answers, or raise the one that decides the read: a bug or bad input first, then an
        unknown entity (a group said so), then the store being down."""
        unavailable: FeaturesUnavailable | None = None
        missing = False
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, FeaturesUnavailable):
                unavailable = unavailable or result
                if self.metrics is not None:
                    self.metrics.served(group.name, "error", None)
            elif isinstance(result, BaseException):
                raise result
            elif result is None:
                missing = True
            else:
                reads[group.name] = result
        if missing:
            raise EntityNotFound(self.spec.entity, ref)
        if unavailable is not None:
            raise unavailable

    def _served(self, group: FeatureGroup, entry: Entry, source: str, now: float) -> GroupRead:
        age = max(0.0, now - entry[1])  # another replica's clock may run a little ahead
        if self.metrics is not None:
            self.metrics.served(group.name, source, age)
        return GroupRead(dict(entry[0]), age, source)


def _memory_key(group: FeatureGroup, ref: EntityRef) -> MemoryKey:
    return (group.name, ref.tenant, ref.entity_id)


def _check_ref(ref: EntityRef) -> None:
    """Before any tier: True == 1 and 1.0 == 1 in a dict key, so a bool or float id would read id 1's entry."""
    if not isinstance(ref.entity_id, int) or isinstance(ref.entity_id, bool):
        raise TypeError(f"an entity id is an int, not {type(ref.entity_id).__name__} {ref.entity_id!r}")
    if not isinstance(ref.tenant, str):
        raise TypeError(f"a tenant is a str, not {type(ref.tenant).__name__} {ref.tenant!r}")
