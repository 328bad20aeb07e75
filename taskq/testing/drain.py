"""Running everything a test queued, then returning: ``await taskq_drain(app)``.

A test sends tasks through the application's own code, drains, and asserts on the
outcome, with no sleeps and no polling of results. Draining starts an in-process
:class:`~taskq.worker.Worker` of the app for its duration and returns once, on several
turns of the event loop in a row, no queue of the app's tasks holds a ready message and
none is being run (a task that sends another, a retry, a workflow's next step: those
are run too, as they are queued before their parent's message is settled).
"""

from __future__ import annotations

import asyncio

from taskq.app import TaskQueue
from taskq.brokers.memory import MemoryBroker
from taskq.errors import ConfigurationError
from taskq.testing.embedded import testing_broker
from taskq.worker import Worker

#: Turns of the event loop in a row with nothing queued or running before draining ends:
#: what a finished task sets off (its settle, a callback's publish) happens within them.
QUIET_TURNS = 3

#: Seconds between two looks while tasks run (a sync task runs in a thread meanwhile).
POLL = 0.002


async def drain(app: TaskQueue, include_delayed: bool = False, *, timeout: float = 30.0) -> None:
    """Run every queued task of ``app`` (on the embedded broker) on an in-process worker
    until none is queued or running.

    Delayed tasks (``countdown``/``eta``, and retries waiting out their backoff) are
    left waiting, unless ``include_delayed=True``: then they are released at once, and
    run too, until nothing is delayed either (a failing task's retries all run, without
    their backoff). Raises ``TimeoutError`` if tasks keep coming for ``timeout`` seconds.
    """
    if not isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            f"taskq_drain runs an app on the embedded broker, not {app.broker.display_url}: "
            "use the taskq_app fixture, or `with taskq.testing.embedded(app):`"
        )
    broker = app.broker
    releaser = testing_broker(app) if include_delayed else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Worker(app):
        quiet = 0
        while quiet < QUIET_TURNS:
            busy = bool(await _unfinished(app, broker))
            if releaser is not None and releaser.delayed:
                releaser.release_delayed()
                busy = True
            quiet = 0 if busy else quiet + 1
            if busy and loop.time() > deadline:
                left = "; ".join(await _unfinished(app, broker)) or "delayed tasks keep coming"
                raise TimeoutError(f"taskq_drain: not done after {timeout:g}s: {left}")
            await asyncio.sleep(POLL if busy else 0)


async def _unfinished(app: TaskQueue, broker: MemoryBroker) -> list[str]:
    """The app's task queues holding messages, ready or being run, as lines to read."""
    left = []
    for name in app.tasks:
        info = await broker.queue_info(name)
        if info is not None and (info.ready or info.unacked):
            left.append(f"{name}: {info.ready} queued, {info.unacked} running")
    return left
