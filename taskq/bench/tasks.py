"""The bench's app, for the worker processes it starts: ``taskq.bench.tasks:app``.

One task, ``bench.noop``, that takes the payload and does nothing with it: what is
measured is taskq around a task, not the task. The workers build the app from the
``TASKQ_*`` variables the bench sets for them (broker, store, the run's exchange).
"""

from __future__ import annotations

from typing import Any

from taskq.app import TaskQueue
from taskq.bench.config import NOOP_TASK


def build_app(**options: Any) -> TaskQueue:
    """A :class:`TaskQueue` with ``options`` (else the ``TASKQ_*`` variables) and the
    no-op task registered. No retries: a failure is a bench bug, seen at once."""
    app = TaskQueue(**options)

    @app.task(name=NOOP_TASK, max_retries=0)
    async def noop(payload: str) -> None:
        """Does nothing with ``payload``: it only has to travel."""

    return app


def __getattr__(name: str) -> TaskQueue:
    # `app` is built on first access (PEP 562), from the environment as it is then:
    # the bench process imports this module for `build_app` and must not build an app
    # from whatever TASKQ_* variables it happens to have.
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
