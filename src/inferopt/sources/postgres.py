"""The PostgreSQL reader of feature groups (asyncpg, the `features` extra).

    store = PostgresFeatures(dsn, spec, schema="risk")      # min_size, max_size, fetch_timeout_s, connect_timeout_s
    await store.open()                                     # never raises for a down server: see below
    values = await store.fetch(group, EntityRef("acme", 42))   # {column: value} or None (no row)
    store.up                                               # last known state, for a gauge
    await store.close()

A fetch runs the group's SQL with exactly two bound parameters, `$1` the tenant and `$2` the entity id, on a
pool whose connections have `search_path` set to `schema` (the groups name their tables unqualified). Values
are never formatted into SQL. Decimal becomes float, dates and times their ISO string, so that a row is
JSON-able (the Redis tier stores it as JSON) and a model sees numbers.

Errors: every failure to reach the server (refused, reset, timed out, pool closed) and every SQL error (an
undefined table or column is a bug in the spec, but this store cannot serve either way) raises
FeaturesUnavailable naming `spec.dependency`. An entity id that is not an int, or a tenant that cannot be a
query parameter, raises TypeError/ValueError: those are the caller's mistake, not the store's.

A server that is down must not keep a replica from starting, nor make every request wait on a dead socket:
when the pool cannot be made at open, or a fetch meets a dead connection, the reader marks itself down and
answers at once with FeaturesUnavailable, but for one fetch per `retry_every_s` that starts a probe (making
the pool, or one SELECT 1 through it), which the fetches meanwhile wait on: one connection attempt at a
time. asyncpg is imported when a reader is made, so `import inferopt` stays light.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from inferopt.sources.features import EntityRef, FeatureGroup, FeatureSpec, FeaturesUnavailable

log = logging.getLogger("inferopt.sources")
INSTALL_HINT = "stored features need asyncpg: pip install 'inferopt[features]'"
INT64 = (-(2**63), 2**63 - 1)


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return asyncpg


class PostgresFeatures:
    def __init__(
        self,
        dsn: str,
        spec: FeatureSpec,
        *,
        schema: str,
        min_size: int = 1,
        max_size: int = 8,
        fetch_timeout_s: float = 0.5,
        connect_timeout_s: float = 2.0,
        retry_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._asyncpg = _asyncpg()
        self._dsn = dsn
        self.spec = spec
        self.schema = schema
        self.min_size, self.max_size = min_size, max_size
        self.fetch_timeout_s = fetch_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_every_s = retry_every_s
        self._clock = clock
        self._pool: Any = None
        self._probe: asyncio.Task[None] | None = None
        self._up = False  # nothing is known to answer before open
        self._down_reason = "not opened yet"
        self._next_try = 0.0
        self._closed = False
        self._warned = False

    @property
    def up(self) -> bool:
        return self._up

    async def open(self) -> None:
        """Make the pool. A server that does not answer is logged and retried by later fetches, not raised."""
        try:
            self._pool = await self._create_pool()
        except Exception as exc:
            if not _is_connection_failure(self._asyncpg, exc) and not isinstance(exc, self._asyncpg.PostgresError):
                raise  # a malformed DSN and the like: the operator's mistake, say it at startup
            self._mark_down(_reason(exc))
            return
        self._mark_up()

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout_s)
            except Exception:
                pool.terminate()  # a dead server cannot answer the goodbye: drop the sockets
        self._up = False

    async def fetch(self, group: FeatureGroup, ref: EntityRef) -> dict[str, Any] | None:
        """The group's row for the entity as {column: value}, or None when the group has no row for it."""
        _check_ref(ref)
        asyncpg = self._asyncpg
        try:
            async with asyncio.timeout(self.fetch_timeout_s):
                pool = await self._ready_pool()
                row = await pool.fetchrow(group.sql, ref.tenant, ref.entity_id, timeout=self.fetch_timeout_s)
        except FeaturesUnavailable:
            raise
        except TimeoutError:
            raise self._down(f"no answer within {self.fetch_timeout_s:g} s") from None
        except Exception as exc:
            if _is_connection_failure(asyncpg, exc):
                raise self._down(_reason(exc)) from None
            if isinstance(exc, ValueError):  # asyncpg could not encode a parameter for the query's types
                raise ValueError(f"{ref} cannot be read from group {group.name!r}: {exc}") from None
            if isinstance(exc, asyncpg.PostgresError):
                self._mark_up()  # the server answered: it is the query that cannot be served
                raise FeaturesUnavailable(self.spec.dependency, self._sql_error(group, exc)) from None
            raise
        self._mark_up()
        return None if row is None else self._values(group, row)

    async def _ready_pool(self) -> Any:
        """The pool, once the server is known to answer. While it is down, fetches fail at once but for one per
        retry period, which starts the probe (making the pool, or one SELECT 1 through it); fetches that come
        while the probe runs wait on that same probe: one connection attempt at a time."""
        if self._closed:
            raise FeaturesUnavailable(self.spec.dependency, "the feature reader is closed")
        if self._up and self._pool is not None:
            return self._pool
        if self._probe is None:
            if self._clock() < self._next_try:
                raise FeaturesUnavailable(self.spec.dependency, f"{self._down_reason}; retrying")
            self._next_try = self._clock() + self.retry_every_s
            self._probe = asyncio.get_running_loop().create_task(self._reconnect())
            self._probe.add_done_callback(self._probed)
        # Shielded: a fetch that times out leaves the probe running (bounded by connect_timeout_s) for the fetches
        # after it.
        await asyncio.shield(self._probe)
        return self._pool

    async def _reconnect(self) -> None:
        if self._pool is None:
            pool = await self._create_pool()
            if self._closed:
                pool.terminate()
                raise FeaturesUnavailable(self.spec.dependency, "the feature reader is closed")
            self._pool = pool
        else:  # the pool reconnects its connections itself; this asks whether it can
            await self._pool.fetchval("SELECT 1", timeout=self.connect_timeout_s)

    def _probed(self, task: asyncio.Task[None]) -> None:
        self._probe = None
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._mark_up()
        elif not isinstance(error, FeaturesUnavailable):
            self._mark_down(_reason(error))

    async def _create_pool(self) -> Any:
        # The pool's own timeout bounds each connection attempt; wait_for bounds the whole (DNS, the first
        # connections, server settings).
        return await asyncio.wait_for(
            self._asyncpg.create_pool(
                self._dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout_s,
                server_settings={"search_path": self.schema},
            ),
            self.connect_timeout_s * 2,
        )

    def _values(self, group: FeatureGroup, row: Any) -> dict[str, Any]:
        if len(row) != len(group.columns):
            raise FeaturesUnavailable(
                self.spec.dependency,
                f"group {group.name!r} returned {len(row)} columns for its {len(group.columns)} features "
                f"{list(group.columns)}: fix its SQL",
            )
        return {column: self._value(group, column, value) for column, value in zip(group.columns, row, strict=True)}

    def _value(self, group: FeatureGroup, column: str, value: Any) -> Any:
        if value is None or isinstance(value, str | int | float):
            return value
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, dt.date | dt.time):  # datetime is a date
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        raise FeaturesUnavailable(
            self.spec.dependency,
            f"feature {column!r} of group {group.name!r} is a {type(value).__name__}, which a feature cannot be: "
            "cast it to a number or text in the group's SQL",
        )

    def _sql_error(self, group: FeatureGroup, exc: Exception) -> str:
        message = f"group {group.name!r}: {type(exc).__name__}: {exc}"
        if isinstance(
            exc, self._asyncpg.exceptions.UndefinedTableError | self._asyncpg.exceptions.InvalidSchemaNameError
        ):
            message += f" (tables are read from schema {self.schema!r})"
        return message

    def _down(self, reason: str) -> FeaturesUnavailable:
        self._mark_down(reason)
        return FeaturesUnavailable(self.spec.dependency, reason)

    def _mark_down(self, reason: str) -> None:
        self._down_reason = reason
        self._next_try = self._clock() + self.retry_every_s
        self._up = False
        if not self._warned:  # once per outage, not once per request
            self._warned = True
            log.warning(
                "feature store (%s) unreachable: %s; retrying every %g s",
                self.spec.dependency,
                reason,
                self.retry_every_s,
            )

    def _mark_up(self) -> None:
        if self._warned:
            self._warned = False
            log.warning("feature store (%s) is back", self.spec.dependency)
        self._up = True


