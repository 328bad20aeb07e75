"""An app's schedules: what ``@app.periodic`` and ``app.schedule`` add, and what
``taskq scheduler`` checks against the app's tasks before it sends anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from taskq.errors import ConfigurationError, InvalidArguments
from taskq.schedules.schedule import MAX_CATCH_UP, Schedule
from taskq.task import Task

if TYPE_CHECKING:
    from taskq.app import TaskQueue

T = TypeVar("T", bound=Task[Any, Any])


class Schedules:
    """The schedules of one app, by name, in the order they were added."""

    def __init__(self) -> None:
        self._by_name: dict[str, Schedule] = {}

    def __iter__(self) -> Iterator[Schedule]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Schedule:
        return self._by_name[name]

    def add(self, schedule: Schedule) -> Schedule:
        if schedule.name in self._by_name:
            raise ConfigurationError(
                f"a schedule named {schedule.name!r} is already registered; give one of "
                "them another name with name=..."
            )
        self._by_name[schedule.name] = schedule
        return schedule

    def check(self, app: TaskQueue) -> None:
        """Refuse, with one line naming it, the first schedule whose task the app does
        not know or whose arguments do not fit that task: ``taskq scheduler`` calls this
        at start, before it sends anything (a bad schedule would otherwise fail on a
        worker at every tick)."""
        for schedule in self:
            task = app.tasks.get(schedule.task)
            if task is None:
                raise ConfigurationError(
                    f"schedule {schedule.name!r} sends task {schedule.task!r}, which the "
                    "app does not know: register it on this app with @app.task (import "
                    "its module) or fix the name"
                )
            try:
                task.validate(schedule.args, schedule.kwargs)
            except InvalidArguments as exc:
                raise ConfigurationError(
                    f"schedule {schedule.name!r}: its arguments do not fit task "
                    f"{task.name!r}: {exc}"
                ) from None


def schedule(
    app: TaskQueue,
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
    """Build, check and register a schedule of ``task`` (a task or its name) on ``app``."""
    if isinstance(task, Task):
        if task.app is not app:
            raise ConfigurationError(
                f"task {task.name!r} is registered on another app; schedule it on that one"
            )
        task_name = task.name
    elif isinstance(task, str):
        task_name = task
    else:
        raise ConfigurationError(
            f"app.schedule takes a task or a task name, not {task!r}; as a decorator, "
            "use @app.periodic(...) above @app.task"
        )
    built = Schedule.build(
        task_name,
        cron=cron,
        every=every,
        name=name,
        args=args,
        kwargs=kwargs,
        timezone=timezone,
        catch_up=catch_up,
        max_catch_up=max_catch_up,
    )
    return app.schedules.add(built)


def periodic(app: TaskQueue, **options: Any) -> Callable[[T], T]:
    """The decorator behind ``@app.periodic(...)``: registers a schedule of the task
    below it and returns that task unchanged."""

    def decorator(task: T) -> T:
        if not isinstance(task, Task):
            raise ConfigurationError(
                f"@app.periodic goes above @app.task (it schedules a task), not on {task!r}"
            )
        schedule(app, task, **options)
        return task

    return decorator
