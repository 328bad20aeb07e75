"""taskq in one process: tasks, a worker and their results on the embedded broker.

    .venv/bin/python examples/quickstart.py

The embedded broker and store (``memory://``) keep the real semantics (per-task queues,
acks, redelivery, dead letters) inside this process, so nothing needs to be running.
Point the same code at RabbitMQ and Redis with URLs (see the README).
"""

from __future__ import annotations

import asyncio
import logging

import structlog

from taskq import TaskFailed, TaskQueue, Worker

# An application configures logging, the library never does. Quiet here: the prints
# below tell the story (the worker would otherwise log every task and the failure's
# traceback; `taskq worker` shows what that looks like).
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

app = TaskQueue(broker="memory://", store="memory://")


@app.task
async def add(x: int, y: int) -> int:
    """Async: runs on the worker's event loop. Its name is "__main__.add"."""
    return x + y


@app.task(name="text.shout")
def shout(text: str, times: int = 1) -> str:
    """Sync: runs in the worker's thread pool."""
    return " ".join([text.upper() + "!"] * times)


@app.task(name="math.divide", retry_on=(ConnectionError,))
async def divide(x: float, y: float) -> float:
    """ZeroDivisionError is a bug, not a hiccup: only ConnectionError is retried."""
    return x / y


calls = 0


@app.task(name="net.fetch", max_retries=3, retry_backoff=0.1)
async def fetch(url: str) -> str:
    """Fails twice, then works: retried after 0.1 s, then 0.2 s (at most; with jitter)."""
    global calls
    calls += 1
    if calls < 3:
        raise ConnectionError(f"{url} did not answer")
    return f"200 OK from {url}"


async def main() -> None:
    print("calling a task calls the function:  add(1, 2) =", await add(1, 2))

    async with app, Worker(app, concurrency=4):  # the worker consumes in the background
        handle = await add.delay(1, 2)
        print(f"add.delay(1, 2)                     -> {await handle.result(timeout=5)}")

        handle = await shout.send(args=["hello"], kwargs={"times": 2}, task_id="greeting-1")
        print(f"shout.send(..., task_id=...)        -> {await handle.result(timeout=5)!r}")
        again = await shout.send(args=["hello"], task_id="greeting-1")
        print(f"the same task_id again              -> same task, not re-sent: {again == handle}")

        # By name: a sender needs only the name and JSON arguments, not the task's code.
        handle = await app.send("text.shout", args=["by name"])
        print(f"app.send('text.shout', ...)         -> {await handle.result(timeout=5)!r}")

        status = await handle.status()
        assert status is not None
        print(f"its status                          -> {status.state}, attempts {status.attempts}")

        handle = await divide.delay(1, 0)
        try:
            await handle.result(timeout=5)
        except TaskFailed as exc:
            error = exc.status.error
            assert error is not None
            what = f"{error.type}: {error.message}"
            print(f"divide.delay(1, 0)                  -> TaskFailed: {what}")
            print(f"its status                          -> {exc.status.state}, with the traceback")

        handle = await fetch.delay("https://example.com")
        print(f"fetch.delay(...) that fails twice   -> {await handle.result(timeout=5)!r}")
        status = await handle.status()
        assert status is not None
        print(f"its status                          -> {status.state}, attempts {status.attempts}")

        handle = await add.send(args=[2, 3], countdown=0.5)  # waits in the broker, not here
        status = await handle.status()
        assert status is not None
        print(
            f"add.send(..., countdown=0.5)        -> {status.state} now, then "
            f"{await handle.result(timeout=5)}"
        )

        # A handle for an id kept elsewhere (say, returned to an HTTP client earlier).
        status = await app.handle("greeting-1").status()
        assert status is not None
        print(f"app.handle('greeting-1').status()   -> {status.state}, result {status.result!r}")


if __name__ == "__main__":
    asyncio.run(main())
