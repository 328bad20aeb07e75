"""``taskq events [PATTERN]``: tail the lifecycle events of ``taskq.events`` live.

    taskq events                       # everything, one line an event
    taskq events 'failed.#' --json     # failures only, as JSON lines

It listens whether or not the apps publishing have events on (those with events off
publish none), on an exclusive, auto-delete queue: nothing is left behind, and what
happened before it started is not shown. It runs until SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from taskq.app import TaskQueue
from taskq.cli.common import RET_OK, app_for
from taskq.events import EVENTS_EXCHANGE, Events, TaskEvent


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
    app_option: argparse.ArgumentParser,
) -> None:
    events = commands.add_parser(
        "events",
        parents=[logging_options, app_option],
        help="print task lifecycle events as they happen, until interrupted",
    )
    events.add_argument(
        "pattern",
        metavar="PATTERN",
        nargs="?",
        default="#",
        help="routing keys '<state>.<task name>' to show, as an AMQP topic pattern "
        "('*' one word, '#' any number), e.g. 'failed.#' (default: '#', all)",
    )
    events.add_argument("--json", action="store_true", help="print each event as a JSON line")
    events.set_defaults(run=cmd_events, default_level="warning")


def cmd_events(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=False)
    return asyncio.run(_tail(app, args.pattern, as_json=args.json))


async def _tail(app: TaskQueue, pattern: str, *, as_json: bool) -> int:
    # The app's own events object if it has one; a listener needs none switched on.
    events = app.events or Events.for_broker(app.broker, app.topology.exchange)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def show(event: TaskEvent) -> None:
        print(event.encode().decode() if as_json else event.describe(), flush=True)

    try:
        subscription = await events.subscribe(pattern, show)
        # On stderr, so stdout holds events only; a script can wait for this line.
        print(
            f"taskq: listening to {EVENTS_EXCHANGE} for {pattern!r}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        await subscription.close()
    finally:
        await events.close()
        await app.close()
    return RET_OK
