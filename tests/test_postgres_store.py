"""What the PostgreSQL store adds to the store contract (which it passes with memory and
Redis: tests/contract): the URL and the schema an app gets, migrations and
``taskq store migrate``, the purge of expired rows, the listing's indexes, a libpq
multi-host URL and TLS options, and passwords kept out of every message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from taskq import TaskQueue
from taskq.cli import RET_CONNECT, RET_OK, main
from taskq.errors import StoreError
from taskq.status import TaskState
from taskq.stores import store_from_url
from taskq.stores.base import Write
from taskq.stores.listing_base import TaskFilter
from taskq.stores.postgres import PostgresStore
from taskq.stores.postgres_purge import PURGE_BATCH
from taskq.stores.postgres_schema import LATEST, quote, schema_name
from taskq.urls import mask_url
from tests.conftest import drop_pg_schema
from tests.helpers import eventually


@pytest.fixture
def schema() -> str:
    return f"taskq_test_{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def sql(pg_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to look at the tables; the test's schema dropped after."""
    conn = await asyncpg.connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()
        await drop_pg_schema(pg_url, schema)


def with_host(url: str, netloc: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=netloc))


# -- the URL and the schema -----------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        ("taskq", "taskq"),
        ("billing-prod.eu", "billing_prod_eu"),
        ("MyApp", "myapp"),
        ("9lives", "_9lives"),
        ("a" * 80, "a" * 63),
    ],
)
def test_the_schema_is_named_after_the_exchange(exchange: str, expected: str) -> None:
    assert schema_name(exchange) == expected


def test_both_url_schemes_select_the_store_and_the_schema_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for scheme in ("postgresql", "postgres"):
        store = store_from_url(f"{scheme}://u:pw@db.internal:5432/app", prefix="orders-eu")
        assert isinstance(store, PostgresStore) and store.schema == "orders_eu"
    app = TaskQueue(store="postgresql://db/app", exchange="orders-eu", store_schema="Orders")
    assert isinstance(app.store, PostgresStore) and app.store.schema == "Orders"
    monkeypatch.setenv("TASKQ_STORE_SCHEMA", "from_env")
    app = TaskQueue(store="postgres://db/app", exchange="orders-eu")
    assert isinstance(app.store, PostgresStore) and app.store.schema == "from_env"


def test_a_multi_host_url_is_masked_host_by_host() -> None:
    url = "postgresql://app:s3cret@h1:5432,h2:5433/db?target_session_attrs=read-write"
    store = store_from_url(url)
    assert store.display_url == (
        "postgresql://app:***@h1:5432,h2:5433/db?target_session_attrs=read-write"
    )
    assert "s3cret" not in repr(store) and "s3cret" not in mask_url(url)


async def test_a_store_is_created_in_its_own_schema_with_its_version(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_url, schema=schema)
    await store.connect()
    try:
        await store.create("t1", "add")
    finally:
        await store.close()
    assert await sql.fetchval(f"SELECT max(version) FROM {quote(schema)}.schema_version") == LATEST
    assert await sql.fetchval(f"SELECT state FROM {quote(schema)}.tasks WHERE id = 't1'") == (
        "queued"
    )


