"""What a run prints: progress on stderr while it runs, then a table or one JSON object.

Ratios are a taskq rate over the raw rate of the same round (enqueue over raw
publish, drain over raw consume): same broker, same machine, same minute, so the
broker's and the machine's speed divide out. With several rounds every figure is
the median over the rounds, ratios included (each round's ratio, then the median);
the peak RSS is the largest of any round.
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
from taskq.bench.latency import Latency
from taskq.bench.raw import RawRates
from taskq.urls import mask_url


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
class Round:
    """One round's figures."""

    raw: RawRates
    enqueue_sequential: float
    enqueue_concurrent: float
    enqueue_bulk: float
    drain: float
    worker_cpu_us_per_task: float | None
    latency: Latency
    worker_rss_mib: float | None

    def ratios(self) -> dict[str, float | None]:
        publish, consume = self.raw.publish_per_s, self.raw.consume_per_s
        return {
            "enqueue_sequential": _ratio(self.enqueue_sequential, publish),
            "enqueue_concurrent": _ratio(self.enqueue_concurrent, publish),
            "enqueue_bulk": _ratio(self.enqueue_bulk, publish),
            "drain": _ratio(self.drain, consume),
        }

    def figures(self) -> dict[str, Any]:
        return {
            "raw": {
                "publish_per_s": self.raw.publish_per_s,
                "consume_per_s": self.raw.consume_per_s,
            },
            "taskq": {
                "enqueue_sequential_per_s": self.enqueue_sequential,
                "enqueue_concurrent_per_s": self.enqueue_concurrent,
                "enqueue_bulk_per_s": self.enqueue_bulk,
                "drain_per_s": self.drain,
                "worker_cpu_us_per_task": self.worker_cpu_us_per_task,
                "latency_start_ms": vars(self.latency.start),
                "latency_succeeded_ms": vars(self.latency.succeeded),
                "worker_rss_mib": self.worker_rss_mib,
            },
            "ratios": self.ratios(),
        }


def _ratio(value: float | None, base: float) -> float | None:
    return round(value / base, 3) if value is not None and base > 0 else None


def _median(values: Sequence[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return round(statistics.median(v for v in values if v is not None), 3)


def combine(figures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rounds' figures of one shape as one: the median of each, the peak RSS's maximum."""
    combined: dict[str, Any] = {}
    for key, first in figures[0].items():
        values = [f[key] for f in figures]
        if isinstance(first, dict):
            combined[key] = combine(values)
        elif key == "worker_rss_mib":
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
        "status_store": "redis",
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


#: Width of the table's label column.
_WIDTH = 46


def table(result: dict[str, Any]) -> str:
    """The human form of :func:`summary`'s object."""
    s, raw, tq, ratios = result["settings"], result["raw"], result["taskq"], result["ratios"]
    rounds = f", median of {s['rounds']} rounds" if s["rounds"] > 1 else ""
    bulk = f"send_many of {s['bulk_chunk']:,}"
    lines = [
        f"taskq bench: {s['tasks']:,} tasks, payload {s['payload_bytes']} B, "
        f"{s['queue_type']} queues, Redis status store, {s['loop']} "
        f"(raw aio-pika: {s['raw_loop']}), Python {s['python']}"
        f"{rounds}",
        f"broker {s['broker']}, store {s['store']}",
        "",
        f"{'':{_WIDTH}}{'tasks/s':>10}{'vs raw':>9}",
        f"{'raw publish (confirms, ' + str(s['in_flight']) + ' in flight)':{_WIDTH}}"
        f"{_rate(raw['publish_per_s']):>10}",
        f"{'raw consume (acks, prefetch ' + str(s['raw_prefetch']) + ')':{_WIDTH}}"
        f"{_rate(raw['consume_per_s']):>10}",
    ]
    for label, key in (
        (f"enqueue, sequential ({s['sequential_tasks']:,} tasks)", "enqueue_sequential"),
        (f"enqueue, concurrent ({s['in_flight']} in flight)", "enqueue_concurrent"),
        (f"enqueue, bulk ({bulk})", "enqueue_bulk"),
        (f"drain ({s['processes']} x concurrency {s['concurrency']})", "drain"),
    ):
        lines.append(f"{label:{_WIDTH}}{_rate(tq[key + '_per_s']):>10}{_times(ratios[key]):>9}")
    lines += ["", f"{'latency in ms (' + str(s['latency_tasks']) + ' tasks)':{_WIDTH}}"
              f"{'p50':>10}{'p95':>9}{'p99':>9}"]  # fmt: skip
    for label, key in (
        ("publish -> started", "latency_start_ms"),
        ("publish -> succeeded", "latency_succeeded_ms"),
    ):
        p = tq[key]
        lines.append(f"{label:{_WIDTH}}{p['p50']:>10.1f}{p['p95']:>9.1f}{p['p99']:>9.1f}")
    rss, cpu = tq["worker_rss_mib"], tq["worker_cpu_us_per_task"]
    shown = "n/a" if rss is None else f"{rss:.1f} MiB"
    lines += ["", f"{'peak worker RSS (largest process)':{_WIDTH}}{shown:>10}"]
    shown = "n/a" if cpu is None else f"{cpu:,.0f} us"
    lines += [f"{'worker CPU per task (drain, all processes)':{_WIDTH}}{shown:>10}"]
    return "\n".join(lines)
