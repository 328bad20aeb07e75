"""``taskq worker --processes 2 --metrics-port P``: one port serves every child's
figures, and a child killed with SIGKILL leaves its counts in them. Real processes on
RabbitMQ + Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import httpx

from taskq import TaskQueue
from taskq.cli import RET_OK
from tests.helpers import eventually
from tests.test_metrics import Samples, parse, value
from tests.test_supervisor import (
    Launch,
    client,
    env,
    launch,
    results,
    send_touches,
    start_worker,
)

__all__ = ["client", "env", "launch", "start_worker"]  # fixtures used here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    try:
        return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.TransportError:
        return {}


async def test_one_port_serves_both_children_and_a_killed_child_s_counts_are_kept(
    launch: Launch, client: TaskQueue
) -> None:
    port = free_port()
    sup = await launch(
        "--processes", "2", "--concurrency", "4", "--metrics-port", str(port), workers=2
    )
    first = await send_touches(client, 20)
    pids = await results(first)
    ran_in = set(pids)

    def succeeded(samples: Samples) -> float:
        return value(samples, "taskq_tasks_total", task="sup.touch", state="succeeded")

    samples = await eventually(
        lambda: asyncio.to_thread(scrape, port), lambda s: succeeded(s) == 20
    )
    assert value(samples, "taskq_task_duration_seconds_count", task="sup.touch") == 20

    # Both children ran some (a 20-task burst over 2 x 4 slots); kill one that did.
    assert ran_in <= set(sup.child_pids())
    victim = next(iter(ran_in))
    os.kill(victim, signal.SIGKILL)
    await sup.until("restarted the child", lambda p: len(p.worker_pids()) == 3)

    second = await send_touches(client, 10)
    await results(second)
    samples = await eventually(
        lambda: asyncio.to_thread(scrape, port), lambda s: succeeded(s) == 30
    )
    assert value(samples, "taskq_tasks_total", task="sup.touch", state="started") == 30
    assert value(samples, "taskq_tasks_running", task="sup.touch") == 0
    assert await sup.stop() == RET_OK


async def test_a_single_worker_serves_its_own_metrics(launch: Launch, client: TaskQueue) -> None:
    port = free_port()
    sup = await launch("--metrics-port", str(port))
    await results(await send_touches(client, 3))
    samples = await eventually(
        lambda: asyncio.to_thread(scrape, port),
        lambda s: value(s, "taskq_tasks_total", task="sup.touch", state="succeeded") == 3,
    )
    assert value(samples, "taskq_task_wait_seconds_count", task="sup.touch") == 3
    assert await sup.stop() == RET_OK
