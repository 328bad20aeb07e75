"""What a run prints: progress on stderr while it runs, then a table or one JSON object.

Ratios are a taskq rate over the raw rate of the same round (enqueue over raw
publish, drain over raw consume, ``drain_vs_ceiling`` over the ceiling's drain,
``enqueue_sequential_vs_raw`` over one raw publish at a time), or for the
``sequential_p50_vs_raw_*`` latencies taskq's one ``delay()`` over one raw publish on
the same loop, or ``latency_start_p50_vs_raw_deliver`` taskq's publish -> started p50
over a raw publish -> delivered p50 at the same rate: same broker, same machine, same
minute, so the broker's and the machine's speed divide out. Keys without a loop's
name are on the loop named in ``settings`` (``loop`` for taskq, ``raw_loop`` for
raw). With several rounds every figure is the median over the rounds, ratios included
(each round's ratio, then the median); the peak RSS and the tree's PSS are the largest
of any round.
"""

from __future__ import annotations

import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import taskq
from taskq import loops
from taskq.bench.config import (
    BULK_CHUNK,
    IN_FLIGHT,
    LATENCY_RATE,
    RAW_PREFETCH,
    WORKER_LOG_LEVEL,
    BenchConfig,
)
from taskq.bench.drain import Drained
from taskq.bench.latency import Latency, Percentiles
from taskq.bench.raw import RawRates
from taskq.bench.sequential import Sequential
from taskq.urls import mask_url, scheme_of


