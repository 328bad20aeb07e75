"""The schedule records of :class:`~taskq.stores.postgres.PostgresStore` (see
:mod:`taskq.stores.schedule_base`): table ``<schema>.ticks``, one row per schedule,
moved forward only by one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the new tick is
later. No expiry."""

from __future__ import annotations

from datetime import UTC, datetime

from taskq.stores.postgres_mixin import PostgresPart
from taskq.stores.schedule_base import ScheduleRecords


class PostgresSchedules(PostgresPart, ScheduleRecords):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    async def last_tick(self, schedule: str) -> datetime | None:
        row = await self._fetchrow(
            f"SELECT tick FROM {self._s}.ticks WHERE schedule = $1", schedule
        )
        return None if row is None else row["tick"].astimezone(UTC)

    async def record_tick(self, schedule: str, tick: datetime) -> bool:
        tick = tick.astimezone(UTC).replace(microsecond=0)
        row = await self._fetchrow(
            f"INSERT INTO {self._s}.ticks AS t (schedule, tick) VALUES ($1, $2)"
            " ON CONFLICT (schedule) DO UPDATE SET tick = excluded.tick"
            " WHERE t.tick < excluded.tick RETURNING 1",
            schedule,
            tick,
        )
        return row is not None
