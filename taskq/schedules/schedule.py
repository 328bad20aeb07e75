"""A periodic schedule: which task to send, with what, and when.

A schedule fires on *ticks*: instants fixed by its rule alone (``cron=`` in its
``timezone``, or ``every=`` aligned to the Unix epoch), never by when a scheduler
started. So every scheduler computes the same ticks, and a tick's task id,
``<schedule name>@<tick, ISO-8601 UTC>`` (``reports.nightly@2024-05-01T00:00:00Z``),
is the same whoever sends it: claimed once in the status store, it runs once.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskq.errors import ConfigurationError
from taskq.schedules.cron import CronExpression
from taskq.topology import check_name

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How a tick is written in task ids and in the status store: fixed width, so that
#: ticks compare as strings too (the Redis script does).
TICK_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Default bound of ``catch_up=True``: the most missed ticks sent on a takeover.
MAX_CATCH_UP = 100


def format_tick(tick: datetime) -> str:
    return tick.astimezone(UTC).strftime(TICK_FORMAT)


def parse_tick(text: str) -> datetime:
    return datetime.strptime(text, TICK_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    """A task sent on every tick of ``cron`` (in ``timezone``) or ``every``.

    Made by ``@app.periodic(...)`` or ``app.schedule(...)``, which check it; run by
    ``taskq scheduler APP_PATH`` (:class:`~taskq.schedules.scheduler.Scheduler`).

    ``catch_up``: after the schedulers were down (or during a failover), send every
    missed tick, at most ``max_catch_up`` of them (the latest); by default only the
    latest missed tick is sent, once.
    """

    name: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    catch_up: bool = False
    max_catch_up: int = MAX_CATCH_UP

    @classmethod
    def build(
        cls,
        task: str,
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
        """A checked schedule; every mistake raises :class:`ConfigurationError` saying
        how to fix it (a cron expression that does not parse: its
        :class:`~taskq.schedules.cron.CronError`)."""
        name = name or task
        check_name(name, what="schedule name")
        where = f"schedule {name!r}"
        if (cron is None) == (every is None):
            raise ConfigurationError(
                f"{where}: give cron='*/5 * * * *' or every=timedelta(...), exactly one"
            )
        if every is not None:
            if not isinstance(every, timedelta):
                raise ConfigurationError(f"{where}: every must be a timedelta, not {every!r}")
            if every < timedelta(seconds=1) or every.microseconds:
                raise ConfigurationError(
                    f"{where}: every must be a whole number of seconds, at least 1, not {every!r}"
                )
        if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise ConfigurationError(
                f"{where}: max_catch_up must be a whole number of 1 or more, not {max_catch_up!r}"
            )
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ConfigurationError(f"{where}: args must be a list, not {args!r}")
        try:
            json.dumps([list(args), dict(kwargs or {})])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: its arguments are not JSON: {exc}") from None
        schedule = cls(
            name=name,
            task=task,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            cron=cron,
            every=every,
            timezone=timezone,
            catch_up=bool(catch_up),
            max_catch_up=max_catch_up,
        )
        schedule.zone  # noqa: B018  # an unknown time zone is refused now
        if cron is not None:
            try:
                schedule.expression  # noqa: B018  # parsed now: refused where it is written
            except ConfigurationError as exc:
                raise type(exc)(f"{where}: {exc}") from None
        # A tick's task id must fit an AMQP short string, as any task id.
        schedule.task_id(datetime(2000, 1, 1, tzinfo=UTC))
        return schedule

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(
                f"schedule {self.name!r}: unknown time zone {self.timezone!r} "
                "(an IANA name such as 'UTC' or 'Europe/Berlin')"
            ) from None

    @functools.cached_property
    def expression(self) -> CronExpression:
        assert self.cron is not None
        return CronExpression.parse(self.cron)

    def describe(self) -> str:
        """``cron '*/5 * * * *' (Europe/Berlin)`` or ``every 0:00:30``."""
        if self.every is not None:
            return f"every {self.every}"
        return f"cron {self.cron!r} ({self.timezone})"

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``, in UTC."""
        if self.every is not None:
            step = int(self.every.total_seconds())
            elapsed = int((after - _EPOCH) // timedelta(seconds=1))
            return _EPOCH + timedelta(seconds=(elapsed // step + 1) * step)
        return self.expression.next_after(after, self.zone)

    def ticks(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` ticks after ``after``."""
        found: list[datetime] = []
        for _ in range(count):
            after = self.next_tick(after)
            found.append(after)
        return found

    def missed(self, last: datetime, now: datetime) -> tuple[list[datetime], int]:
        """The ticks in ``(last, now]`` to send, oldest first, and how many others are
        skipped: the latest one only, or with ``catch_up`` the latest ``max_catch_up``."""
        keep = self.max_catch_up if self.catch_up else 1
        if self.every is not None:  # arithmetic: a long outage costs nothing to count
            step = self.every
            first = self.next_tick(last)
            if first > now:
                return [], 0
            total = (now - first) // step + 1
            newest = first + (total - 1) * step
            kept = [newest - i * step for i in reversed(range(min(keep, total)))]
            return kept, total - len(kept)
        latest: deque[datetime] = deque(maxlen=keep)
        total = 0
        tick = self.next_tick(last)
        while tick <= now:
            latest.append(tick)
            total += 1
            tick = self.next_tick(tick)
        return list(latest), total - len(latest)

    def task_id(self, tick: datetime) -> str:
        """``<name>@<tick, ISO-8601 UTC>``: the same from every scheduler."""
        task_id = f"{self.name}@{format_tick(tick)}"
        if len(task_id) > 255:
            raise ConfigurationError(
                f"schedule {self.name!r}: its task ids would be {len(task_id)} characters; "
                "a task id has at most 255: shorten the name"
            )
        return task_id
