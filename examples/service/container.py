"""The service's container: its three task apps, each built once, on first use.

Plain Python in place of a DI library: a cached property per app plays the part of
``providers.Singleton``. The API and each worker process build their own container,
and so their own app objects; what they share is the settings, the task names and the
wire format. A worker process touches only its app (``workers/scheduler.py`` builds
``scheduler`` and never connects ``critical``).

>>> container = ServiceContainer()
>>> container.scheduler is container.scheduler
True
>>> async with container:          # connects all three, closes them at the end
...     await container.scheduler.send("scheduler.notifications.fire", args=[[]])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from functools import cached_property
from types import TracebackType

from examples.service import audit
from examples.service.settings import AppSettings
from taskq import TaskQueue
from taskq.urls import MEMORY_URL

#: The apps by the name routes and URLs use.
APP_NAMES = ("critical", "scheduler", "internal")


class ServiceContainer:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.critical_settings = AppSettings.from_env("critical", environ)
        self.scheduler_settings = AppSettings.from_env("scheduler", environ)
        self._connected = AsyncExitStack()

    @cached_property
    def critical(self) -> TaskQueue:
        """Tasks that must not wait behind bulk work: their own exchange and queues."""
        return _app(self.critical_settings)

    @cached_property
    def scheduler(self) -> TaskQueue:
        """Scheduled and bulk work (notifications...)."""
        return _app(self.scheduler_settings)

    @cached_property
    def internal(self) -> TaskQueue:
        """In-process background tasks on the embedded broker; its tasks are registered
        here because only the process that built it can run them."""
        app = TaskQueue(broker=MEMORY_URL, store=MEMORY_URL, exchange="internal")
        app.task(name="internal.audit.record", max_retries=0)(audit.record)
        return app

    def app(self, name: str) -> TaskQueue:
        """The app called ``name`` (one of :data:`APP_NAMES`); KeyError for another."""
        if name not in APP_NAMES:
            raise KeyError(name)
        app: TaskQueue = getattr(self, name)
        return app

    async def __aenter__(self) -> ServiceContainer:
        """Connect every app, so a broker or store that is down fails the start."""
        async with AsyncExitStack() as stack:
            for name in APP_NAMES:
                await stack.enter_async_context(self.app(name))
            self._connected = stack.pop_all()  # all connected: closed by __aexit__
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._connected.aclose()  # in reverse order; each app closed even if one fails


def _app(settings: AppSettings) -> TaskQueue:
    return TaskQueue(
        broker=settings.broker_url, store=settings.store_url, exchange=settings.exchange
    )
