"""``taskq bench --store postgresql://...``: the same figures as with Redis (no speed
asserted) but the ceiling, which writes with the Redis store's scripts and says so; the
store named in its settings, and the run's schema dropped after it."""

from __future__ import annotations

import json

import asyncpg

from taskq.stores.postgres_schema import schema_name
from tests.test_bench import LATENCIES, RATES, SETTINGS, at, bench


async def test_bench_on_a_postgres_store_reports_every_figure_and_drops_its_schema(
    amqp_url: str, pg_url: str
) -> None:
    ran = await bench(amqp_url, pg_url, "--tasks", "300", "--json")

    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    for path in RATES:
        value = at(result, path)
        if path.startswith("ceiling.") or path == "ratios.drain_vs_ceiling":
            assert value is None, (path, value)
        else:
            assert isinstance(value, int | float) and value > 0, (path, value)
    assert "postgresql://" in at(result, "ceiling.absent")
    for path in LATENCIES:
        p50, p95, p99 = (at(result, f"{path}.{p}") for p in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99, (path, p50, p95, p99)
    for key in SETTINGS:
        at(result, f"settings.{key}")
    settings = result["settings"]
    assert settings["status_store"] == "postgresql" and settings["store"] == pg_url
    conn = await asyncpg.connect(pg_url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            schema_name(settings["exchange"]),
        )
    finally:
        await conn.close()
    assert left == 0
