"""The feature cache's own logic: per-group TTLs and ages on an injected clock, single-flight, stale serving,
unknown entities, tenant-safe keys, metrics, and the Redis tier against real Redis (DB 13, only this test's
namespace touched). The store here is a small in-process table: what is under test is the cache, not the store
(tests/integration/test_postgres_features.py reads real PostgreSQL through it)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from inferopt.serve.feature_cache import FeatureCache
from inferopt.serve.metrics import FeatureMetrics
from inferopt.sources.features import (
    EntityNotFound,
    EntityRef,
    FeatureGroup,
    FeatureSpec,
    FeaturesUnavailable,
)

pytestmark = pytest.mark.anyio
REDIS_URL = "redis://127.0.0.1:6379/13"
PROFILE = FeatureGroup("profile", "SELECT age, job FROM profile WHERE tenant = $1 AND id = $2", ("age", "job"), 60.0)
ACCOUNTS = FeatureGroup("accounts", "SELECT checking FROM accounts WHERE tenant = $1 AND id = $2", ("checking",), 5.0)
SPEC = FeatureSpec("application", (PROFILE, ACCOUNTS))
ACME_1 = EntityRef("acme", 1)


class TableStore:
    """Rows by (group, tenant, id); counts its fetches; can be held on a gate (so reads really overlap) or
    made unavailable."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None
        self.down = False

    def add(self, tenant: str, entity_id: int, age: int, job: str, checking: str) -> None:
        self.rows[("profile", tenant, entity_id)] = {"age": age, "job": job}
        self.rows[("accounts", tenant, entity_id)] = {"checking": checking}

    async def fetch(self, group: FeatureGroup, ref: EntityRef) -> dict[str, Any] | None:
        self.calls[group.name] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise FeaturesUnavailable("postgres", "connection refused")
        row = self.rows.get((group.name, ref.tenant, ref.entity_id))
        return None if row is None else dict(row)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> TableStore:
    made = TableStore()
    made.add("acme", 1, 35, "skilled", "little")
    made.add("globex", 1, 52, "management", "rich")
    return made


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sources(record: Any) -> dict[str, tuple[str, float]]:
    return {name: (read.source, read.age_s) for name, read in record.groups.items()}


async def test_each_group_is_refetched_only_once_its_own_ttl_passes(store: TableStore, clock: Clock) -> None:
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock)
    first = await cache.read(ACME_1)
    assert first.values == {"age": 35, "job": "skilled", "checking": "little"}
    assert sources(first) == {"profile": ("postgres", 0.0), "accounts": ("postgres", 0.0)}
    clock.now += 3
    assert sources(await cache.read(ACME_1)) == {"profile": ("memory", 3.0), "accounts": ("memory", 3.0)}
    clock.now += 3  # 6 s: past accounts' 5 s TTL, inside profile's 60 s
    store.rows[("accounts", "acme", 1)] = {"checking": "moderate"}
    again = await cache.read(ACME_1)
    assert sources(again) == {"profile": ("memory", 6.0), "accounts": ("postgres", 0.0)}
    assert again.values["checking"] == "moderate"
    assert store.calls == {"profile": 1, "accounts": 2}
    assert again.debug() == {
        "profile": {"age_s": 6.0, "source": "memory"},
        "accounts": {"age_s": 0.0, "source": "postgres"},
    }


async def test_an_unknown_entity_is_not_found_and_not_remembered(store: TableStore, clock: Clock) -> None:
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock)
    with pytest.raises(EntityNotFound, match="application 9 does not exist for tenant 'acme'"):
        await cache.read(EntityRef("acme", 9))
    store.add("acme", 9, 40, "unskilled", "none")  # the application appears a moment later
    assert (await cache.read(EntityRef("acme", 9))).values["age"] == 40


async def test_an_entity_missing_from_one_group_is_not_found(store: TableStore, clock: Clock) -> None:
    store.rows[("profile", "acme", 5)] = {"age": 20, "job": "skilled"}  # no accounts row
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock)
    with pytest.raises(EntityNotFound):
        await cache.read(EntityRef("acme", 5))


async def test_tenants_with_the_same_entity_id_each_get_their_own_values(store: TableStore, clock: Clock) -> None:
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock)
    assert (await cache.read(ACME_1)).values["job"] == "skilled"
    globex = await cache.read(EntityRef("globex", 1))
    assert globex.values == {"age": 52, "job": "management", "checking": "rich"}
    assert sources(globex)["profile"][0] == "postgres"  # not acme's memory entry
    with pytest.raises(EntityNotFound):
        await cache.read(EntityRef("initech", 1))


