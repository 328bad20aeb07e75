"""Switching an app to the embedded broker and store for a test, and back.

The app under test is the application's own object, imported with its tasks; only what
it talks to changes. What :func:`embedded` swaps, and puts back after: ``app.broker``
(a fresh :class:`~taskq.testing.broker.TestingBroker`), ``app.store`` (a fresh
:class:`~taskq.stores.memory.MemoryStore`), ``app.events`` (in-process, if the app has
events on), ``app.settings`` (``broker_url`` and ``store_url`` read ``memory://``) and
the app's connection state. Whatever URLs the app was given, nothing reaches RabbitMQ
or Redis while it is switched, and every test starts from empty queues and an empty
store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from taskq.app import TaskQueue
from taskq.errors import ConfigurationError
from taskq.events import Events
from taskq.stores.memory import MemoryStore
from taskq.testing.broker import SentTask, TestingBroker
from taskq.urls import MEMORY_URL


@contextmanager
def embedded(app: TaskQueue) -> Iterator[TaskQueue]:
    """``app`` on a fresh embedded broker and store inside the block, as it was after.

    >>> with embedded(app):
    ...     await send_welcome(user)                  # the application's own code
    ...     await taskq_drain(app)
    """
    # The app's own attributes, put back as they were: a real connection opened before
    # the block is still there after it.
    saved = (
        app.broker,
        app.store,
        app.events,
        app.settings,
        app._connected,
        app._connect_lock,
    )
    broker = TestingBroker(app.topology, publish_timeout=app.settings.publish_timeout)
    app.broker = broker
    app.store = MemoryStore(ttl=app.settings.result_ttl)
    if app.events is not None:
        app.events = Events.for_broker(broker, app.topology.exchange)
    app.settings = app.settings.model_copy(
        update={"broker_url": MEMORY_URL, "store_url": MEMORY_URL}
    )
    app._connected = False
    app._connect_lock = asyncio.Lock()  # a lock used on another test's loop stays bound to it
    try:
        yield app
    finally:
        broker.forget_delayed()
        (
            app.broker,
            app.store,
            app.events,
            app.settings,
            app._connected,
            app._connect_lock,
        ) = saved


def testing_broker(app: TaskQueue) -> TestingBroker:
    """The broker of an app switched by :func:`embedded` (or the ``taskq_app`` fixture)."""
    if not isinstance(app.broker, TestingBroker):
        raise ConfigurationError(
            f"{app!r} is not switched to the embedded test broker: use the taskq_app "
            "fixture, or `with taskq.testing.embedded(app):`"
        )
    return app.broker


def sent_tasks(app: TaskQueue, name: str | None = None) -> list[SentTask]:
    """What ``app`` published since it was switched to the embedded broker, in order:
    each with ``.id``, ``.task``, ``.args``, ``.kwargs`` (and ``.delay``, ``.priority``);
    of task ``name`` only, if given. A task counts once, whatever its retries.

    >>> [t.args for t in sent_tasks(app, "emails.send")]
    [['0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11', 'Welcome!']]
    """
    sent = testing_broker(app).sent
    return [task for task in sent if name is None or task.task == name]
