"""``taskq dead list | requeue | purge``: what died, when and why, and sending it back."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from taskq.brokers import DeadLetter
from taskq.cli.common import RET_NOT_FOUND, RET_OK, app_for, closing, error, positive_int


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
    app_option: argparse.ArgumentParser,
) -> None:
    dead = commands.add_parser("dead", help="list, requeue or purge the dead letters")
    dead_commands = dead.add_subparsers(title="commands", required=True, metavar="COMMAND")
    dead_list = dead_commands.add_parser(
        "list",
        parents=[logging_options, app_option],
        help="print dead letters, oldest first: id, task, when, reason",
    )
    dead_list.add_argument("--task", metavar="NAME", help="only the dead letters of this task")
    dead_list.add_argument(
        "--limit", type=positive_int, default=100, metavar="N", help="at most N (default: 100)"
    )
    dead_list.add_argument("--json", action="store_true", help="print them as a JSON array")
    dead_list.set_defaults(run=cmd_dead_list, default_level="warning")
    requeue = dead_commands.add_parser(
        "requeue",
        parents=[logging_options, app_option],
        help="send dead letters back to their task queues, their statuses reset to queued",
    )
    which = requeue.add_mutually_exclusive_group()
    which.add_argument("--task", metavar="NAME", help="the dead letters of this task")
    which.add_argument(  # a default makes it optional, as a mutually exclusive one must be
        "ids", nargs="*", default=[], metavar="ID", help="the dead letters of these task ids"
    )
    requeue.set_defaults(run=cmd_dead_requeue, default_level="warning")
    purge = dead_commands.add_parser(
        "purge", parents=[logging_options, app_option], help="delete every dead letter"
    )
    purge.set_defaults(run=cmd_dead_purge, default_level="warning")


def cmd_dead_list(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=False)
    letters = asyncio.run(closing(app, app.dead_letters(task=args.task, limit=args.limit)))
    if args.json:
        print(json.dumps([_dead_json(letter) for letter in letters], indent=2))
    else:
        for letter in letters:
            print(describe_dead(letter))
    return RET_OK


def cmd_dead_requeue(args: argparse.Namespace) -> int:
    # The store too: each task's status is reset where the workers will read it.
    app = app_for(args, need_broker=True, need_store=True)
    requeued = asyncio.run(closing(app, app.requeue_dead(task=args.task, ids=args.ids)))
    print(f"requeued {_dead_letters(len(requeued))}")
    for letter in requeued:
        print(f"{letter.task_id}  {letter.task}")
    missing = sorted(set(args.ids) - {letter.task_id for letter in requeued})
    if missing:
        error(
            "no dead letter to requeue with task id "
            f"{', '.join(map(repr, missing))} (none, or none with a task to route it by)"
        )
        return RET_NOT_FOUND
    return RET_OK


def cmd_dead_purge(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=False)
    purged = asyncio.run(closing(app, app.purge_dead()))
    print(f"purged {_dead_letters(purged)}")
    return RET_OK


def describe_dead(letter: DeadLetter) -> str:
    """A dead letter for people, on one line: task id, task, when (UTC), reason; ``-``
    where the message does not say."""
    when = letter.dead_at.isoformat(timespec="seconds") if letter.dead_at else "-"
    reason = " ".join(letter.reason.split())
    return f"{letter.task_id or '-'}  {letter.task or '-'}  {when}  {reason}"


def _dead_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.task_id,
        "task": letter.task,
        "reason": letter.reason,
        "dead_at": letter.dead_at.isoformat() if letter.dead_at else None,
        "queue": letter.queue,
    }


def _dead_letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"
