"""The rate limit schedules of :class:`~taskq.stores.postgres.PostgresStore` (see
:mod:`taskq.stores.rate_base`).

Table ``<schema>.rates``: one row per limited task, ``next_free`` (the next free slot)
and ``line`` (the end of the line of calls told to come back), in microseconds on the
PostgreSQL server's clock (``clock_timestamp()``), moved by the function
``take_start()`` under the row's lock, so workers on any number of hosts take starts
from one schedule whatever their own clocks say. A row whose times have both passed
means "start now", as a missing one does; the purge deletes it.
"""

from __future__ import annotations

import math

from taskq.ratelimit import RateLimit
from taskq.stores.postgres_mixin import PostgresPart
from taskq.stores.rate_base import StartLimits

_NOW_US = "floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"


class PostgresStartLimits(PostgresPart, StartLimits):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    async def take_start(self, key: str, limit: RateLimit, *, max_wait: float = 0.0) -> float:
        row = await self._fetchrow(
            f"SELECT {self._s}.take_start($1, $2, $3) AS wait",
            key,
            _micros(limit.spacing),
            _micros(max(0.0, max_wait)),
        )
        return int(row["wait"]) / 1_000_000

    async def _purge_rates(self) -> int:
        row = await self._fetchrow(
            f"WITH gone AS (DELETE FROM {self._s}.rates"
            f" WHERE greatest(next_free, line) < {_NOW_US} RETURNING 1)"
            " SELECT count(*) AS n FROM gone"
        )
        return int(row["n"])


def _micros(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1_000_000))
