"""Periodic schedules on :class:`~taskq.app.TaskQueue`: ``@app.periodic`` and
``app.schedule``; the rest is :mod:`taskq.schedules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from taskq.schedules import registry as schedules
from taskq.schedules.schedule import MAX_CATCH_UP, Schedule
from taskq.task import Task

if TYPE_CHECKING:
    from taskq.app import TaskQueue

T = TypeVar("T", bound=Task[Any, Any])


class AppSchedules:
    """Mixed into :class:`~taskq.app.TaskQueue`; ``self`` is always that app, cast to
    it for the helpers that take one."""

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catch_up: bool = False,
        max_catch_up: int = MAX_CATCH_UP,
    ) -> Callable[[T], T]:
        """Send the task below on a schedule, from ``taskq scheduler APP_PATH``:
        ``@app.periodic(cron="0 3 * * *", timezone="Europe/Berlin")`` or
        ``@app.periodic(every=timedelta(seconds=30))``, above ``@app.task``. The name
        defaults to the task's. See :class:`~taskq.schedules.Schedule`."""
        return schedules.periodic(cast("TaskQueue", self), **_options(locals()))

    def schedule(
        self,
        task: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catch_up: bool = False,
        max_catch_up: int = MAX_CATCH_UP,
    ) -> Schedule:
        """:meth:`periodic` for a task or a task name, without a decorator."""
        return schedules.schedule(cast("TaskQueue", self), task, **_options(locals(), "task"))


def _options(given: dict[str, Any], *also: str) -> dict[str, Any]:
    """A method's keyword arguments from its ``locals()``: no ``self``."""
    return {key: value for key, value in given.items() if key not in ("self", *also)}
