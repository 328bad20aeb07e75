"""Bringing a store's schema to :data:`~taskq.stores.postgres_schema.LATEST`: on a
store's first connect, or explicitly with ``taskq store migrate`` where apps may not
create tables (see :mod:`taskq.stores.postgres_schema`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from taskq.errors import StoreError
from taskq.logs import get_logger
from taskq.stores.postgres_schema import LATEST, MIGRATIONS, migration_sql, quote

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection of its own (``taskq store migrate``) or one from a store's pool.
    AnyConnection = asyncpg.Connection | PoolConnectionProxy

log = get_logger(__name__)


class SchemaTooNew(StoreError):
    """The schema was migrated by a newer taskq: refused, never downgraded."""


async def schema_version(conn: AnyConnection, schema: str) -> int:
    """The schema's version; 0 when it has no ``schema_version`` table (or no schema)."""
    # From pg_tables (read with the statement's snapshot), not to_regclass(), whose
    # catalog cache may not have seen a table another process just created: after
    # waiting for its advisory lock, we must.
    exists = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables"
        " WHERE schemaname = $1 AND tablename = 'schema_version')",
        schema,
    )
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {quote(schema)}.schema_version")
    return int(version or 0)


def check_version(schema: str, version: int) -> None:
    if version > LATEST:
        raise SchemaTooNew(
            f"the status store schema {schema!r} is at version {version}, newer than "
            f"version {LATEST} that this taskq knows: upgrade taskq (migrations only go forward)"
        )


async def migrate(conn: AnyConnection, schema: str) -> tuple[int, int]:
    """Apply the missing migrations, each in a transaction of its own under an advisory
    lock on the schema's name (processes starting together wait for the first, then
    find nothing left to do); ``(version before, version after)``. A schema newer than
    :data:`LATEST` raises :class:`SchemaTooNew`."""
    before = await schema_version(conn, schema)
    check_version(schema, before)
    try:
        return before, await _apply(conn, schema, before)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StoreError(
            f"the status store schema {schema!r} is at version {before}, this taskq needs "
            f"version {LATEST}, and this database user may not migrate it ({exc}): run "
            "`taskq store migrate` as a user that may"
        ) from exc


async def _apply(conn: AnyConnection, schema: str, version: int) -> int:
    while version < LATEST:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"taskq:{schema}"
            )
            version = await schema_version(conn, schema)  # another process may have run it
            check_version(schema, version)
            if version >= LATEST:
                break
            if version == 0:
                await conn.execute(
                    f"CREATE SCHEMA IF NOT EXISTS {quote(schema)};"
                    f"CREATE TABLE {quote(schema)}.schema_version ("
                    " version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            await conn.execute(migration_sql(version, schema))
            version += 1
            await conn.execute(
                f"INSERT INTO {quote(schema)}.schema_version (version) VALUES ($1)", version
            )
            log.info("store schema migrated", schema=schema, version=version)
    return version


assert len(MIGRATIONS) == LATEST
