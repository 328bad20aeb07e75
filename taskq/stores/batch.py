"""Status writes of concurrently running tasks, sent to the store together.

A worker running a hundred short tasks finishes dozens in one turn of the event loop;
written one by one, each ``started`` and ``succeeded`` is a Redis round trip of its
own and redis-py's per-call cost (a pooled connection taken and given back, a timeout,
a reply read) is most of the worker's CPU (profiled for issue 5). Here every write
asked for while a flush is on its way waits for the next flush, and a flush is one
:meth:`~taskq.stores.base.StatusStore.write_many`: one pipeline.

Each caller still gets its own write's answer (or the store's error) before it goes
on, so "ack only after the outcome is recorded" holds message by message. Under a
light load a flush holds one write and costs what a single write did.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from taskq.errors import StoreError
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.base import NO_RESULT, StatusStore, Write

log = structlog.get_logger(__name__)


class WriteBatcher:
    """:meth:`transition` as the store has it, batched. One per worker (per event loop)."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self._pending: list[tuple[Write, asyncio.Future[TaskStatus | None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def transition(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        """As :meth:`StatusStore.transition`; raises what the store raised for its batch."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskStatus | None] = loop.create_future()
        self._pending.append((Write(task_id, name, state, result=result, error=error), answer))
        if self._flushing is None:
            # Started on the next turn of the loop: writes asked for in this one join it.
            self._flushing = loop.create_task(self._flush())
        return await answer

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    written = await self.store.write_many([write for write, _ in batch])
                except StoreError as exc:
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                except Exception:
                    # One write the store refused to encode must not fail the others:
                    # each on its own, so the error reaches only its caller.
                    log.warning("a batch of status writes failed; writing them one by one")
                    await self._one_by_one(batch)
                    continue
                for (_, answer), status in zip(batch, written, strict=True):
                    if not answer.done():  # its caller may have been cancelled
                        answer.set_result(status)
        finally:
            self._flushing = None

    async def _one_by_one(
        self, batch: list[tuple[Write, asyncio.Future[TaskStatus | None]]]
    ) -> None:
        for write, answer in batch:
            try:
                status = await self.store.transition(
                    write.task_id, write.name, write.state, result=write.result, error=write.error
                )
            except Exception as exc:
                if not answer.done():
                    answer.set_exception(exc)
            else:
                if not answer.done():
                    answer.set_result(status)
