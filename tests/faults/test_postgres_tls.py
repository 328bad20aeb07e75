"""The PostgreSQL store over TLS with libpq's own URL options (``sslmode``,
``sslrootcert``), against a private cluster with ``ssl=on`` and a certificate of the
test's CA (``tests/faults/test_tls.py``'s): verified, the session is encrypted; a
server certificate from another CA is refused at connect, at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from taskq.errors import StoreError
from taskq.stores.postgres import PostgresStore
from tests.conftest import REQUIRED
from tests.faults.test_tls import PROMPT, Pki, pki
from tests.pg_servers import PostgresCluster, available

__all__ = ["pki"]  # a fixture, imported for pytest


@pytest.fixture
def tls_cluster(pki: Pki) -> Iterator[PostgresCluster]:
    reason = available()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
        pytest.skip(reason)
    cluster = PostgresCluster()
    cert = cluster.own_file(pki("server.pem"), "server.pem")
    key = cluster.own_file(pki("server.key"), "server.key")
    cluster.settings = ["ssl=on", f"ssl_cert_file={cert}", f"ssl_key_file={key}"]
    with cluster:
        yield cluster


async def test_a_verified_tls_session_and_a_refused_certificate(
    tls_cluster: PostgresCluster, pki: Pki
) -> None:
    base = f"postgresql://postgres@localhost:{tls_cluster.port}/postgres"
    store = PostgresStore(f"{base}?sslmode=verify-full&sslrootcert={pki('ca.pem')}")
    await store.connect()
    try:
        assert await store.create("t", "work")
        async with store._conn_for_call() as conn:
            encrypted = await conn.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
        assert encrypted is True
    finally:
        await store.close()

    wrong = PostgresStore(f"{base}?sslmode=verify-full&sslrootcert={pki('other-ca.pem')}")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"(?i)certificate"):
        await wrong.connect()
    assert time.monotonic() - started < PROMPT
    await wrong.close()
