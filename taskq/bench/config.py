"""What one ``taskq bench`` run measures, and the fixed shape of each phase.

The figures only compare when every run uses the same shape, so the knobs a reader
would want to vary are flags (:class:`BenchConfig`) and the rest are constants here,
reported in the JSON ``settings`` with the run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from taskq.errors import ConfigurationError

#: Default broker and store: the local services of the README's "Set up".
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_STORE = "redis://127.0.0.1:6379/0"

#: Publishes (raw) or ``delay()`` calls (taskq) awaiting their confirm at once: enough
#: to keep the broker's confirm batching busy (RabbitMQ-NOTES: one at a time is the
#: slowest path), the number the issue's figures were taken with.
IN_FLIGHT = 200
#: The raw consumer's prefetch, fixed: the baseline is the client stack's ceiling,
#: whatever ``--concurrency`` the workers get.
RAW_PREFETCH = 100
#: Calls per ``send_many``: one batch a web request could plausibly carry.
BULK_CHUNK = 1000
#: The sequential phase sends at most this many: one confirm round trip each, it
#: would otherwise take most of a default run.
SEQUENTIAL_MAX = 5000
#: The latency phase publishes this many tasks a second...
LATENCY_RATE = 100.0
#: ... and at most this many (3 s at 100/s), fewer when ``--tasks`` is smaller.
LATENCY_MAX = 300

#: The bench app's one task, a no-op that takes the payload (``taskq.bench.tasks``).
NOOP_TASK = "bench.noop"
#: The raw baseline's queue, named like a task queue so the topology's cleanup takes it.
RAW_TASK = "bench.raw"
#: Every object and key of a run is named after its exchange, which starts with this.
EXCHANGE_PREFIX = "taskq-bench-"
#: The workers' log level: one "task succeeded" line per task at ``info`` would
#: measure the log pipe as much as taskq.
WORKER_LOG_LEVEL = "warning"


def fresh_exchange() -> str:
    """A unique exchange name: a run never meets another run's (or an app's) queues."""
    return f"{EXCHANGE_PREFIX}{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class BenchConfig:
    """The flags of ``taskq bench``.

    >>> BenchConfig(tasks=300, processes=2).sequential_tasks
    300
    """

    broker_url: str = DEFAULT_BROKER
    store_url: str = DEFAULT_STORE
    tasks: int = 20_000
    processes: int = 1
    concurrency: int = 100
    payload_bytes: int = 100
    rounds: int = 1
    exchange: str = field(default_factory=fresh_exchange)

    def __post_init__(self) -> None:
        for name in ("tasks", "processes", "concurrency", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"bench: {name} must be at least 1")
        if self.payload_bytes < 0:
            raise ConfigurationError("bench: payload_bytes must be 0 or more")

    @property
    def sequential_tasks(self) -> int:
        return min(self.tasks, SEQUENTIAL_MAX)

    @property
    def latency_tasks(self) -> int:
        return min(self.tasks, LATENCY_MAX)

    @property
    def payload(self) -> str:
        """The no-op task's one argument: ``payload_bytes`` ASCII characters."""
        return "x" * self.payload_bytes
