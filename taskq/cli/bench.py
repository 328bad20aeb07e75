"""``taskq bench``: measure taskq against plain aio-pika on a broker (``taskq.bench``).

Progress goes to stderr, the table (or with ``--json`` one JSON object) to stdout.
Runs on uvloop where installed (:func:`taskq.loops.run`), as ``taskq worker`` does.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from taskq import loops
from taskq.bench import BenchConfig, Progress, run_bench, table
from taskq.bench.config import DEFAULT_BROKER, DEFAULT_STORE
from taskq.cli.common import RET_OK, positive_int
from taskq.errors import ConfigurationError
from taskq.urls import scheme_of


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[logging_options],
        help="measure enqueue, drain and latency against plain aio-pika on a broker",
        description="Runs on a fresh exchange and deletes everything it made afterwards.",
    )
    bench.add_argument(
        "--broker",
        metavar="URL",
        help=f"RabbitMQ (default: TASKQ_BROKER_URL, else {DEFAULT_BROKER})",
    )
    bench.add_argument(
        "--store",
        metavar="URL",
        help=f"Redis or PostgreSQL (default: TASKQ_STORE_URL, else {DEFAULT_STORE})",
    )
    bench.add_argument(
        "--tasks", type=positive_int, default=20_000, metavar="N", help="(default: 20000)"
    )
    bench.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="P",
        help="worker processes (default: 1)",
    )
    bench.add_argument(
        "--concurrency",
        type=positive_int,
        default=100,
        metavar="C",
        help="per worker process, and its prefetch (default: 100)",
    )
    bench.add_argument(
        "--payload-bytes",
        type=_byte_count,
        default=100,
        metavar="B",
        help="the no-op task's argument (default: 100)",
    )
    bench.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        metavar="R",
        help="repeat the measurements and report medians (default: 1)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=cmd_bench, default_level="warning")


def cmd_bench(args: argparse.Namespace) -> int:
    config = BenchConfig(
        broker_url=_url(args.broker, "TASKQ_BROKER_URL", DEFAULT_BROKER, ("amqp", "amqps")),
        store_url=_url(
            args.store,
            "TASKQ_STORE_URL",
            DEFAULT_STORE,
            ("redis", "rediss", "postgresql", "postgres"),
        ),
        tasks=args.tasks,
        processes=args.processes,
        concurrency=args.concurrency,
        payload_bytes=args.payload_bytes,
        rounds=args.rounds,
    )
    result = loops.run(run_bench(config, Progress()))
    print(json.dumps(result) if args.json else table(result), flush=True)
    return RET_OK


def _url(given: str | None, variable: str, default: str, schemes: tuple[str, ...]) -> str:
    url = given or os.environ.get(variable) or default
    if scheme_of(url) not in schemes:
        # The embedded memory:// would measure one process against itself.
        raise ConfigurationError(
            f"taskq bench needs a {' or '.join(s + '://' for s in schemes)} URL, "
            f"not {scheme_of(url) + '://'!r} (from {'the flag' if given else variable})"
        )
    return url


def _byte_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of bytes, not {text!r}")
    return int(text)
