"""Priorities on the embedded broker: urgent calls overtake the ones queued before them.

    .venv/bin/python examples/priorities.py

``max_priority=9`` makes the task's queue a priority queue (on RabbitMQ 3.x a classic
queue with ``x-max-priority``); a call sent with ``priority=0..9`` runs before every
lower one still waiting, in order within a level. ``prefetch=1`` makes a worker take
the next call only once it settled the last, so one sent later still goes first.
"""

from __future__ import annotations

import asyncio
import logging

import structlog

from taskq import ConfigurationError, TaskQueue, Worker

# The prints below tell the story; the worker's own logs would only repeat it.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

app = TaskQueue(broker="memory://", store="memory://")
ran: list[str] = []


@app.task(name="reports.build", max_priority=9, prefetch=1)
async def build_report(customer: str) -> str:
    ran.append(customer)
    return f"report for {customer}"


@app.task(name="emails.send")
async def send_email(to: str) -> None:
    """No priorities: an ordinary quorum queue, published exactly as before."""


async def main() -> None:
    # Queued before any worker runs: five routine reports, then two urgent, one sooner.
    handles = await build_report.send_many([((f"routine-{n}",), {}) for n in range(5)])
    handles.append(await build_report.send(("vip-1",), priority=9))
    handles.append(await build_report.send(("soon",), priority=5))
    handles.append(await build_report.send(("vip-2",), priority=9))

    async with Worker(app, concurrency=1):
        await asyncio.gather(*(handle.result(timeout=5) for handle in handles))
    print("ran in this order:", ", ".join(ran))

    try:
        await build_report.send(("too-high",), priority=10)
    except ConfigurationError as exc:
        print("priority=10 -> ConfigurationError:", exc)
    try:
        await send_email.send(("a@example.com",), priority=1)
    except ConfigurationError as exc:
        print("a task without max_priority -> ConfigurationError:", exc)


if __name__ == "__main__":
    asyncio.run(main())