async def test_processes_connecting_together_create_the_schema_once(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    stores = [PostgresStore(pg_url, schema=schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.connect() for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    versions = await sql.fetch(f"SELECT version FROM {quote(schema)}.schema_version")
    assert [row["version"] for row in versions] == list(range(1, LATEST + 1))


async def test_a_newer_schema_is_refused_with_both_versions_named(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_url, schema=schema)
    await store.connect()
    await store.close()
    await sql.execute(f"INSERT INTO {quote(schema)}.schema_version (version) VALUES (99)")
    with pytest.raises(StoreError) as caught:
        await store.connect()
    message = str(caught.value)
    assert "\n" not in message
    assert "version 99" in message and f"version {LATEST}" in message and schema in message
    await store.close()


# -- taskq store migrate --------------------------------------------------------------


def test_taskq_store_migrate_creates_the_schema_then_has_nothing_to_do(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKQ_STORE_URL", pg_url)
    monkeypatch.setenv("TASKQ_STORE_SCHEMA", schema)
    try:
        assert main(["store", "migrate"]) == RET_OK
        first = capsys.readouterr().out
        assert main(["store", "migrate"]) == RET_OK
        second = capsys.readouterr().out
    finally:
        asyncio.run(drop_pg_schema(pg_url, schema))
    assert f"schema {schema} migrated from version 0 to {LATEST}" in first
    assert f"schema {schema} at version {LATEST}, up to date" in second


def test_taskq_store_migrate_on_redis_has_no_schema_and_a_down_server_is_a_connect_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKQ_STORE_URL", redis_url)
    assert main(["store", "migrate"]) == RET_OK
    assert "no schema to migrate" in capsys.readouterr().out
    monkeypatch.setenv("TASKQ_STORE_URL", "postgresql://app:s3cret@127.0.0.1:1/db")
    assert main(["store", "migrate"]) == RET_CONNECT
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "s3cret" not in err


# -- reaching the server --------------------------------------------------------------


async def test_an_unreachable_server_fails_at_connect_without_showing_the_password() -> None:
    store = PostgresStore("postgresql://app:s3cret@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(StoreError) as caught:
        await store.connect()
    assert "127.0.0.1:1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(store), store.display_url):
        assert "s3cret" not in text
    assert caught.value.__cause__ is not None
    await store.close()


async def test_a_store_used_before_connect_says_so() -> None:
    with pytest.raises(StoreError, match="connect"):
        await PostgresStore("postgresql://127.0.0.1:1/db").get("x")


async def test_a_multi_host_url_goes_on_to_the_next_host_when_the_first_is_down(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    live = urlsplit(pg_url)
    hosts = f"127.0.0.1:1,{live.hostname}:{live.port or 5432}"
    url = with_host(pg_url, f"{live.username}@{hosts}") + "?target_session_attrs=read-write"
    store = PostgresStore(url, schema=schema)
    await store.connect()
    try:
        assert await store.create("t", "add")
        status = await store.get("t")
        assert status is not None and status.state is TaskState.QUEUED
    finally:
        await store.close()


async def test_libpq_tls_options_reach_the_driver(pg_url: str, schema: str) -> None:
    # The shared server here has no TLS: sslmode=require must be refused by it, which
    # shows the option got through; sslmode=disable connects.
    store = PostgresStore(f"{pg_url}?sslmode=require&connect_timeout=5", schema=schema)
    with pytest.raises(StoreError, match=r"(?i)ssl"):
        await store.connect()
    plain = PostgresStore(f"{pg_url}?sslmode=disable", schema=schema)
    await plain.connect()
    await plain.close()
    await drop_pg_schema(pg_url, schema)


# -- expiry and the purge -------------------------------------------------------------


async def test_the_purge_deletes_expired_rows_in_batches_and_keeps_live_ones(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    short = PostgresStore(pg_url, schema=schema, ttl=0.2)
    forever = PostgresStore(pg_url, schema=schema, ttl=None)
    await short.connect()
    await forever.connect()
    try:
        count = PURGE_BATCH + 20  # more than one batch
        await short.write_many(
            [Write(f"old-{i}", "t", TaskState.QUEUED, only_if_absent=True) for i in range(count)]
        )
        await short.create_workflow("wf", {"kind": "chain"})
        await short.join_member("wf", "0", 0, 2)
        await short.worker_transition("old-0", "w1", "t", TaskState.STARTED)
        await forever.create("kept", "t")
        await asyncio.sleep(0.3)
        assert await short.get("old-1") is None  # expired reads as absent at once
        assert await sql.fetchval(f"SELECT count(*) FROM {quote(schema)}.tasks") == count + 1
        deleted = await short.purge_expired()
        assert deleted == count + 3
        ids = [r["id"] for r in await sql.fetch(f"SELECT id FROM {quote(schema)}.tasks")]
        assert ids == ["kept"]
        assert await short.purge_expired() == 0
    finally:
        await short.close()
        await forever.close()


# -- the listing is served by indexes -------------------------------------------------


async def test_the_recent_task_listing_is_served_by_an_index(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_url, schema=schema)
    await store.connect()
    try:
        # A rare task among many: walking the write order would read every row.
        await store.write_many(
            [
                Write(
                    f"id-{i}",
                    "emails.send" if i % 100 == 0 else f"other.{i % 7}",
                    TaskState.STARTED if i % 300 else TaskState.FAILED,
                )
                for i in range(10_000)
            ]
        )
        await sql.execute(f"ANALYZE {quote(schema)}.tasks")
        failed = await store.recent(name="emails.send", state=TaskState.FAILED, limit=5)
        assert [s.state for s in failed] == [TaskState.FAILED] * 5
        assert all(s.name == "emails.send" for s in failed)
        # The store's own queries, as it sends them (the listing's window included).
        for where, index in [
            (TaskFilter(name="emails.send", state=TaskState.FAILED), "tasks_name_written"),
            (TaskFilter(), "tasks_written"),
            (TaskFilter(state=TaskState.FAILED), "tasks_written"),
        ]:
            condition, args = store._where(where)
            query = (
                f"SELECT * FROM {quote(schema)}.tasks WHERE {condition}"
                f" ORDER BY written DESC LIMIT ${len(args) + 1}"
            )
            plan = "\n".join(r[0] for r in await sql.fetch(f"EXPLAIN {query}", *args, 20))
            assert f" {index} " in plan and "Seq Scan on tasks" not in plan, plan
    finally:
        await store.close()


async def test_a_bad_url_option_is_a_configuration_error_naming_the_url_masked() -> None:
    from taskq.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="connect_timeout"):
        PostgresStore("postgresql://app:s3cret@127.0.0.1/db?connect_timeout=soon")
    store = PostgresStore("postgresql://app:s3cret@127.0.0.1/db?sslmode=sometimes")
    with pytest.raises(ConfigurationError) as caught:
        await store.connect()
    assert "sslmode" in str(caught.value) and "s3cret" not in str(caught.value)
    assert "sslpassword=***" in mask_url("postgresql://h/db?sslmode=require&sslpassword=k3y")


async def test_the_listing_looks_back_over_its_window_of_writes(
    pg_url: str, schema: str, sql: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.stores.postgres_listing.LISTING_WINDOW", 5)
    store = PostgresStore(pg_url, schema=schema)
    await store.connect()
    try:
        await store.write_many(
            [Write(f"id-{i}", "t", TaskState.QUEUED, only_if_absent=True) for i in range(10)]
        )
        listed = await store.find_tasks(TaskFilter(name="t"), limit=50)
        assert [s.id for s in listed] == [f"id-{i}" for i in range(9, 4, -1)]
        assert (await store.count_tasks(TaskFilter()))[TaskState.QUEUED] == 5
        await store.transition("id-0", "t", TaskState.STARTED)  # written again: back in
        assert [s.id for s in await store.recent(limit=2)] == ["id-0", "id-9"]
        assert await store.get("id-1") is not None  # outside the window, still there
    finally:
        await store.close()


def test_an_app_on_another_store_never_imports_the_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from taskq import TaskQueue, Worker\n"
        "app = TaskQueue(store='redis://127.0.0.1:6379/0')\n"
        "import taskq.cli, taskq.stores\n"
        "assert 'asyncpg' not in sys.modules, 'asyncpg imported'\n"
        "TaskQueue(store='postgresql://127.0.0.1/db')\n"
        "assert 'asyncpg' in sys.modules\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr


async def test_concurrent_batches_of_the_same_tasks_in_opposite_orders_never_deadlock(
    pg_url: str, schema: str, sql: asyncpg.Connection
) -> None:
    # A publisher's creates and a worker's starts of the same generated ids, at once.
    publisher = PostgresStore(pg_url, schema=schema)
    worker = PostgresStore(pg_url, schema=schema)
    await publisher.connect()
    await worker.connect()
    try:
        for batch in range(5):
            ids = [f"{batch}-{k:03}" for k in range(300)]
            creates, starts = await asyncio.gather(
                publisher.write_many([Write(t, "t", TaskState.QUEUED, True) for t in ids]),
                worker.write_many([Write(t, "t", TaskState.STARTED) for t in reversed(ids)]),
            )
            # Each answer in the order asked; every start landed (on a created record,
            # or creating it), a create only where it came first.
            assert [s.id for s in starts if s is not None] == list(reversed(ids))
            assert [s.id if s else t for s, t in zip(creates, ids, strict=True)] == ids
    finally:
        await publisher.close()
        await worker.close()


async def test_every_connected_store_purges_on_its_own(
    pg_url: str, schema: str, sql: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.stores.postgres_purge.PURGE_INTERVAL", 0.2)
    store = PostgresStore(pg_url, schema=schema, ttl=0.1)
    await store.connect()
    try:
        await store.create("gone", "t")
        table = f"{quote(schema)}.tasks"

        async def rows() -> int:
            return int(await sql.fetchval(f"SELECT count(*) FROM {table}"))

        await eventually(rows, lambda n: n == 0, timeout=10)
    finally:
        await store.close()


async def test_an_app_whose_user_may_not_create_tables_runs_on_a_migrated_schema(
    pg_url: str, schema: str, sql: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = f"taskq_app_{uuid.uuid4().hex[:8]}"
    await sql.execute(f"CREATE ROLE {role} LOGIN")
    parts = urlsplit(pg_url)
    app_url = with_host(pg_url, f"{role}@{parts.hostname}:{parts.port or 5432}")
    try:
        app_store = PostgresStore(app_url, schema=schema)
        with pytest.raises(StoreError, match="taskq store migrate") as caught:
            await app_store.connect()
        assert f"version 0, this taskq needs version {LATEST}" in str(caught.value)
        await app_store.close()

        # The owner migrates; the app's user gets rows, not DDL.
        assert (await PostgresStore(pg_url, schema=schema).migrate()).after == LATEST
        s = quote(schema)
        await sql.execute(
            f"GRANT USAGE ON SCHEMA {s} TO {role};"
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};"
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {role}"
        )
        await app_store.connect()
        try:
            assert await app_store.create("t", "work")
            done = await app_store.transition("t", "work", TaskState.STARTED)
            assert done is not None and done.attempts == 1
        finally:
            await app_store.close()
    finally:
        await sql.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
        await sql.execute(f"DROP ROLE {role}")