class Progress:
    """One line per phase on ``stream``: ``raw publish 20,000... 2,914/s``."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream

    def start(self, label: str) -> None:
        print(f"{label}... ", end="", file=self.stream, flush=True)

    def done(self, outcome: str) -> None:
        print(outcome, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


@dataclass(frozen=True)
class SequentialFigures:
    """One confirmed send at a time: taskq's ``delay()`` on the bench's loop (``taskq``)
    and on asyncio's own (``taskq_asyncio``), plain aio-pika's publish on asyncio's own
    (``raw``) and on uvloop (``raw_uvloop``, ``None`` when the bench's loop is not)."""

    taskq: Sequential
    taskq_asyncio: Sequential
    raw: Sequential
    raw_uvloop: Sequential | None


@dataclass(frozen=True)
class Round:
    """One round's figures."""

    raw: RawRates
    sequential: SequentialFigures
    enqueue_concurrent: float
    enqueue_bulk: float
    drain: Drained
    latency: Latency
    #: Plain aio-pika's publish -> delivered at the latency phase's rate: its floor.
    raw_latency: Percentiles
    worker_rss_mib: float | None
    tree_pss_mib: float | None
    #: The ceiling's drain, or ``None`` with the reason in ``ceiling_absent``.
    ceiling: Drained | None
    ceiling_absent: str | None = None

    def ratios(self) -> dict[str, float | None]:
        publish, consume = self.raw.publish_per_s, self.raw.consume_per_s
        seq = self.sequential
        raw_uvloop = seq.raw_uvloop
        return {
            "enqueue_sequential": _ratio(seq.taskq.per_s, publish),
            "enqueue_concurrent": _ratio(self.enqueue_concurrent, publish),
            "enqueue_bulk": _ratio(self.enqueue_bulk, publish),
            "drain": _ratio(self.drain.per_s, consume),
            "drain_vs_ceiling": _ratio(
                self.drain.per_s, None if self.ceiling is None else self.ceiling.per_s
            ),
            "enqueue_sequential_vs_raw": _ratio(seq.taskq.per_s, seq.raw.per_s),
            # Latencies: taskq's over raw's on the same loop; the goal is at most 1.1.
            "sequential_p50_vs_raw_asyncio": _ratio(seq.taskq_asyncio.p50_ms, seq.raw.p50_ms),
            "sequential_p50_vs_raw_uvloop": _ratio(
                seq.taskq.p50_ms, None if raw_uvloop is None else raw_uvloop.p50_ms
            ),
            "latency_start_p50_vs_raw_deliver": _ratio(
                self.latency.start.p50, self.raw_latency.p50
            ),
        }

    def figures(self) -> dict[str, Any]:
        seq = self.sequential
        raw_uvloop = seq.raw_uvloop
        return {
            "raw": {
                "publish_per_s": self.raw.publish_per_s,
                "consume_per_s": self.raw.consume_per_s,
                "publish_sequential_per_s": seq.raw.per_s,
                "publish_sequential_p50_ms": seq.raw.p50_ms,
                "publish_sequential_per_s_uvloop": None if raw_uvloop is None else raw_uvloop.per_s,
                "publish_sequential_p50_ms_uvloop": (
                    None if raw_uvloop is None else raw_uvloop.p50_ms
                ),
                "latency_deliver_ms": vars(self.raw_latency),
            },
            "taskq": {
                "enqueue_sequential_per_s": seq.taskq.per_s,
                "sequential_p50_ms": seq.taskq.p50_ms,
                "enqueue_sequential_per_s_asyncio": seq.taskq_asyncio.per_s,
                "sequential_p50_ms_asyncio": seq.taskq_asyncio.p50_ms,
                "enqueue_concurrent_per_s": self.enqueue_concurrent,
                "enqueue_bulk_per_s": self.enqueue_bulk,
                "drain_per_s": self.drain.per_s,
                "worker_cpu_us_per_task": self.drain.worker_cpu_us,
                "latency_start_ms": vars(self.latency.start),
                "latency_succeeded_ms": vars(self.latency.succeeded),
                "worker_rss_mib": self.worker_rss_mib,
                "tree_pss_mib": self.tree_pss_mib,
            },
            "ceiling": {
                "drain_per_s": None if self.ceiling is None else self.ceiling.per_s,
                "cpu_us_per_task": None if self.ceiling is None else self.ceiling.worker_cpu_us,
                "absent": self.ceiling_absent,
            },
            "ratios": self.ratios(),
        }


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


def _median(values: Sequence[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return round(statistics.median(v for v in values if v is not None), 3)


def combine(figures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rounds' figures of one shape as one: the median of each, the memory's maximum."""
    combined: dict[str, Any] = {}
    for key, first in figures[0].items():
        values = [f[key] for f in figures]
        if isinstance(first, dict):
            combined[key] = combine(values)
        elif isinstance(first, str):
            combined[key] = first  # the same in every round
        elif key in ("worker_rss_mib", "tree_pss_mib"):
            combined[key] = max((v for v in values if v is not None), default=None)
        else:
            combined[key] = _median(values)
    return combined


def summary(config: BenchConfig, rounds: Sequence[Round]) -> dict[str, Any]:
    """The JSON object ``taskq bench --json`` prints; each round's figures too when
    there were several."""
    figures = [r.figures() for r in rounds]
    result = {**combine(figures), "settings": settings(config)}
    if len(rounds) > 1:
        result["rounds"] = figures
    return result


def settings(config: BenchConfig) -> dict[str, Any]:
    """How the figures were taken: enough to take them again the same way."""
    return {
        "broker": mask_url(config.broker_url),
        "store": mask_url(config.store_url),
        "exchange": config.exchange,
        "tasks": config.tasks,
        "sequential_tasks": config.sequential_tasks,
        "latency_tasks": config.latency_tasks,
        "latency_rate_per_s": LATENCY_RATE,
        "processes": config.processes,
        "concurrency": config.concurrency,
        "prefetch": config.concurrency,
        "raw_prefetch": RAW_PREFETCH,
        "in_flight": IN_FLIGHT,
        "bulk_chunk": BULK_CHUNK,
        "payload_bytes": config.payload_bytes,
        "rounds": config.rounds,
        "queue_type": "quorum",
        "status_store": "postgresql"
        if scheme_of(config.store_url) in ("postgresql", "postgres")
        else "redis",
        "worker_log_level": WORKER_LOG_LEVEL,
        "loop": loops.loop_name(),
        "raw_loop": "asyncio",
        "python": platform.python_version(),
        "taskq": taskq.__version__,
    }


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


_STORES = {"redis": "Redis", "postgresql": "PostgreSQL"}

#: Width of the table's label column.
_WIDTH = 52


def table(result: dict[str, Any]) -> str:
    """The human form of :func:`summary`'s object."""
    s, raw, tq, ratios = result["settings"], result["raw"], result["taskq"], result["ratios"]
    ceiling = result["ceiling"]
    rounds = f", median of {s['rounds']} rounds" if s["rounds"] > 1 else ""
    bulk = f"send_many of {s['bulk_chunk']:,}"
    shape = f"{s['processes']} x prefetch {s['prefetch']}"
    lines = [
        f"taskq bench: {s['tasks']:,} tasks, payload {s['payload_bytes']} B, "
        f"{s['queue_type']} queues, {_STORES[s['status_store']]} status store, {s['loop']} "
        f"(raw aio-pika: {s['raw_loop']}), Python {s['python']}"
        f"{rounds}",
        f"broker {s['broker']}, store {s['store']}",
        "",
        f"{'':{_WIDTH}}{'tasks/s':>10}{'ratio':>9}",
        f"{'raw publish (confirms, ' + str(s['in_flight']) + ' in flight)':{_WIDTH}}"
        f"{_rate(raw['publish_per_s']):>10}",
        f"{'raw publish (confirms, one at a time)':{_WIDTH}}"
        f"{_rate(raw['publish_sequential_per_s']):>10}",
        f"{'raw consume (acks, prefetch ' + str(s['raw_prefetch']) + ')':{_WIDTH}}"
        f"{_rate(raw['consume_per_s']):>10}",
        f"{'ceiling drain (aiormq + Redis, ' + shape + ')':{_WIDTH}}"
        f"{_rate(ceiling['drain_per_s']):>10}",
    ]
    if ceiling["absent"]:
        lines.append(f"  (no ceiling: {ceiling['absent']})")
    for label, key, ratio in (
        (f"enqueue, sequential ({s['sequential_tasks']:,}; vs one at a time)",
         "enqueue_sequential", "enqueue_sequential_vs_raw"),
        (f"enqueue, concurrent ({s['in_flight']} in flight)", "enqueue_concurrent",
         "enqueue_concurrent"),
        (f"enqueue, bulk ({bulk})", "enqueue_bulk", "enqueue_bulk"),
        (f"drain ({s['processes']} x concurrency {s['concurrency']}; vs raw)", "drain", "drain"),
        ("drain vs ceiling", "drain", "drain_vs_ceiling"),
    ):  # fmt: skip
        lines.append(f"{label:{_WIDTH}}{_rate(tq[key + '_per_s']):>10}{_times(ratios[ratio]):>9}")
    lines += ["", f"{'one send at a time, p50 in ms':{_WIDTH}}{'asyncio':>10}{'uvloop':>9}"]
    for label, asyncio_value, uvloop_value in (
        ("raw aio-pika publish", raw["publish_sequential_p50_ms"],
         raw["publish_sequential_p50_ms_uvloop"]),
        ("taskq delay()", tq["sequential_p50_ms_asyncio"], tq["sequential_p50_ms"]),
    ):  # fmt: skip
        lines.append(f"{label:{_WIDTH}}{_ms(asyncio_value):>10}{_ms(uvloop_value):>9}")
    lines.append(
        f"{'taskq / raw':{_WIDTH}}{_times(ratios['sequential_p50_vs_raw_asyncio']):>10}"
        f"{_times(ratios['sequential_p50_vs_raw_uvloop']):>9}"
    )
    lines += ["", f"{'latency in ms (' + str(s['latency_tasks']) + ' tasks)':{_WIDTH}}"
              f"{'p50':>10}{'p95':>9}{'p99':>9}"]  # fmt: skip
    for label, p in (
        ("raw aio-pika publish -> delivered", raw["latency_deliver_ms"]),
        ("taskq publish -> started", tq["latency_start_ms"]),
        ("taskq publish -> succeeded", tq["latency_succeeded_ms"]),
    ):
        lines.append(f"{label:{_WIDTH}}{p['p50']:>10.1f}{p['p95']:>9.1f}{p['p99']:>9.1f}")
    lines.append(
        f"{'started / delivered (p50)':{_WIDTH}}"
        f"{_times(ratios['latency_start_p50_vs_raw_deliver']):>10}"
    )
    lines.append("")
    for label, value, unit in (
        ("peak worker RSS (largest process)", tq["worker_rss_mib"], "MiB"),
        ("PSS of the worker's process tree", tq["tree_pss_mib"], "MiB"),
        ("worker CPU per task (drain, all processes)", tq["worker_cpu_us_per_task"], "us"),
        ("ceiling CPU per task (all processes)", ceiling["cpu_us_per_task"], "us"),
    ):
        shown = "n/a" if value is None else f"{value:,.1f} {unit}"
        lines.append(f"{label:{_WIDTH}}{shown:>10}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
