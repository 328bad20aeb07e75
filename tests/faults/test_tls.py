"""TLS end to end: ``amqps://`` to a private RabbitMQ node and ``rediss://`` to a private
redis-server, both demanding a client certificate, with certificates made by ``openssl``
for this module only; heartbeats on; and no password in a ``repr``, an error or a log.

The servers are this module's own (``servers.RabbitNode`` / ``servers.RedisServer`` on
free loopback ports), never the machine's broker; they are stopped and their files,
like the certificates, deleted at the end, even after a failure.
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from taskq import TaskQueue, Worker
from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.amqp_options import DEFAULT_HEARTBEAT
from taskq.errors import BrokerConnectionError, ConfigurationError, StoreError
from taskq.stores.redis import RedisStore
from taskq.topology import Topology
from taskq.urls import mask_url, scrub
from tests.conftest import REQUIRED, delete_redis_keys, remove_app
from tests.faults.servers import RabbitNode, RedisServer, free_port, rabbitmq_available

AMQP_PASSWORD = f"amqp-pw-{uuid.uuid4().hex[:12]}"
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex[:12]}"
KEY_PASSPHRASE = f"key-pass-{uuid.uuid4().hex[:12]}"
SECRETS = (AMQP_PASSWORD, REDIS_PASSWORD, KEY_PASSPHRASE)
#: A refused handshake must fail at once, not after a reconnect loop or a time-out.
PROMPT = 5.0


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
    pytest.skip(reason)


# -- certificates -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for localhost / 127.0.0.1 and a client certificate
    signed by it, the client key also encrypted, and a second CA that signed nothing."""

    dir: Path

    def __call__(self, name: str) -> str:  # pki("ca.pem") -> "<dir>/ca.pem"
        return str(self.dir / name)


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}")


def _make_pki(directory: Path) -> Pki:
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *curve, "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=taskq test {ca}", cwd=directory)  # fmt: skip
    leaves = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for leaf, extensions in leaves.items():
        (directory / f"{leaf}.ext").write_text(f"basicConstraints=CA:FALSE\n{extensions}")
        _openssl("req", "-new", *curve, "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr",
                 "-subj", f"/CN=taskq test {leaf}", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{leaf}.ext",
                 "-out", f"{leaf}.pem", cwd=directory)  # fmt: skip
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{KEY_PASSPHRASE}",
             "-out", "client-encrypted.key", cwd=directory)  # fmt: skip
    return Pki(directory)


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    if shutil.which("openssl") is None:
        _unavailable("the openssl command is not installed (apt-get install openssl)")
    with tempfile.TemporaryDirectory(prefix="taskq-tls-") as directory:
        yield _make_pki(Path(directory))


# -- private servers --------------------------------------------------------------------


@dataclass
class TlsRabbit:
    node: RabbitNode
    tls_port: int
    user: str = "taskq-tls"

    def url(self, pki: Pki, **options: str) -> str:
        query = {
            "cafile": pki("ca.pem"),
            "certfile": pki("client.pem"),
            "keyfile": pki("client.key"),
        }
        query.update(options)
        return (
            f"amqps://{self.user}:{AMQP_PASSWORD}@localhost:{self.tls_port}/"
            f"?{urlencode({k: v for k, v in query.items() if v})}"
        )

    def connections(self) -> list[dict[str, str]]:
        """The node's client connections: user, TLS or not, the client certificate's
        subject, the negotiated heartbeat (``timeout``), as rabbitmqctl tells them."""
        fields = ("user", "ssl", "peer_cert_subject", "timeout")
        out = self.node.ctl("list_connections", *fields, "--no-table-headers")
        return [dict(zip(fields, line.split("\t"), strict=True)) for line in out.splitlines()]


@pytest.fixture(scope="module")
def tls_rabbit(pki: Pki) -> Iterator[TlsRabbit]:
    """A node whose TLS listener wants a client certificate signed by ``pki``'s CA;
    its plain listener (loopback) serves only ``rabbitmqctl``'s start-up check."""
    if not rabbitmq_available():
        _unavailable("rabbitmq-server is not installed: the TLS tests run their own node")
    tls_port = free_port()
    config = [
        f"listeners.ssl.default = 127.0.0.1:{tls_port}",
        f"ssl_options.cacertfile = {pki('ca.pem')}",
        f"ssl_options.certfile = {pki('server.pem')}",
        f"ssl_options.keyfile = {pki('server.key')}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
    ]
    with RabbitNode(config=config) as node:
        rabbit = TlsRabbit(node, tls_port)
        node.ctl("add_user", rabbit.user, AMQP_PASSWORD)
        node.ctl("set_permissions", "-p", "/", rabbit.user, ".*", ".*", ".*")
        yield rabbit


