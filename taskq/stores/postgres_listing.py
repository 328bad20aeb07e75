"""The filtered listing of :class:`~taskq.stores.postgres.PostgresStore` (see
:mod:`taskq.stores.listing_base`): one query, newest write first, served by an index
on ``written`` (the order of writes), or on ``(name, written)`` when a task name is
given (``taskq status --task emails.send --state failed``); the other filters are
applied on the rows the index walk meets.

Like the Redis store's recent-tasks index, it looks at the latest
:data:`LISTING_WINDOW` writes only: a range of the ``written`` index, so that a count
for the dashboard reads at most that many rows, not a day of records."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from taskq.status import TaskState, TaskStatus
from taskq.stores.listing_base import TaskFilter, TaskListing
from taskq.stores.postgres_mixin import LIVE, PostgresPart

#: Writes (of the store's sequence) a listing looks back over, as many as the Redis
#: store's index keeps.
LISTING_WINDOW = 100_000


class PostgresListing(PostgresPart, TaskListing):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    def _decode(self, row: Any) -> TaskStatus:
        raise NotImplementedError

    def _where(self, where: TaskFilter) -> tuple[str, list[Any]]:
        args: list[Any] = [LISTING_WINDOW]
        conditions: list[str] = [
            LIVE,
            f"written > (SELECT last_value FROM {self._s}.writes) - $1::bigint",
        ]
        if where.name is not None:
            args.append(where.name)
            conditions.append(f"name = ${len(args)}")
        if where.state is not None:
            args.append(where.state.value)
            conditions.append(f"state = ${len(args)}")
        if where.since is not None:
            args.append(where.since.astimezone(UTC))
            conditions.append(f"coalesce(finished_at, started_at, created_at) >= ${len(args)}")
        if where.text:
            args.append(where.text)
            conditions.append(f"(strpos(id, ${len(args)}) > 0 OR strpos(name, ${len(args)}) > 0)")
        return " AND ".join(conditions), args

    async def find_tasks(self, where: TaskFilter, *, limit: int = 50) -> list[TaskStatus]:
        if limit <= 0:
            return []
        condition, args = self._where(where)
        rows = await self._fetch(
            f"SELECT * FROM {self._s}.tasks WHERE {condition}"
            f" ORDER BY written DESC LIMIT ${len(args) + 1}",
            *args,
            limit,
        )
        return [self._decode(row) for row in rows]

    async def count_tasks(self, where: TaskFilter) -> dict[TaskState, int]:
        condition, args = self._where(where)
        rows = await self._fetch(
            f"SELECT state, count(*) AS n FROM {self._s}.tasks WHERE {condition} GROUP BY state",
            *args,
        )
        counts = dict.fromkeys(TaskState, 0)
        for row in rows:
            if row["state"] in TaskState._value2member_map_:
                counts[TaskState(row["state"])] = int(row["n"])
        return counts
