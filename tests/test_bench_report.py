"""The bench's report and process figures without a run: a round without a ceiling
(a store other than Redis) keeps every key, with the reason; the process tree's PSS
counts a child. No speed is asserted."""

from __future__ import annotations

import json
import os
import sys

from taskq.bench.ceiling import absent_reason
from taskq.bench.config import BenchConfig
from taskq.bench.drain import Drained
from taskq.bench.latency import Latency, Percentiles
from taskq.bench.procs import ProcessGroup, pss_mib, tree
from taskq.bench.raw import RawRates
from taskq.bench.report import Round, SequentialFigures, summary, table
from taskq.bench.sequential import Sequential
from tests.helpers import eventually


def a_round(*, ceiling: Drained | None, absent: str | None) -> Round:
    ms = Percentiles(1.0, 2.0, 3.0)
    return Round(
        raw=RawRates(publish_per_s=4000.0, consume_per_s=8000.0),
        sequential=SequentialFigures(
            taskq=Sequential(900.0, 1.1),
            taskq_asyncio=Sequential(800.0, 1.2),
            raw=Sequential(1000.0, 1.0),
            raw_uvloop=Sequential(1100.0, 0.9),
        ),
        enqueue_concurrent=3000.0,
        enqueue_bulk=6000.0,
        drain=Drained(5000.0, 150.0),
        latency=Latency(ms, ms),
        raw_latency=Percentiles(0.8, 1.5, 2.5),
        worker_rss_mib=50.0,
        tree_pss_mib=70.0,
        ceiling=ceiling,
        ceiling_absent=absent,
    )


def test_only_a_redis_store_has_a_ceiling() -> None:
    assert absent_reason(BenchConfig(store_url="redis://127.0.0.1:6379/0")) is None
    assert absent_reason(BenchConfig(store_url="rediss://example.com:6380/0")) is None
    reason = absent_reason(BenchConfig(store_url="postgresql://127.0.0.1/test"))
    assert reason is not None and "postgresql://" in reason and "Redis" in reason


def test_a_round_without_a_ceiling_keeps_every_key_with_the_reason() -> None:
    reason = "the ceiling writes records with the Redis store's scripts"
    config = BenchConfig(rounds=2)
    result = summary(config, [a_round(ceiling=None, absent=reason)] * 2)

    assert result["ceiling"] == {"drain_per_s": None, "cpu_us_per_task": None, "absent": reason}
    assert result["ratios"]["drain_vs_ceiling"] is None
    assert json.loads(json.dumps(result)) == result
    assert f"(no ceiling: {reason})" in table(result)


def test_the_ratios_of_a_round_with_a_ceiling() -> None:
    result = summary(BenchConfig(), [a_round(ceiling=Drained(6250.0, 100.0), absent=None)])

    assert result["ceiling"] == {"drain_per_s": 6250.0, "cpu_us_per_task": 100.0, "absent": None}
    ratios = result["ratios"]
    assert ratios["drain_vs_ceiling"] == 0.8  # 5,000 / 6,250
    assert ratios["enqueue_sequential_vs_raw"] == 0.9  # 900 / 1,000 (one at a time)
    assert ratios["sequential_p50_vs_raw_asyncio"] == 1.2  # 1.2 ms / 1.0 ms
    assert ratios["sequential_p50_vs_raw_uvloop"] == 1.222  # 1.1 ms / 0.9 ms
    assert ratios["latency_start_p50_vs_raw_deliver"] == 1.25  # 1.0 ms / 0.8 ms
    assert result["raw"]["latency_deliver_ms"] == {"p50": 0.8, "p95": 1.5, "p99": 2.5}
    assert result["taskq"]["tree_pss_mib"] == 70.0


async def test_the_tree_pss_counts_the_children_of_a_process() -> None:
    group = ProcessGroup(BenchConfig())
    # A parent that starts a child and waits: the tree is the two of them. The child
    # lives until its parent is gone (a pipe closed by subprocess.run ended it at once,
    # sometimes before the test saw it).
    child = "import os, sys, time\nwhile os.getppid() == int(sys.argv[1]): time.sleep(0.1)"
    script = (
        "import os, subprocess, sys; "
        f"subprocess.run([sys.executable, '-c', {child!r}, str(os.getpid())])"
    )
    parent = await group._spawn([sys.executable, "-c", script])
    try:

        async def pids() -> list[int]:
            return tree(parent.pid)

        await eventually(pids, lambda found: len(found) == 2, timeout=10)
        own = pss_mib(os.getpid())
        assert own is not None and own > 0
        sizes = [pss_mib(pid) for pid in tree(parent.pid)]
        total = group.tree_pss_mib()
        assert total is not None and all(s is not None and s > 0 for s in sizes)
        assert total > max(s for s in sizes if s is not None)
    finally:
        await group.stop()
