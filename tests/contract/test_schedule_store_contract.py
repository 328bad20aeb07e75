"""What every status store promises about schedules' last ticks, on MemoryStore and
RedisStore alike (fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from taskq.stores.base import StatusStore
from tests.contract.test_store_contract import make_store, store

__all__ = ["make_store", "store"]  # fixtures, imported for pytest

TICK = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


async def test_a_schedule_never_ticked_has_no_last_tick(store: StatusStore) -> None:
    assert await store.last_tick("reports.nightly") is None


async def test_a_recorded_tick_is_read_back_in_utc(store: StatusStore) -> None:
    berlin_summer = timezone(timedelta(hours=2))
    assert await store.record_tick("reports.nightly", TICK.astimezone(berlin_summer))
    last = await store.last_tick("reports.nightly")
    assert last == TICK and last.utcoffset() == timedelta(0)
    assert await store.last_tick("reports.other") is None


async def test_the_last_tick_only_moves_forward(store: StatusStore) -> None:
    later = TICK + timedelta(minutes=5)
    assert await store.record_tick("s", later)
    assert not await store.record_tick("s", TICK)  # a late scheduler's older tick
    assert not await store.record_tick("s", later)  # the same tick again
    assert await store.last_tick("s") == later
    assert await store.record_tick("s", later + timedelta(seconds=1))
    assert await store.last_tick("s") == later + timedelta(seconds=1)


async def test_concurrent_records_keep_the_latest_tick(store: StatusStore) -> None:
    ticks = [TICK + timedelta(seconds=n) for n in range(50)]
    await asyncio.gather(*(store.record_tick("s", tick) for tick in reversed(ticks)))
    assert await store.last_tick("s") == ticks[-1]


async def test_last_ticks_are_kept_whatever_the_records_ttl(make_store) -> None:  # type: ignore[no-untyped-def]
    short = await make_store(ttl=0.05)
    await short.record_tick("s", TICK)
    await asyncio.sleep(0.2)
    assert await short.last_tick("s") == TICK
