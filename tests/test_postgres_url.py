"""The PostgreSQL store's URL as libpq spells it: the client options asyncpg does not
read are dropped or refused here rather than sent to the server as settings (which
refuses them with "unrecognized configuration parameter"). Against the real server."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from taskq.errors import ConfigurationError
from taskq.status import TaskState
from taskq.stores.postgres import PostgresStore
from taskq.stores.postgres_connection import driver_options
from tests.conftest import drop_pg_schema

#: What a libpq URL copied from another tool often carries; all harmless to drop.
LIBPQ_CLIENT_OPTIONS = (
    "keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3"
    "&tcp_user_timeout=9000&sslsni=1&sslcompression=0&gssencmode=prefer"
    "&channel_binding=prefer&load_balance_hosts=disable&sslmode=disable"
)


async def test_libpq_client_options_are_accepted_and_fallback_application_name_is_used(
    pg_url: str,
) -> None:
    schema = f"taskq_test_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}?{LIBPQ_CLIENT_OPTIONS}&fallback_application_name=taskq-url-test"
    store = PostgresStore(url, schema=schema)
    try:
        await store.connect()
        assert await store.create("t", "add")
        status = await store.get("t")
        assert status is not None and status.state is TaskState.QUEUED
        dsn, _ = driver_options(url)
        connection = await asyncpg.connect(dsn)
        try:
            assert await connection.fetchval("SHOW application_name") == "taskq-url-test"
        finally:
            await connection.close()
    finally:
        await store.close()
        await drop_pg_schema(pg_url, schema)


def test_requiressl_is_sslmode_require_and_an_explicit_application_name_wins() -> None:
    dsn, _ = driver_options("postgresql://h/db?requiressl=1&fallback_application_name=f")
    assert dsn.endswith("?sslmode=require&application_name=f")
    dsn, _ = driver_options("postgresql://h/db?sslmode=disable&requiressl=1")
    assert dsn.endswith("?sslmode=disable")
    dsn, _ = driver_options(
        "postgresql://h/db?fallback_application_name=f&application_name=a&search_path=x"
    )
    assert dsn.endswith("?application_name=a&search_path=x")  # other names: server settings


@pytest.mark.parametrize(
    "option",
    [
        "gssencmode=require",
        "channel_binding=require",
        "load_balance_hosts=random",
        "hostaddr=1.2.3.4",
    ],
)
def test_what_the_driver_cannot_do_is_refused_in_one_line(option: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot do") as caught:
        PostgresStore(f"postgresql://app:s3cret@127.0.0.1/db?{option}")
    assert option.split("=")[0] in str(caught.value) and "s3cret" not in str(caught.value)
