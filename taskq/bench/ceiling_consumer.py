"""One process of the bench's ceiling: the I/O a worker cannot avoid, with none of its logic.

``python -m taskq.bench.ceiling_consumer BROKER STORE QUEUE PREFIX TTL PREFETCH``

Plain aiormq consumes the task queue with the worker's prefetch; each delivery's JSON
body is decoded for its task id and name. A loop then sends, in one Redis pipeline,
the ``succeeded`` write of every task whose ``started`` was answered in the previous
round and the ``started`` write of every delivery that arrived since, written as the
worker writes them (:class:`~taskq.stores.redis_wire.ScriptRunner`): the Redis
store's own ``_WRITE`` script with the keys and arguments the store builds for the
worker (:meth:`RedisStore._keys`, :meth:`RedisStore._write_args`), so Redis does
exactly the work it does for a worker. Once the pipeline is answered, one
``basic.ack(multiple=True)`` settles every task it recorded as succeeded.

What a worker does and this does not: validation, task and future machinery per
message, retries, cancel and rate-limit checks, logging, decoding the write's reply
into a record. Where a worker could do less I/O than this (one write for a
``started`` and a ``succeeded`` that fall in the same round), the ceiling still makes
both writes: it is the bar for the worker as the issue defines it, not a lower one.

The script is loaded once (``SCRIPT LOAD``) and called with ``EVALSHA`` in the
pipeline; redis-py's script objects would ask ``SCRIPT EXISTS`` before every
pipeline, a round trip a worker does not need either. The process runs on the loop
``taskq worker`` runs on (:func:`taskq.loops.run`), connects, says ``ready`` on stdout
and consumes once it reads a line on stdin; it stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass

import aiormq
from aiormq.abc import DeliveredMessage
from redis.asyncio import ConnectionPool, Redis

from taskq import loops
from taskq.status import TaskState, utcnow
from taskq.stores.base import Write
from taskq.stores.redis import OPERATION_TIMEOUT, RedisStore
from taskq.stores.redis_packing import use_hiredis_packing
from taskq.stores.redis_scripts import _WRITE
from taskq.stores.redis_wire import ScriptRunner
from taskq.urls import split_urls


@dataclass(frozen=True)
class CeilingArgs:
    broker_url: str
    store_url: str
    queue: str
    prefix: str
    #: The store's record ttl in seconds, ``None`` for records that never expire.
    ttl: float | None
    prefetch: int

    def argv(self) -> list[str]:
        """This process's command line arguments (see the module's usage line)."""
        ttl = "" if self.ttl is None else repr(self.ttl)
        return [
            self.broker_url, self.store_url, self.queue, self.prefix, ttl, str(self.prefetch)
        ]  # fmt: skip

    @classmethod
    def parse(cls, argv: list[str]) -> CeilingArgs:
        broker, store, queue, prefix, ttl, prefetch = argv
        return cls(broker, store, queue, prefix, float(ttl) if ttl else None, int(prefetch))


#: One delivery: its tag, task id and task name.
_Task = tuple[int, str, str]


class CeilingConsumer:
    """Consume, record ``started`` and ``succeeded`` in pipelines, ack with ``multiple``."""

    def __init__(self, args: CeilingArgs) -> None:
        self.args = args
        # Only its key and argument builders are used: the exact ARGV of a worker's write.
        self.store = RedisStore(args.store_url, ttl=args.ttl, prefix=args.prefix)
        self.arrived: list[_Task] = []
        self.wake = asyncio.Event()

    async def on_message(self, message: DeliveredMessage) -> None:
        data = json.loads(message.body)
        tag = message.delivery_tag
        assert tag is not None  # a Basic.Deliver always has one
        self.arrived.append((tag, data["id"], data["task"]))
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        pool = ConnectionPool.from_url(self.args.store_url)
        use_hiredis_packing(pool)
        redis = Redis.from_pool(pool)
        connection = await aiormq.connect(split_urls(self.args.broker_url)[0])  # as raw's
        try:
            sha = await redis.script_load(_WRITE)
            channel = await connection.channel()
            await channel.basic_qos(prefetch_count=self.args.prefetch)
            await _ready_then_go()
            await channel.basic_consume(self.args.queue, self.on_message, no_ack=False)
            runner = ScriptRunner(pool, _WRITE, sha, timeout=OPERATION_TIMEOUT)
            recording = asyncio.ensure_future(self._record(runner, channel))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([recording, stopping], return_when=asyncio.FIRST_COMPLETED)
            recording.cancel()
            stopping.cancel()
            if recording.done() and not recording.cancelled():
                recording.result()  # its error, if it failed
        finally:
            await connection.close()
            await redis.aclose()

    async def _record(self, runner: ScriptRunner, channel: aiormq.abc.AbstractChannel) -> None:
        started: list[_Task] = []
        while True:
            if not started:
                await self.wake.wait()
            self.wake.clear()
            arrived, self.arrived = self.arrived, []
            stamp = self.store._stamp(utcnow())
            writes = [Write(i, n, TaskState.SUCCEEDED, result=None) for _, i, n in started]
            writes += [Write(i, n, TaskState.STARTED) for _, i, n in arrived]
            replies = await runner.run(
                [(self.store._keys(w.task_id), self.store._write_args(w, stamp)) for w in writes]
            )
            refused = [w for w, reply in zip(writes, replies, strict=True) if not reply]
            if refused:
                raise RuntimeError(f"ceiling: the store refused {refused[0]}")
            if started:
                await channel.basic_ack(max(tag for tag, _, _ in started), multiple=True)
            started = arrived


async def _ready_then_go() -> None:
    """Say ``ready`` on stdout, then wait for a line on stdin: the bench starts every
    process's consumer at once, as a forked pool's start nearly together (a process
    draining alone while another one still imports would lower the ceiling)."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def main(argv: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await CeilingConsumer(CeilingArgs.parse(argv)).run(stop)


if __name__ == "__main__":
    loops.run(main(sys.argv[1:]))