def test_no_tenant_string_spells_another_tenants_redis_key() -> None:
    cache = FeatureCache(TableStore(), SPEC, namespace="ns")
    refs = [EntityRef(t, i) for t in ("a", "a:1", "a:1:a", "1:a", "", ":", "a:b", "a:b:c") for i in (1, 11)]
    keys = {cache.redis_key(group, ref) for group in SPEC.groups for ref in refs}
    assert len(keys) == len(refs) * len(SPEC.groups)
    other = FeatureCache(TableStore(), SPEC, namespace="ns:7")  # nor does a namespace spell another's
    assert not keys & {other.redis_key(group, ref) for group in SPEC.groups for ref in refs}


async def test_ids_that_equal_an_int_but_are_not_one_are_refused(store: TableStore) -> None:
    cache = FeatureCache(store, SPEC, namespace="t")
    await cache.read(ACME_1)
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError, match="an entity id is an int"):
            await cache.read(EntityRef("acme", bad))  # type: ignore[arg-type]


async def test_stale_copies_are_served_while_the_store_is_down_until_max_stale(store: TableStore, clock: Clock) -> None:
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock, max_stale_s=30)
    await cache.read(ACME_1)
    store.down = True
    clock.now += 10
    record = await cache.read(ACME_1)
    assert sources(record) == {"profile": ("memory", 10.0), "accounts": ("stale", 10.0)}
    assert record.values["checking"] == "little"
    clock.now += 25  # 35 s = ttl 5 + max_stale 30: still served
    assert sources(await cache.read(ACME_1))["accounts"] == ("stale", 35.0)
    clock.now += 1
    with pytest.raises(FeaturesUnavailable, match=r"feature store \(postgres\) is unavailable") as caught:
        await cache.read(ACME_1)
    assert caught.value.dependency == "postgres"
    store.down = False
    assert sources(await cache.read(ACME_1))["accounts"] == ("postgres", 0.0)


async def test_without_max_stale_a_down_store_fails_the_read_past_the_ttl(store: TableStore, clock: Clock) -> None:
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock)
    await cache.read(ACME_1)
    store.down = True
    clock.now += 5.5
    with pytest.raises(FeaturesUnavailable):
        await cache.read(ACME_1)


async def test_fifty_concurrent_reads_make_one_store_query_per_group(store: TableStore) -> None:
    store.gate = asyncio.Event()
    cache = FeatureCache(store, SPEC, namespace="t")
    reads = [asyncio.create_task(cache.read(ACME_1)) for _ in range(50)]
    await asyncio.sleep(0.01)  # every read is now waiting on the gated flights
    assert store.calls == {"profile": 1, "accounts": 1}
    store.gate.set()
    records = await asyncio.gather(*reads)
    assert {r.values["job"] for r in records} == {"skilled"}
    assert store.calls == {"profile": 1, "accounts": 1}


