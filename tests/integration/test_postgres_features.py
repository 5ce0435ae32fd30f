"""Stored features read from the real PostgreSQL at 127.0.0.1:5432 (database `test`), in a schema of the test's
own that is dropped after: values and their types, unknown entities, tenant isolation, injection strings as
tenants, a spec whose SQL is wrong, and the server going away mid-run and coming back (a TCP proxy of the
test's own between the reader and PostgreSQL, stopped and restarted on the same port)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from tests.pg_proxy import TcpProxy

from inferopt.serve.feature_cache import FeatureCache
from inferopt.sources.features import (
    EntityNotFound,
    EntityRef,
    FeatureGroup,
    FeatureRecord,
    FeatureSpec,
    FeaturesUnavailable,
)
from inferopt.sources.postgres import PostgresFeatures

pytestmark = pytest.mark.anyio
PG_PORT = 5432
DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/test"
PROFILE = FeatureGroup(
    "profile",
    "SELECT age, job, income FROM profile WHERE tenant = $1 AND applicant_id = $2",
    ("age", "job", "income"),
    60.0,
)
# One row per applicant from two account rows: the pivot a real feature query does.
ACCOUNTS = FeatureGroup(
    "accounts",
    "SELECT max(a.status) FILTER (WHERE a.kind = 'checking'), max(a.status) FILTER (WHERE a.kind = 'savings')"
    " FROM profile p JOIN accounts a ON a.tenant = p.tenant AND a.applicant_id = p.applicant_id"
    " WHERE p.tenant = $1 AND p.applicant_id = $2 GROUP BY p.tenant, p.applicant_id",
    ("checking", "savings"),
    5.0,
)
SPEC = FeatureSpec("application", (PROFILE, ACCOUNTS))
ROWS = {  # (tenant, id): (age, job, income, checking, savings)
    ("acme", 1): (35, "skilled", "4200.50", "little", "moderate"),
    ("acme", 2): (23, "unskilled", "1800.00", "none", "little"),
    ("globex", 1): (52, "management", "9100.25", "rich", "quite rich"),
    ("globex", 7): (41, "skilled", "3000.00", "moderate", "none"),
}
INJECTIONS = ("x' OR '1'='1", "default; DROP TABLE profile; --", "acme' --", "acme'; DELETE FROM accounts; --")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _setup(schema: str) -> None:
    con = await asyncpg.connect(DSN)
    try:
        await con.execute(f"CREATE SCHEMA {schema}")
        await con.execute(f"SET search_path TO {schema}")
        await con.execute(
            "CREATE TABLE profile (tenant text, applicant_id bigint, age int, job text, income numeric(12, 2),"
            " PRIMARY KEY (tenant, applicant_id))"
        )
        await con.execute("CREATE TABLE accounts (tenant text, applicant_id bigint, kind text, status text)")
        for (tenant, entity), (age, job, income, checking, savings) in ROWS.items():
            row = (tenant, entity, age, job, income)
            await con.execute("INSERT INTO profile VALUES ($1, $2, $3, $4, $5::numeric)", *row)
            await con.executemany(
                "INSERT INTO accounts VALUES ($1, $2, $3, $4)",
                [(tenant, entity, "checking", checking), (tenant, entity, "savings", savings)],
            )
    finally:
        await con.close()


async def _count_rows(schema: str) -> tuple[int, int]:
    con = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        return await con.fetchval("SELECT count(*) FROM profile"), await con.fetchval("SELECT count(*) FROM accounts")
    finally:
        await con.close()


async def _drop(schema: str) -> None:
    con = await asyncpg.connect(DSN)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await con.close()


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own in database `test`, with both tables and the rows of two tenants."""
    name = f"inferopt_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_setup(name))
    yield name
    asyncio.run(_drop(name))


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresFeatures]:
    made = PostgresFeatures(DSN, SPEC, schema=schema)
    await made.open()
    yield made
    await made.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sources(record: FeatureRecord) -> dict[str, str]:
    return {name: read.source for name, read in record.groups.items()}


