"""Sends tasks from a host of its own: ``ip netns exec <api host> python -m
tests.faults.netns_publish SECONDS CONCURRENCY [bulk] < IDS``, configured by the TASKQ_*
variables like any deployment. Sends ``fault.touch(id, SECONDS)`` for each id read
from stdin (one a line) through ``harness.publish`` (``bulk``: ``send_many`` of 1,000 at a
time) and prints one JSON line: how many sends were confirmed, the errors of those that
raised, and how long it took."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from taskq import TaskQueue
from tests.faults.harness import TOUCH, Published, publish


async def main(ids: list[str], seconds: float, concurrency: int, bulk: bool) -> None:
    app = TaskQueue()
    await app.connect()
    try:
        began = time.monotonic()
        if bulk:
            sent = Published()
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                await app.send_many(TOUCH, [((i, seconds), {}, i) for i in chunk])
                sent.confirmed.extend(chunk)
        else:
            sent = await publish(app, ids, seconds=seconds, concurrency=concurrency)
        took = time.monotonic() - began
    finally:
        await app.close()
    failed = {task_id: repr(exc) for task_id, exc in sent.failed.items()}
    print(json.dumps({"confirmed": len(sent.confirmed), "failed": failed, "seconds": took}))


if __name__ == "__main__":
    asyncio.run(
        main(sys.stdin.read().split(), float(sys.argv[1]), int(sys.argv[2]), "bulk" in sys.argv)
    )