def _check_ref(ref: EntityRef) -> None:
    """Refuse, before any SQL, what cannot be a parameter: Postgres would answer a type error as a SQL error
    (and a 503) for what is the request's mistake."""
    if not isinstance(ref.entity_id, int) or isinstance(ref.entity_id, bool):
        raise TypeError(f"an entity id is an int, not {type(ref.entity_id).__name__} {ref.entity_id!r}")
    if not INT64[0] <= ref.entity_id <= INT64[1]:
        raise ValueError(f"entity id {ref.entity_id} is outside the 64-bit range an id column holds")
    if not isinstance(ref.tenant, str):
        raise TypeError(f"a tenant is a str, not {type(ref.tenant).__name__} {ref.tenant!r}")
    if "\x00" in ref.tenant:
        raise ValueError("a tenant cannot contain a NUL character (PostgreSQL text cannot hold one)")


def _is_connection_failure(asyncpg: Any, exc: BaseException) -> bool:
    """Whether `exc` says the server cannot be reached (as opposed to what one query asked of it). asyncpg's
    InterfaceError covers "connection is closed" and "pool is closing"; operator intervention covers a server
    shutting down or not yet accepting connections; a client-side DataError is an InterfaceError too, but it
    is the parameter's fault."""
    if isinstance(exc, ValueError):
        return False
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InvalidAuthorizationSpecificationError
        | asyncpg.exceptions.InvalidCatalogNameError,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connecting timed out"
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"
