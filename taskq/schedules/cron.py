"""Five-field cron expressions, and their ticks in a time zone, DST included.

Written here rather than taken from a library: croniter, the usual choice, was marked
unmaintained by its author in 2024 and its DST handling has open bugs (ticks repeated
or skipped around transitions); cronsim and others would be a new dependency for about
150 lines. The syntax is Vixie cron's:

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7: Sunday)

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n`` (or ``a/n``:
from ``a`` to the field's end), or a list of those joined by commas. Months and days of
the week also take their English names (``JAN``, ``mon-fri``). As in Vixie cron, when
both day-of-month and day-of-week are restricted (neither starts with ``*``), a day
matching either one fires. ``@yearly``, ``@monthly``, ``@weekly``, ``@daily`` (or
``@midnight``) and ``@hourly`` stand for their usual expressions.

DST, in the schedule's time zone (what a person reading the expression expects):

- a local time that does not exist (the clock jumps over it, e.g. 02:30 on the last
  Sunday of March in Europe/Berlin) fires at the jump, once: ``30 2 * * *`` fires at
  03:00 CEST that day, and ``*/5 * * * *`` fires once at 03:00 for the whole gap;
- a local time that happens twice (the clock goes back) fires once, at its first
  occurrence: ``30 2 * * *`` fires at 02:30 CEST, not again at 02:30 CET.

    >>> CronExpression.parse("*/15 9-17 * * mon-fri").next_after(now, ZoneInfo("UTC"))
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from taskq.errors import ConfigurationError

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: How far ahead a tick is looked for. Any expression that fires at all fires within
#: eight years (a 29 February on a given weekday: within 28 years, but day-of-month and
#: day-of-week restricted together fire on either, so at least every 29 February).
_HORIZON_DAYS = 8 * 366


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),
)


class CronError(ConfigurationError):
    """A cron expression that does not parse; the message names the field."""


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression: the set of values each field matches."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    #: 0 = Sunday ... 6 = Saturday (a 7 is read as 0).
    weekdays: frozenset[int]
    #: Day-of-month and day-of-week both restricted: a day matching either fires.
    either_day: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Raises :class:`CronError` naming the field that does not parse."""
        if not isinstance(text, str):
            raise CronError(f"a cron expression is a string, not {text!r}")
        expanded = _ALIASES.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise CronError(
                f"cron expression {text!r} has {len(parts)} fields; it needs 5: "
                "minute hour day-of-month month day-of-week (e.g. '*/5 * * * *')"
            )
        values = [
            _parse_field(part, field, text) for part, field in zip(parts, _FIELDS, strict=True)
        ]
        minutes, hours, days, months, weekdays = values
        weekdays = {0 if day == 7 else day for day in weekdays}
        expression = cls(
            text=text,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=frozenset(months),
            weekdays=frozenset(weekdays),
            either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
        )
        if not expression.either_day and not parts[2].startswith("*"):
            # Only day-of-month restricts the day: refuse a date no month has.
            longest = max(calendar.monthrange(2024, month)[1] for month in months)
            if min(days) > longest:
                raise CronError(
                    f"cron expression {text!r} never fires: no month of {parts[3]!r} "
                    f"has day {min(days)}"
                )
        return expression

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        on_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.either_day:
            return in_month or on_weekday
        return in_month and on_weekday

    def local_times(self, start: datetime) -> Iterator[datetime]:
        """Every matching wall-clock time (naive, local) from ``start`` on, in order."""
        first = start.replace(second=0, microsecond=0)
        if first < start:
            first += timedelta(minutes=1)
        day = first.date()
        for _ in range(_HORIZON_DAYS):
            if self.matches_day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        moment = datetime.combine(day, time(hour, minute))
                        if moment >= first:
                            yield moment
            day += timedelta(days=1)

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC.

        Raises :class:`CronError` if the expression never fires (``0 0 30 2 *``)."""
        after = after.astimezone(UTC)
        # No tick later than `after` has an earlier wall-clock time: after the clock
        # goes back, the repeated times fire at their first occurrence, which is past.
        for local in self.local_times(after.astimezone(zone).replace(tzinfo=None)):
            moment = resolve(local, zone)
            if moment > after:
                return moment
        raise CronError(f"cron expression {self.text!r} never fires")


def resolve(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a wall-clock time fires at in ``zone``: its only one; for a time
    the clock goes through twice, the first; for one it jumps over, the jump."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return min(first, second)  # happens twice: its first occurrence
    return _jump(min(first, second), max(first, second), zone)


def _jump(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(low, high]`` where ``zone``'s offset changes: the moment the
    clock jumps over a gap (transitions fall on whole seconds)."""
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            break
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def _parse_field(part: str, field: _Field, text: str) -> set[int]:
    values: set[int] = set()
    for item in part.split(","):
        try:
            values |= _parse_item(item, field)
        except ValueError as exc:
            raise CronError(
                f"cron expression {text!r}: {field.name} field {part!r} does not parse: {exc}"
            ) from None
    return values


def _parse_item(item: str, field: _Field) -> set[int]:
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ValueError(f"step {step_text!r} is not a positive whole number")
        step = int(step_text)
    if body == "*":
        low, high = field.low, field.high
    elif "-" in body:
        start, _, end = body.partition("-")
        low, high = _value(start, field), _value(end, field)
        if low > high:
            raise ValueError(f"range {body!r} runs backwards")
    else:
        low = _value(body, field)
        high = field.high if slash else low
    return set(range(low, high + 1, step))


def _value(text: str, field: _Field) -> int:
    lowered = text.strip().lower()
    if field.names is not None and lowered in field.names:
        return field.names[lowered]
    if not lowered.isdigit():
        raise ValueError(f"{text!r} is not a number from {field.low} to {field.high}")
    number = int(lowered)
    if not field.low <= number <= field.high:
        raise ValueError(f"{number} is outside {field.low}-{field.high}")
    return number
