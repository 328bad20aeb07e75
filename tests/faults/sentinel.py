"""A Redis Sentinel group of the test run's own: a primary, a replica (or more) and three
sentinels (``redis-server FILE --sentinel``), each on a free port of 127.0.0.1 with its
files in a temporary directory, all removed by :meth:`SentinelGroup.close`.

    with SentinelGroup() as group:
        store = RedisSentinelStore(group.url)        # redis+sentinel://.../taskq-master/0
        killed = group.kill_master()                 # kill -9 of the primary of now
        group.wait_failover(killed.port)             # until the sentinels name another
        killed.start()                               # back: the sentinels make it a replica
        group.wait_healthy()                         # a master with a linked replica

``down-after-milliseconds`` is 1000 (the sentinels agree the master is down 1 s after it
stopped answering) and the servers sync with ``repl-diskless-sync-delay 0`` (else a
replica's first sync waits 5 s). Nothing is saved to disk by the primary
(``--save ""``); a replica writes the ``dump.rdb`` of its sync into its own directory.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from taskq.stores.redis_sentinel import parse_url
from taskq.urls import scheme_of
from tests.faults.servers import Managed, RedisServer, ServerError

MASTER = "taskq-master"
DOWN_AFTER_MS = 1000
_SYNC = ["--repl-diskless-sync-delay", "0"]


class SentinelServer(RedisServer):
    """One sentinel watching ``master_port``. Its config file is its own: a sentinel
    rewrites it with what it learned (the master of now, the other sentinels), so a
    restarted one remembers."""

    def __init__(self, master_port: int, *, quorum: int = 2) -> None:
        super().__init__()
        self.master_port = master_port
        self.quorum = quorum
        self.config = self.dir / "sentinel.conf"

    def __repr__(self) -> str:
        return f"<SentinelServer 127.0.0.1:{self.port}>"

    def command(self) -> list[str]:
        if not self.config.exists():
            self.config.write_text(
                "\n".join(
                    [
                        f"port {self.port}",
                        "bind 127.0.0.1",
                        "daemonize no",
                        f"pidfile {self.dir / 'server.pid'}",
                        f"dir {self.dir}",
                        f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} {self.quorum}",
                        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {MASTER} 10000",
                        f"sentinel parallel-syncs {MASTER} 1",
                    ]
                )
                + "\n"
            )
        return [self._binary, str(self.config), "--sentinel"]


class SentinelGroup(Managed):
    """``replicas``: how many replicas the primary has (1 unless said)."""

    def __init__(self, replicas: int = 1) -> None:
        self.primary = RedisServer(args=_SYNC)
        self.replicas = [
            RedisServer(args=[*_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port)])
            for _ in range(replicas)
        ]
        self.sentinels = [SentinelServer(self.primary.port) for _ in range(3)]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        for server in [*self.servers, *self.sentinels]:
            server.start()
        self.wait_healthy()

    def close(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.close()

    # -- asking the sentinels --------------------------------------------------------

    def _ask(self, *command: str) -> Any:
        """``command`` answered by the first sentinel that answers."""
        errors = []
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                with redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True) as c:
                    return c.execute_command(*command)
            except redis.RedisError as exc:
                errors.append(exc)
        raise ServerError(f"no sentinel answered {command}: {errors}")

    def master_port(self) -> int:
        _, port = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def kill_master(self) -> RedisServer:
        """kill -9 of the master the sentinels name now; returns it (to start again)."""
        server = self.master()
        server.kill()
        return server

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a master other than ``old_port``; its port. (The
        leader switches first, the others up to a couple of seconds later: a client
        asking one of those meanwhile is still sent to ``old_port``, which would be an
        empty master of its own if started again by then.)"""
        deadline = time.monotonic() + timeout
        while True:
            named = set()
            for sentinel in self.sentinels:
                with contextlib.suppress(redis.RedisError):
                    with redis.Redis(port=sentinel.port, socket_timeout=1) as client:
                        _, port = client.sentinel_get_master_addr_by_name(MASTER)
                        named.add(int(port))
            if len(named) == 1 and old_port not in named:
                return named.pop()
            if time.monotonic() > deadline:
                raise ServerError(f"no failover from {old_port} in {timeout}s: {named}")
            time.sleep(0.05)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every sentinel knows the master, its replicas and the two other
        sentinels (a failover needs two of them to agree), and every replica's link is
        up."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise ServerError(f"the Sentinel group is not healthy after {timeout}s")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            for sentinel in self.sentinels:
                with redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True) as c:
                    state = c.sentinel_master(MASTER)
                if state["num-slaves"] < len(self.replicas) or state["num-other-sentinels"] < 2:
                    return False
                if state["flags"] != "master":  # no s_down / o_down / failover flags
                    return False
            master = self.master()
            with redis.Redis(port=master.port, socket_timeout=1, decode_responses=True) as c:
                info = c.info("replication")
            return bool(info["role"] == "master" and info["connected_slaves"] >= len(self.replicas))
        except (redis.RedisError, StopIteration, KeyError, ServerError):
            return False


class _MasterClient(aioredis.Redis):
    """The master's client, which closes its sentinels' clients with itself."""

    sentinel: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.sentinel.aclose()


def store_client(url: str, **options: Any) -> aioredis.Redis:
    """A plain client of the store at ``url``: its server, or for ``redis+sentinel://``
    the master its sentinels name (found again after a failover)."""
    if scheme_of(url) != "redis+sentinel":
        return aioredis.from_url(url, **options)
    address = parse_url(url)
    sentinel = Sentinel(address.sentinels, sentinel_kwargs={"socket_timeout": 1})
    client: _MasterClient = sentinel.master_for(
        address.master,
        redis_class=_MasterClient,
        db=address.db,
        password=address.password,
        **options,
    )
    client.sentinel = sentinel
    return client
