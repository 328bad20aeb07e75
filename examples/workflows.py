"""Workflows on the embedded broker: a chain, a group, a chord, a failure with its
error callback, and a workflow sent by task name.

    .venv/bin/python examples/workflows.py

Nothing needs to be running (``memory://``); the same code runs on RabbitMQ and Redis
with URLs (see the README).
"""

from __future__ import annotations

import asyncio
import logging

import structlog

import taskq
from taskq import TaskFailed, TaskQueue, Worker

# Quiet: the prints below tell the story.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

app = TaskQueue(broker="memory://", store="memory://")


@app.task(name="shop.price")
async def price(item: str) -> int:
    return {"apple": 3, "pear": 4, "plum": 2}[item]


@app.task(name="shop.times")
async def times(value: int, n: int) -> int:
    return value * n


@app.task(name="shop.total")
def total(prices: list[int]) -> int:
    return sum(prices)


@app.task(name="shop.charge", max_retries=0)
async def charge(amount: int) -> str:
    raise RuntimeError(f"card declined for {amount}")


@app.task(name="shop.alert")
async def alert(failed_task_id: str, team: str) -> str:
    return f"paged {team} about {failed_task_id}"


async def main() -> None:
    async with app, Worker(app, concurrency=8):
        # A chain: each result is the next step's first argument.
        wf = await taskq.chain(price.s("apple"), times.s(10)).delay()
        print("chain(price('apple'), times(10))      ->", await wf.result(timeout=10))

        # A group: in parallel, results in member order.
        wf = await taskq.group(price.s(item) for item in ["apple", "pear", "plum"]).delay()
        print("group(price x 3)                      ->", await wf.result(timeout=10))

        # A chord: the callback once, with the list of results.
        wf = await taskq.chord([price.s(i) for i in ["apple", "pear", "plum"]], total.s()).delay()
        print("chord(price x 3, total)               ->", await wf.result(timeout=10))

        # Nested: a chord inside a chain; .si() ignores what came before.
        wf = await taskq.chain(
            taskq.chord([price.s("pear"), price.s("plum")], total.s()),
            times.s(3),
            times.si(1, 1),
        ).delay()
        print("chain(chord(...), times(3), times.si) ->", await wf.result(timeout=10))

        # A failing step fails the workflow; later steps never run; link_error does.
        wf = await taskq.chain(
            price.s("apple"), charge.s(), times.s(2), link_error=alert.s("payments")
        ).delay()
        try:
            await wf.result(timeout=10)
        except TaskFailed as exc:
            print("chain(..., charge, ...)               -> TaskFailed:", exc.status.error.type)
        print(
            "  error callback                      ->",
            await app.handle(f"{wf.id}.error").result(timeout=10),
        )
        status = await wf.status()
        assert status is not None
        print(
            "  states                              ->",
            [s.state.value if s else None for s in status.tasks.values()],
        )

        # By name, with an id of our own (an idempotency key).
        flow = taskq.chain(app.signature("shop.price", ["plum"]), app.signature("shop.times", [5]))
        wf = await app.send_workflow(flow, workflow_id="order-7")
        print(
            "send_workflow(..., 'order-7')         ->",
            await app.workflow("order-7").result(timeout=10),
        )


if __name__ == "__main__":
    asyncio.run(main())