async def test_a_cancelled_reader_does_not_cancel_the_query_the_others_wait_on(store: TableStore) -> None:
    store.gate = asyncio.Event()
    cache = FeatureCache(store, SPEC, namespace="t")
    leader = asyncio.create_task(cache.read(ACME_1))  # the read that started the flights
    await asyncio.sleep(0)
    others = [asyncio.create_task(cache.read(ACME_1)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    others[0].cancel()
    await asyncio.sleep(0)
    store.gate.set()
    records = await asyncio.gather(*others[1:])
    assert [r.values["age"] for r in records] == [35] * 4
    assert leader.cancelled() and others[0].cancelled()
    assert store.calls == {"profile": 1, "accounts": 1}
    assert sources(await cache.read(ACME_1))["profile"][0] == "memory"  # the flight filled the cache


async def test_a_failed_query_fails_every_reader_waiting_on_it(store: TableStore) -> None:
    store.gate, store.down = asyncio.Event(), True
    cache = FeatureCache(store, SPEC, namespace="t")
    reads = [asyncio.create_task(cache.read(ACME_1)) for _ in range(10)]
    await asyncio.sleep(0.01)
    store.gate.set()
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(r, FeaturesUnavailable) for r in results)
    assert store.calls == {"profile": 1, "accounts": 1}


async def test_memory_holds_at_most_max_entries(store: TableStore) -> None:
    for entity in range(2, 12):
        store.add("acme", entity, 30, "skilled", "little")
    cache = FeatureCache(store, SPEC, namespace="t", max_entries=8)
    for entity in range(2, 12):
        await cache.read(EntityRef("acme", entity))
    assert len(cache.memory) == 8
    assert sources(await cache.read(EntityRef("acme", 11)))["profile"][0] == "memory"  # the most recent stayed
    assert sources(await cache.read(EntityRef("acme", 2)))["profile"][0] == "postgres"  # the oldest went


async def test_metrics_count_sources_and_errors_and_report_the_store(store: TableStore, clock: Clock) -> None:
    registry = CollectorRegistry()
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock, metrics=FeatureMetrics(registry), max_stale_s=1)
    await cache.read(ACME_1)
    clock.now += 2
    await cache.read(ACME_1)
    store.down = True
    clock.now += 4  # accounts 6 s old: stale
    await cache.read(ACME_1)
    clock.now += 10
    with pytest.raises(FeaturesUnavailable):
        await cache.read(ACME_1)
    text = generate_latest(registry).decode()
    for line in (
        'inferopt_feature_requests_total{group="profile",source="postgres"} 1.0',
        'inferopt_feature_requests_total{group="profile",source="memory"} 3.0',
        'inferopt_feature_requests_total{group="accounts",source="memory"} 1.0',
        'inferopt_feature_requests_total{group="accounts",source="stale"} 1.0',
        'inferopt_feature_requests_total{group="accounts",source="error"} 1.0',
        'inferopt_feature_age_seconds_count{group="profile"} 4.0',
        'inferopt_feature_fetch_seconds_count{group="accounts"} 3.0',
        "inferopt_feature_store_up 0.0",
    ):
        assert line in text, line


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A namespace of this test's own in DB 13; its keys are deleted after (other tests flush DB 13 whole)."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"inferopt:features:{len(name)}:{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.redis
async def test_a_fresh_cache_reads_redis_with_the_original_fetch_time(
    store: TableStore, clock: Clock, namespace: str
) -> None:
    first = FeatureCache(store, SPEC, namespace=namespace, redis_url=REDIS_URL, clock=clock, max_stale_s=10)
    await first.read(ACME_1)
    await first.read(EntityRef("globex", 1))
    await first.close()  # flushes its writes
    client = aioredis.Redis.from_url(REDIS_URL)
    assert 14 <= await client.ttl(first.redis_key(ACCOUNTS, ACME_1)) <= 15  # ceil(5 + 10)
    await client.aclose()

    clock.now += 2
    second = FeatureCache(store, SPEC, namespace=namespace, redis_url=REDIS_URL, clock=clock)  # a new process
    record = await second.read(ACME_1)
    assert sources(record) == {"profile": ("redis", 2.0), "accounts": ("redis", 2.0)}
    assert record.values == {"age": 35, "job": "skilled", "checking": "little"}
    assert (await second.read(EntityRef("globex", 1))).values["job"] == "management"
    clock.now += 1
    assert sources(await second.read(ACME_1))["profile"] == ("memory", 3.0)  # memory kept the fetch time
    clock.now += 3  # accounts 6 s old in Redis too: past its TTL
    assert sources(await second.read(ACME_1))["accounts"] == ("postgres", 0.0)
    assert store.calls == {"profile": 2, "accounts": 3}
    await second.close()


@pytest.mark.redis
async def test_redis_serves_stale_copies_to_a_fresh_cache_while_the_store_is_down(
    store: TableStore, clock: Clock, namespace: str
) -> None:
    first = FeatureCache(store, SPEC, namespace=namespace, redis_url=REDIS_URL, clock=clock, max_stale_s=10)
    await first.read(ACME_1)
    await first.close()
    store.down = True
    clock.now += 8
    second = FeatureCache(store, SPEC, namespace=namespace, redis_url=REDIS_URL, clock=clock, max_stale_s=10)
    assert sources(await second.read(ACME_1)) == {"profile": ("redis", 8.0), "accounts": ("stale", 8.0)}
    await second.close()


@pytest.mark.redis
async def test_foreign_values_under_a_key_are_misses(store: TableStore, namespace: str) -> None:
    cache = FeatureCache(store, SPEC, namespace=namespace, redis_url=REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.set(cache.redis_key(PROFILE, ACME_1), b"not json", ex=60)
    await client.set(cache.redis_key(ACCOUNTS, ACME_1), b'{"v": {"other": 1}, "t": 0}', ex=60)
    await client.aclose()
    record = await cache.read(ACME_1)
    assert {name: read.source for name, read in record.groups.items()} == dict.fromkeys(
        ("profile", "accounts"), "postgres"
    )
    await cache.close()


async def test_a_dead_redis_is_counted_and_the_store_answers(store: TableStore) -> None:
    registry = CollectorRegistry()
    cache = FeatureCache(
        store, SPEC, namespace="t", redis_url="redis://127.0.0.1:1/0", metrics=FeatureMetrics(registry)
    )
    record = await cache.read(ACME_1)
    assert sources(record)["profile"][0] == "postgres"
    assert cache.redis is not None and not cache.redis.up
    assert "inferopt_feature_redis_errors_total 1.0" in generate_latest(registry).decode()
    await cache.close()