async def _read_until_postgres(
    cache: FeatureCache, ref: EntityRef, group: str, within_s: float = 10.0
) -> FeatureRecord:
    """Read until `group` comes from the store again; the reader probes a down server every 0.5 s."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            record = await cache.read(ref)
            if sources(record)[group] == "postgres":
                return record
        except FeaturesUnavailable:
            pass
        assert time.monotonic() < deadline, "the reader did not come back to PostgreSQL"
        await asyncio.sleep(0.1)


async def test_a_fetch_returns_the_groups_row_with_numbers_as_numbers(store: PostgresFeatures) -> None:
    assert store.up
    assert await store.fetch(PROFILE, EntityRef("acme", 1)) == {"age": 35, "job": "skilled", "income": 4200.5}
    assert isinstance((await store.fetch(PROFILE, EntityRef("acme", 1)))["income"], float)  # not Decimal
    assert await store.fetch(ACCOUNTS, EntityRef("acme", 2)) == {"checking": "none", "savings": "little"}


async def test_an_unknown_entity_has_no_row_and_the_cache_says_not_found(store: PostgresFeatures) -> None:
    assert await store.fetch(PROFILE, EntityRef("acme", 99)) is None
    assert await store.fetch(ACCOUNTS, EntityRef("acme", 99)) is None
    cache = FeatureCache(store, SPEC, namespace="t")
    with pytest.raises(EntityNotFound, match="application 99 does not exist for tenant 'acme'"):
        await cache.read(EntityRef("acme", 99))


async def test_one_tenant_never_reads_another_tenants_rows(store: PostgresFeatures) -> None:
    assert await store.fetch(PROFILE, EntityRef("acme", 7)) is None  # globex's applicant 7
    cache = FeatureCache(store, SPEC, namespace="t")
    with pytest.raises(EntityNotFound):
        await cache.read(EntityRef("acme", 7))
    acme = await cache.read(EntityRef("acme", 1))
    globex = await cache.read(EntityRef("globex", 1))
    assert acme.values == {"age": 35, "job": "skilled", "income": 4200.5, "checking": "little", "savings": "moderate"}
    assert globex.values["job"] == "management" and globex.values["savings"] == "quite rich"
    assert sources(globex) == {"profile": "postgres", "accounts": "postgres"}  # not acme's cached copy
    assert (await cache.read(EntityRef("acme", 1))).values["job"] == "skilled"  # memory, still acme's
    with pytest.raises(EntityNotFound):
        await cache.read(EntityRef("ACME", 1))  # tenants are exact strings


async def test_injection_strings_as_tenant_find_nothing_and_change_nothing(
    store: PostgresFeatures, schema: str
) -> None:
    cache = FeatureCache(store, SPEC, namespace="t")
    for tenant in INJECTIONS:
        assert await store.fetch(PROFILE, EntityRef(tenant, 1)) is None
        with pytest.raises(EntityNotFound):
            await cache.read(EntityRef(tenant, 1))
    assert await _count_rows(schema) == (4, 8)  # both tables still there, every row too


async def test_ids_that_are_not_ints_are_refused_before_any_sql(store: PostgresFeatures) -> None:
    for bad in ("1", "1 OR 1=1", 1.0, True, None):
        with pytest.raises(TypeError, match="an entity id is an int"):
            await store.fetch(PROFILE, EntityRef("acme", bad))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64-bit"):
        await store.fetch(PROFILE, EntityRef("acme", 2**70))
    with pytest.raises(ValueError, match="NUL"):
        await store.fetch(PROFILE, EntityRef("acme\x00", 1))
    assert store.up  # none of it is the store's fault


async def test_a_group_whose_sql_names_a_missing_table_makes_the_store_unavailable(
    store: PostgresFeatures, schema: str
) -> None:
    broken = FeatureGroup("loans", "SELECT amount FROM loans WHERE tenant = $1 AND id = $2", ("amount",), 5.0)
    with pytest.raises(FeaturesUnavailable, match=rf'relation "loans" does not exist.*schema {schema!r}'):
        await store.fetch(broken, EntityRef("acme", 1))
    typo = FeatureGroup("profile", "SELECT agee FROM profile WHERE tenant = $1 AND applicant_id = $2", ("age",), 5.0)
    with pytest.raises(FeaturesUnavailable, match='column "agee" does not exist'):
        await store.fetch(typo, EntityRef("acme", 1))
    assert store.up  # the server answered: it is the spec that is wrong


async def test_a_server_that_stops_mid_run_is_served_stale_then_unavailable_then_recovered(schema: str) -> None:
    proxy = TcpProxy()
    await proxy.start()
    store = PostgresFeatures(f"postgresql://postgres@127.0.0.1:{proxy.port}/test", SPEC, schema=schema)
    await store.open()
    clock = Clock()
    cache = FeatureCache(store, SPEC, namespace="t", clock=clock, max_stale_s=30)
    ref = EntityRef("acme", 1)
    try:
        assert sources(await cache.read(ref)) == {"profile": "postgres", "accounts": "postgres"}
        await proxy.stop()

        clock.now += 10  # accounts (TTL 5 s) must be read again, and cannot be
        record = await cache.read(ref)
        assert sources(record) == {"profile": "memory", "accounts": "stale"}
        assert record.groups["accounts"].age_s == 10.0 and record.values["checking"] == "little"
        assert not store.up
        clock.now += 20
        assert (await cache.read(ref)).groups["accounts"].age_s == 30.0  # still stale, and older
        clock.now += 10  # 40 s: past TTL 5 + max_stale 30
        with pytest.raises(FeaturesUnavailable, match=r"\(postgres\)") as caught:
            await cache.read(ref)
        assert caught.value.dependency == "postgres"

        await proxy.start()  # the same port: the same reader must find it again
        record = await _read_until_postgres(cache, ref, "accounts")
        assert sources(record) == {"profile": "memory", "accounts": "postgres"}  # profile's TTL is 60 s
        assert record.values["savings"] == "moderate" and store.up
        assert sources(await cache.read(ref)) == {"profile": "memory", "accounts": "memory"}
    finally:
        await cache.close()
        await store.close()
        with contextlib.suppress(AssertionError):
            await proxy.stop()


async def test_a_server_started_while_postgres_is_down_recovers_when_it_comes_back(schema: str) -> None:
    proxy = TcpProxy()
    await proxy.start()
    await proxy.stop()  # a free port nobody answers on, kept for the proxy's return
    store = PostgresFeatures(f"postgresql://postgres@127.0.0.1:{proxy.port}/test", SPEC, schema=schema)
    await store.open()  # does not raise
    assert not store.up
    cache = FeatureCache(store, SPEC, namespace="t")
    try:
        with pytest.raises(FeaturesUnavailable, match=r"feature store \(postgres\) is unavailable"):
            await cache.read(EntityRef("globex", 7))
        await proxy.start()
        record = await _read_until_postgres(cache, EntityRef("globex", 7), "profile")
        assert sources(record) == {"profile": "postgres", "accounts": "postgres"}  # one probe, both groups wait on it
        assert record.values["age"] == 41 and store.up
    finally:
        await cache.close()
        await store.close()
        await proxy.stop()


async def test_a_down_server_is_probed_by_one_connection_attempt_at_a_time() -> None:
    """A listener that accepts and never answers (a hung server): twenty fetches at once make one attempt."""
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = PostgresFeatures(
        f"postgresql://postgres@127.0.0.1:{port}/test", SPEC, schema="public", connect_timeout_s=0.3
    )
    try:
        await store.open()
        assert not store.up and len(accepted) == 1
        await asyncio.sleep(0.6)  # past the retry period
        started = time.monotonic()
        results = await asyncio.gather(
            *(store.fetch(PROFILE, EntityRef("acme", 1)) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, FeaturesUnavailable) for r in results)
        assert time.monotonic() - started < 1.0  # bounded by fetch_timeout_s, not piled up
        await asyncio.sleep(0.7)  # the one attempt's connect timeout runs out in the background
        assert len(accepted) == 2
    finally:
        await store.close()
        for writer in accepted:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
