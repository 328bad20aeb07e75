"""Periodic schedules: the cron parser and its DST rules, ticks and their task ids,
registration and its refusals, and the scheduler on the embedded broker and store
(leadership, failover, missed ticks)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from taskq import ConfigurationError, Schedule, Scheduler, TaskQueue, TaskState, Worker
from taskq.schedules.cron import CronError, CronExpression
from taskq.schedules.schedule import format_tick

BERLIN = ZoneInfo("Europe/Berlin")


def ticks(expression: str, start: datetime, count: int, zone: ZoneInfo = BERLIN) -> list[str]:
    """The next ``count`` ticks after ``start``, as local times in ``zone``."""
    cron, found = CronExpression.parse(expression), []
    for _ in range(count):
        start = cron.next_after(start, zone)
        found.append(start.astimezone(zone).strftime("%m-%d %H:%M%z"))
    return found


# -- cron expressions ----------------------------------------------------------------------


def test_fields_take_ranges_steps_lists_and_names() -> None:
    cron = CronExpression.parse("*/20 9-11,14 * jan-mar MON-fri/2")
    assert cron.minutes == (0, 20, 40)
    assert cron.hours == (9, 10, 11, 14)
    assert cron.months == {1, 2, 3}
    assert cron.weekdays == {1, 3, 5}  # Monday, Wednesday, Friday
    assert CronExpression.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert CronExpression.parse("5/15 * * * *").minutes == (5, 20, 35, 50)
    hourly = CronExpression.parse("@hourly")
    assert (hourly.minutes, hourly.hours) == ((0,), tuple(range(24)))


def test_the_next_tick_is_strictly_after_the_given_time() -> None:
    start = datetime(2025, 1, 3, 10, 0, tzinfo=UTC)  # a Friday
    assert ticks("0 10 * * *", start, 2, ZoneInfo("UTC")) == [
        "01-04 10:00+0000",
        "01-05 10:00+0000",
    ]
    assert ticks("0 9 * * mon-fri", start, 2, ZoneInfo("UTC")) == [
        "01-06 09:00+0000",
        "01-07 09:00+0000",
    ]
    assert ticks("0 0 29 2 *", start, 1, ZoneInfo("UTC")) == ["02-29 00:00+0000"]  # 2028


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either() -> None:
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)  # a Wednesday
    # The 13th, or any Friday (Vixie cron): Fri 3, Fri 10, Mon 13, Fri 17.
    assert ticks("0 0 13 * fri", start, 4, ZoneInfo("UTC")) == [
        "01-03 00:00+0000",
        "01-10 00:00+0000",
        "01-13 00:00+0000",
        "01-17 00:00+0000",
    ]


def test_a_local_time_the_clock_jumps_over_fires_at_the_jump_once() -> None:
    # Europe/Berlin, 31 March 2024: 02:00 CET becomes 03:00 CEST.
    before = datetime(2024, 3, 30, 12, tzinfo=UTC)
    assert ticks("30 2 * * *", before, 2) == ["03-31 03:00+0200", "04-01 02:30+0200"]
    # Every time in the gap fires at the jump, together, once; then on as usual.
    night = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)  # 01:30 CET
    assert ticks("*/20 * * * *", night, 4) == [
        "03-31 01:40+0100",
        "03-31 03:00+0200",
        "03-31 03:20+0200",
        "03-31 03:40+0200",
    ]


def test_a_local_time_the_clock_goes_through_twice_fires_once_at_its_first() -> None:
    # Europe/Berlin, 27 October 2024: 03:00 CEST becomes 02:00 CET.
    before = datetime(2024, 10, 26, 12, tzinfo=UTC)
    assert ticks("30 2 * * *", before, 2) == ["10-27 02:30+0200", "10-28 02:30+0100"]
    night = datetime(2024, 10, 26, 23, 50, tzinfo=UTC)  # 01:50 CEST
    assert ticks("*/20 * * * *", night, 5) == [
        "10-27 02:00+0200",
        "10-27 02:20+0200",
        "10-27 02:40+0200",
        "10-27 03:00+0100",  # the second 02:00-02:59 (CET) fires nothing
        "10-27 03:20+0100",
    ]
    # Asked from inside the second pass, the repeated times are past already.
    second_pass = datetime(2024, 10, 27, 1, 10, tzinfo=UTC)  # 02:10 CET
    assert ticks("*/20 * * * *", second_pass, 1) == ["10-27 03:00+0100"]


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("* * *", "has 3 fields"),
        ("60 * * * *", "minute field '60'"),
        ("* 24 * * *", "hour field '24'"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "step '0'"),
        ("* * * foo *", "month field 'foo'"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_its_field(expression: str, named: str) -> None:
    with pytest.raises(CronError, match=named):
        CronExpression.parse(expression)


# -- schedules -----------------------------------------------------------------------------


def test_every_ticks_are_aligned_to_the_epoch_and_ids_name_them_in_utc() -> None:
    schedule = Schedule.build("reports.build", every=timedelta(minutes=15), name="reports")
    after = datetime(2024, 5, 1, 10, 7, 31, tzinfo=UTC)
    assert [format_tick(t) for t in schedule.ticks(after, 2)] == [
        "2024-05-01T10:15:00Z",
        "2024-05-01T10:30:00Z",
    ]
    assert schedule.task_id(datetime(2024, 5, 1, 12, 15, tzinfo=BERLIN)) == (
        "reports@2024-05-01T10:15:00Z"
    )


def test_missed_ticks_are_the_latest_one_or_with_catch_up_the_latest_bounded() -> None:
    last = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    now = last + timedelta(seconds=10.5)
    every = Schedule.build("t", every=timedelta(seconds=1))
    assert every.missed(last, now) == ([last + timedelta(seconds=10)], 9)
    assert every.missed(last, last + timedelta(seconds=0.9)) == ([], 0)
    catch_up = Schedule.build("t", every=timedelta(seconds=1), catch_up=True, max_catch_up=3)
    sent, skipped = catch_up.missed(last, now)
    assert sent == [last + timedelta(seconds=n) for n in (8, 9, 10)] and skipped == 7
    cron = Schedule.build("t", cron="*/5 * * * *", catch_up=True)
    sent, skipped = cron.missed(last, last + timedelta(hours=1))
    assert len(sent) == 12 and skipped == 0 and sent[-1] == last + timedelta(hours=1)


def test_periodic_and_schedule_register_on_the_app() -> None:
    app = TaskQueue(exchange="sched-reg")

    @app.periodic(every=timedelta(seconds=30))
    @app.periodic(cron="0 3 * * *", name="reports.nightly", args=[7], timezone="Europe/Berlin")
    @app.task(name="reports.build")
    async def build(days: int = 1) -> int:
        return days

    by_name = app.schedule("reports.build", cron="@daily", name="by-name", kwargs={"days": 2})
    assert [s.name for s in app.schedules] == ["reports.nightly", "reports.build", "by-name"]
    assert app.schedules["reports.nightly"].args == (7,)
    assert by_name.task == "reports.build" and by_name.kwargs == {"days": 2}
    assert build.name == "reports.build"  # the decorator hands back the task
    app.schedules.check(app)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one"),
        ({"cron": "* * * * *", "every": timedelta(seconds=1)}, "exactly one"),
        ({"cron": "61 * * * *"}, "schedule 'x': cron expression '61 \\* \\* \\* \\*': minute"),
        ({"every": timedelta(milliseconds=1500)}, "whole number of seconds"),
        ({"every": 30}, "must be a timedelta"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "* * * * *", "max_catch_up": 0}, "max_catch_up"),
        ({"cron": "* * * * *", "args": [object()]}, "not JSON"),
        ({"cron": "* * * * *", "name": "bad name"}, "schedule name 'bad name'"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_where_it_is_written(
    options: dict[str, object], message: str
) -> None:
    app = TaskQueue(exchange="sched-bad")
    with pytest.raises(ConfigurationError, match=message):
        app.schedule("t", **{"name": "x", **options})  # type: ignore[arg-type]


def test_refusals_of_schedules_and_names() -> None:
    app = TaskQueue(exchange="sched-refuse")

    @app.task(name="t")
    async def t(n: int) -> int:
        return n

    app.schedule(t, every=timedelta(seconds=5), name="dup", args=[1])
    with pytest.raises(ConfigurationError, match="already registered"):
        app.schedule(t, every=timedelta(seconds=5), name="dup", args=[1])
    with pytest.raises(ConfigurationError, match=r"above @app\.task"):
        app.periodic(every=timedelta(seconds=5))(lambda: None)  # type: ignore[type-var]
    with pytest.raises(ConfigurationError, match="'scheduler' is taken"):
        app.task(name="scheduler")(lambda: None)
    # Known only at start: the task, and whether the arguments fit it.
    app.schedule("nobody.knows", every=timedelta(seconds=5))
    with pytest.raises(ConfigurationError, match=r"'nobody\.knows', which the app does not know"):
        app.schedules.check(app)
    other = TaskQueue(exchange="sched-args")
    other.task(name="t")(t.fn)
    other.schedule("t", every=timedelta(seconds=5), args=["not a number"])
    with pytest.raises(ConfigurationError, match="schedule 't': its arguments do not fit"):
        other.schedules.check(other)


# -- the scheduler on the embedded broker and store -------------------------------------------


@pytest_asyncio.fixture
async def app(exchange: str) -> AsyncIterator[TaskQueue]:
    application = TaskQueue(broker="memory://", store="memory://", exchange=exchange)

    @application.periodic(every=timedelta(seconds=1), name="beat")
    @application.task(name="sched.beat")
    async def beat() -> str:
        return "ok"

    await application.connect()
    yield application
    await application.broker.destroy(list(application.tasks))
    await application.close()


async def _wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _beat_ids(app: TaskQueue) -> list[str]:
    return sorted(s.id for s in await app.store.recent(name="sched.beat", limit=1000))


async def test_one_of_two_schedulers_sends_each_tick_and_a_worker_runs_it_once(
    app: TaskQueue,
) -> None:
    first = Scheduler(app, heartbeat=0.1, scheduler_id="first")
    second = Scheduler(app, heartbeat=0.1, scheduler_id="second")
    async with Worker(app, concurrency=4), first, second:
        await _wait_until(lambda: first.active)
        assert not second.active  # the line's first takes the lease; the other waits
        await asyncio.sleep(2.2)
        ids = await _beat_ids(app)
        assert len(ids) >= 2 and all(i.startswith("beat@") and i.endswith("Z") for i in ids)
        # Then the active one goes away: the other takes over, ticks keep coming.
        await first.stop()
        await _wait_until(lambda: second.active, timeout=2)
        await asyncio.sleep(2.2)
        later = await _beat_ids(app)
        assert len(later) >= len(ids) + 2
        await asyncio.sleep(0.3)
        statuses = [await app.store.get(i) for i in later]
    assert all(s is not None and s.attempts == 1 for s in statuses)  # none ran twice
    times = [datetime.fromisoformat(i.removeprefix("beat@")) for i in later]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap in (1.0, 2.0) for gap in gaps)  # consecutive ticks, one missed at most
    assert sum(gap == 2.0 for gap in gaps) <= 1


async def test_a_takeover_sends_the_latest_missed_tick_once_and_skips_older(
    app: TaskQueue,
) -> None:
    now = datetime.now(UTC)
    await app.store.record_tick("beat", now - timedelta(seconds=30))
    async with Scheduler(app, heartbeat=0.1) as scheduler:
        await _wait_until(lambda: scheduler.active)
        await asyncio.sleep(0.3)
    ids = await _beat_ids(app)
    latest_missed = now.replace(microsecond=0)
    assert ids[0] in {f"beat@{format_tick(latest_missed + timedelta(seconds=s))}" for s in (0, 1)}
    assert len(ids) <= 2  # the latest missed one, maybe the next: none of the 29 older
    last = await app.store.last_tick("beat")
    assert last is not None and format_tick(last) == ids[-1].removeprefix("beat@")


async def test_catch_up_sends_every_missed_tick_up_to_its_bound(exchange: str) -> None:
    app = TaskQueue(broker="memory://", store="memory://", exchange=exchange)
    app.task(name="sched.report")(lambda: None)
    app.schedule("sched.report", every=timedelta(seconds=1), catch_up=True, max_catch_up=5)
    now = datetime.now(UTC)
    await app.store.record_tick("sched.report", now - timedelta(seconds=20))
    async with Scheduler(app, heartbeat=0.1) as scheduler:
        await _wait_until(lambda: scheduler.active)
        await asyncio.sleep(0.3)
    sent = await app.store.recent(name="sched.report", limit=100)
    assert 5 <= len(sent) <= 6 and all(s.state is TaskState.QUEUED for s in sent)


async def test_a_schedule_seen_the_first_time_starts_with_its_next_tick(app: TaskQueue) -> None:
    started = datetime.now(UTC)
    async with Scheduler(app, heartbeat=0.1) as scheduler:
        await _wait_until(lambda: scheduler.active)
        await asyncio.sleep(1.2)
    ids = await _beat_ids(app)
    ticks = [datetime.fromisoformat(i.removeprefix("beat@")) for i in ids]
    assert ticks and all(tick > started for tick in ticks)  # nothing from before it came


async def test_a_tick_sent_twice_runs_once(app: TaskQueue) -> None:
    schedule = app.schedules["beat"]
    tick = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    task_id = schedule.task_id(tick)
    await app.send(schedule.task, task_id=task_id)
    await app.send(schedule.task, task_id=task_id)  # another scheduler, a failover
    async with Worker(app, concurrency=2):
        result = await app.handle(task_id).result(timeout=5)
        await asyncio.sleep(0.2)
    assert result == "ok"
    status = await app.store.get(task_id)
    assert status is not None and status.attempts == 1
    info = await app.broker.queue_info("sched.beat")
    assert info is not None and info.ready == 0