@pytest.fixture(scope="module")
def tls_redis(pki: Pki) -> Iterator[RedisServer]:
    """A redis-server on TLS only (``--port 0``), client certificates required."""
    port = free_port()
    args = [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", pki("server.pem"),
        "--tls-key-file", pki("server.key"),
        "--tls-ca-cert-file", pki("ca.pem"),
        "--tls-auth-clients", "yes",
        "--requirepass", REDIS_PASSWORD,
    ]  # fmt: skip
    with RedisServer(port=port, args=args) as server:
        yield server


def redis_url(server: RedisServer, pki: Pki, **options: str) -> str:
    query = {
        "ssl_ca_certs": pki("ca.pem"),
        "ssl_certfile": pki("client.pem"),
        "ssl_keyfile": pki("client.key"),
        "ssl_cert_reqs": "required",
    }
    query.update(options)
    return (
        f"rediss://:{REDIS_PASSWORD}@localhost:{server.port}/0"
        f"?{urlencode({k: v for k, v in query.items() if v})}"
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into: {text[:300]}"


# -- the round trip ---------------------------------------------------------------------


async def test_a_task_round_trips_over_amqps_and_rediss_with_client_certificates(
    pki: Pki,
    tls_rabbit: TlsRabbit,
    tls_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an app on amqps:// and rediss://, client certificates on both, the Redis
    # client key encrypted (its passphrase in the URL), no heartbeat= in the URL
    caplog.set_level(logging.DEBUG)
    exchange = f"taskq-tls-{uuid.uuid4().hex[:8]}"
    store_url = redis_url(
        tls_redis, pki, ssl_keyfile=pki("client-encrypted.key"), ssl_password=KEY_PASSPHRASE
    )
    app = TaskQueue(broker=tls_rabbit.url(pki), store=store_url, exchange=exchange)

    @app.task(name="tls.add")
    async def add(x: int, y: int) -> int:
        return x + y

    started = time.monotonic()
    try:
        # When a task is sent and a worker of the same app runs it
        async with app, Worker(app, concurrency=2):
            handle = await add.delay(2, 3)
            # Then its result comes back through the store
            assert await handle.result(timeout=20) == 5
            status = await handle.status()
            assert status is not None and status.attempts == 1
            # ...over TLS connections that showed the client certificate, with
            # heartbeats on at taskq's default
            connections = tls_rabbit.connections()
            assert len(connections) >= 2  # publishing and consuming
            for connection in connections:
                assert connection["user"] == tls_rabbit.user
                assert connection["ssl"] == "true"
                assert "taskq test client" in connection["peer_cert_subject"]
                assert connection["timeout"] == str(DEFAULT_HEARTBEAT)
            # and nothing shows a password or the key's passphrase
            assert_no_secret(repr(app), repr(app.broker), repr(app.store), str(handle))
    finally:
        await remove_app(app, [add.name], None)
        await delete_redis_keys(store_url, exchange)
    elapsed = time.monotonic() - started
    assert_no_secret(caplog.text, *capsys.readouterr())
    print(f"TLS round trip: {elapsed:.2f}s")


async def only_connection(rabbit: TlsRabbit, broker: AmqpBroker) -> dict[str, str]:
    """Connect ``broker`` (publishing only: one connection) and return how the node sees
    it; closes it."""
    try:
        await broker.connect()
        (connection,) = rabbit.connections()
        return connection
    finally:
        await broker.close()


async def test_the_url_heartbeat_wins_over_the_default(pki: Pki, tls_rabbit: TlsRabbit) -> None:
    broker = AmqpBroker(tls_rabbit.url(pki, heartbeat="7"), Topology("taskq-tls-hb"))
    assert (await only_connection(tls_rabbit, broker))["timeout"] == "7"


async def test_an_ssl_context_can_carry_what_the_url_cannot(
    pki: Pki, tls_rabbit: TlsRabbit
) -> None:
    # An encrypted client key: its passphrase goes in through an SSLContext
    context = ssl.create_default_context(cafile=pki("ca.pem"))
    key = pki("client-encrypted.key")
    context.load_cert_chain(pki("client.pem"), key, password=KEY_PASSPHRASE)
    url = tls_rabbit.url(pki, cafile="", certfile="", keyfile="")
    broker = AmqpBroker(url, Topology("taskq-tls-ctx"), ssl_context=context)
    connection = await only_connection(tls_rabbit, broker)
    assert connection["ssl"] == "true" and "taskq test client" in connection["peer_cert_subject"]


# -- refused handshakes -----------------------------------------------------------------


async def refused(connect: Awaitable[object], error: type[Exception]) -> str:
    """The message of the ``error`` that ``connect`` raises at once (no reconnect loop,
    no time-out), checked for secrets."""
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await connect
    assert time.monotonic() - started < PROMPT
    message = str(caught.value)
    assert_no_secret(message)
    return message


async def test_a_broker_certificate_from_another_ca_fails_clearly(
    pki: Pki, tls_rabbit: TlsRabbit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = tls_rabbit.url(pki, cafile=pki("other-ca.pem"))
    app = TaskQueue(broker=url, store="memory://", exchange="taskq-tls-wrong-ca")
    message = await refused(app.connect(), BrokerConnectionError)
    assert message.startswith(f"TLS with RabbitMQ at {mask_url(url)} failed")
    assert "certificate verify failed" in message and "cafile" in message
    assert_no_secret(repr(app), caplog.text)
    await app.close()


async def test_a_client_without_the_certificate_the_broker_wants_is_refused(
    pki: Pki, tls_rabbit: TlsRabbit
) -> None:
    # In TLS 1.3 the broker checks the client's certificate after the client finished
    # its handshake: the client sees an alert or a reset, depending on timing.
    url = tls_rabbit.url(pki, certfile="", keyfile="")
    broker = AmqpBroker(url, Topology("taskq-tls-no-cert"))
    assert mask_url(url) in await refused(broker.connect(), BrokerConnectionError)
    await broker.close()


async def test_a_redis_certificate_from_another_ca_fails_clearly(
    pki: Pki, tls_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = redis_url(tls_redis, pki, ssl_ca_certs=pki("other-ca.pem"))
    store = RedisStore(url)
    message = await refused(store.connect(), StoreError)
    assert message.startswith(f"status store {mask_url(url)} failed")
    assert "certificate verify failed" in message
    assert_no_secret(repr(store), caplog.text)


# -- options checked where the URL is given ---------------------------------------------


def test_tls_options_on_a_plain_url_are_refused_not_ignored(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="use amqps://"):
        AmqpBroker(f"amqp://u:{AMQP_PASSWORD}@h/?cafile={pki('ca.pem')}", Topology("t"))
    with pytest.raises(ConfigurationError, match="use rediss://"):
        RedisStore(f"redis://:{REDIS_PASSWORD}@h/0?ssl_ca_certs={pki('ca.pem')}")
    with pytest.raises(ConfigurationError, match="use amqps://"):
        AmqpBroker("amqp://h/", Topology("t"), ssl_context=ssl.create_default_context())


def test_a_certificate_file_that_cannot_be_read_is_named(pki: Pki) -> None:
    missing = pki("missing.pem")
    with pytest.raises(ConfigurationError, match=re.escape(f"cafile={missing} cannot be read")):
        TaskQueue(broker=f"amqps://u:{AMQP_PASSWORD}@h/?cafile={missing}", store="memory://")
    url = f"rediss://h/0?ssl_certfile={missing}&ssl_password={KEY_PASSPHRASE}"
    with pytest.raises(ConfigurationError) as caught:
        TaskQueue(broker="memory://", store=url)
    assert f"ssl_certfile={missing} cannot be read" in str(caught.value)
    assert_no_secret(str(caught.value))


def test_an_encrypted_key_without_its_passphrase_is_refused_not_prompted_for(pki: Pki) -> None:
    key = pki("client-encrypted.key")
    with pytest.raises(ConfigurationError, match="ssl_context"):
        AmqpBroker(f"amqps://h/?certfile={pki('client.pem')}&keyfile={key}", Topology("t"))
    with pytest.raises(ConfigurationError, match="ssl_password="):
        RedisStore(f"rediss://h/0?ssl_certfile={pki('client.pem')}&ssl_keyfile={key}")


@pytest.mark.parametrize("value", ["", "abc", "2.5", "-1", "65536"])
def test_a_heartbeat_aiormq_would_read_as_off_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="heartbeat"):
        AmqpBroker(f"amqp://h/?heartbeat={value}", Topology("t"))


def test_query_secrets_are_masked_and_certificate_paths_shown() -> None:
    url = "rediss://:pw@h:6380/0?ssl_certfile=/etc/c.pem&ssl_password=k%40y&db=1"
    assert mask_url(url) == "rediss://:***@h:6380/0?ssl_certfile=/etc/c.pem&ssl_password=***&db=1"
    assert scrub(f"{url} failed: bad passphrase k@y (k%40y)", url) == (
        f"{mask_url(url)} failed: bad passphrase *** (***)"
    )
