"""A TCP proxy on 127.0.0.1 that breaks connections on demand, for fault tests.

Clients connect to the proxy instead of the server; every connection is forwarded to
``upstream`` (also on loopback) until the test says otherwise:

    with FaultProxy(("127.0.0.1", node.port)) as proxy:
        url = proxy.url(node.amqp_url)        # same URL, the proxy's port
        proxy.cut()          # reset every open connection (new ones go through)
        proxy.refuse()       # and refuse new ones until resume(): a server that is down
        proxy.stall()        # black hole: sockets stay open, nothing is forwarded
        proxy.stall(upstream=False)  # only server -> client: requests arrive, no answer
        proxy.slow(0.05)     # 50 ms added to every chunk, each way
        proxy.resume()       # forward normally again (held bytes go on)

It runs its own event loop in a daemon thread, so it keeps forwarding while the test's
loop is busy (publishing thousands of tasks, or blocked in a subprocess call), and its
methods are plain calls usable from sync and async tests alike. A stall holds bytes
back instead of dropping them: a short stall is just lag, while a long one lets the
client's heartbeat give up on a half-open connection, as across a dead network path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tests.faults.servers import Managed

T = TypeVar("T")

_CHUNK = 65536


@dataclass(eq=False)
class _Pipe:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()  # RST, no FIN: as when a link dies
        for task in self.tasks:
            task.cancel()


class FaultProxy(Managed):
    """See the module docstring. ``listen_port`` defaults to a free one."""

    def __init__(self, upstream: tuple[str, int], *, listen_port: int = 0) -> None:
        host, _ = upstream
        if not (host == "localhost" or host.startswith("127.")):
            raise ValueError(f"fault tests only proxy to loopback, not {host}")
        self.upstream = upstream
        self._listen_port = listen_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[_Pipe] = set()
        # Gates per direction: set = forwarding, clear = stalled.
        self._up_open: asyncio.Event | None = None
        self._down_open: asyncio.Event | None = None
        self._refusing = False
        self._delay = 0.0
        #: What happened, for the test's figures.
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self.bytes_up = 0
        self.bytes_down = 0

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.upstream[0]}:{self.upstream[1]}>"

    # -- running ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._up_open, self._down_open = asyncio.Event(), asyncio.Event()
        self._up_open.set()
        self._down_open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.abort()
        self._pipes.clear()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _do(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self._call(run())

    def url(self, url: str) -> str:
        """``url`` pointed at the proxy: same scheme, credentials, path and query."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults -------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return self._do(lambda: len(self._pipes))

    def cut(self) -> int:
        """Reset every open connection now; returns how many. New connections are
        accepted (unless :meth:`refuse` is in force)."""

        def cut() -> int:
            pipes = list(self._pipes)
            for pipe in pipes:
                pipe.abort()
            self._pipes.clear()
            self.cuts += 1
            return len(pipes)

        return self._do(cut)

    def refuse(self) -> int:
        """Cut every connection and refuse new ones until :meth:`resume`."""

        def refuse() -> None:
            self._refusing = True

        self._do(refuse)
        return self.cut()

    def stall(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """Stop forwarding (client -> server with ``upstream``, server -> client with
        ``downstream``) while keeping every socket open; new connections are accepted
        and stall too."""

        def stall() -> None:
            assert self._up_open is not None and self._down_open is not None
            if upstream:
                self._up_open.clear()
            if downstream:
                self._down_open.clear()

        self._do(stall)

    def slow(self, delay: float) -> None:
        """Hold every chunk ``delay`` seconds before forwarding it."""

        def slow() -> None:
            self._delay = delay

        self._do(slow)

    def resume(self) -> None:
        """Forward normally: no stall, no delay, new connections accepted."""

        def resume() -> None:
            assert self._up_open is not None and self._down_open is not None
            self._refusing = False
            self._delay = 0.0
            self._up_open.set()
            self._down_open.set()

        self._do(resume)

    # -- forwarding ---------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        pipe = _Pipe(client=writer)
        self._pipes.add(pipe)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._pipes.discard(pipe)
            writer.transport.abort()  # the server is down: so is the proxy, to the client
            return
        pipe.server = up_writer
        if pipe not in self._pipes:  # cut while connecting
            pipe.abort()
            return
        assert self._up_open is not None and self._down_open is not None
        pipe.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, self._up_open, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, self._down_open, up=False)),
        ]
        # AMQP and Redis never half-close: once one side is done, so is the pipe.
        await asyncio.wait(pipe.tasks, return_when=asyncio.FIRST_COMPLETED)
        pipe.abort()
        self._pipes.discard(pipe)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        *,
        up: bool,
    ) -> None:
        try:
            while True:
                await gate.wait()  # a stalled direction does not even read: TCP backs up
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self._delay:
                    await asyncio.sleep(self._delay)
                await gate.wait()  # stalled while this chunk was on its way: hold it
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # one side went away: the pipe is done
