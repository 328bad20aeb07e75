"""Status writes of concurrently running tasks, sent to the store together.

A worker running a hundred short tasks finishes dozens in one turn of the event loop;
written one by one, each ``started`` and ``succeeded`` is a Redis round trip of its
own and redis-py's per-call cost (a pooled connection taken and given back, a timeout,
a reply read) is most of the worker's CPU (profiled for issue 5). Here the writes go
through a :class:`~taskq.coalesce.Coalescer` with one batch in flight: every write
asked for while a flush is on its way waits for the next flush, and a flush is one
:meth:`~taskq.stores.base.StatusStore.write_many`: one pipeline. The busier Redis is,
the more each pipeline carries.

Each caller still gets its own write's answer (or the store's error) before it goes
on, so "ack only after the outcome is recorded" holds message by message. Under a
light load a write alone in its turn is a plain single write.
"""

from __future__ import annotations

from typing import Any

from taskq.coalesce import Coalescer
from taskq.errors import StoreError
from taskq.logs import get_logger
from taskq.status import ErrorInfo, TaskState
from taskq.stores.base import NO_RESULT, Moved, StatusStore, Write

log = get_logger(__name__)

#: What a write comes back as from a batch: its record (or with ``records=False`` its
#: state and attempts), or its own error.
_Answer = Moved | None | Exception


class WriteBatcher:
    """:meth:`transition` as the store has it, batched. One per worker (per event loop).

    ``records=False``: each answer is only what the worker reads of it, its state and
    attempts (:meth:`StatusStore.move_many`), not the whole record."""

    def __init__(self, store: StatusStore, *, records: bool = True) -> None:
        self.store = store
        self._write_many = store.write_many if records else store.move_many
        self._writes: Coalescer[None, Write, _Answer] = Coalescer(
            self._many, self._one, in_flight=1
        )

    async def transition(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
    ) -> Moved | None:
        """As :meth:`StatusStore.transition`; raises what the store raised for its batch."""
        answer = await self._writes(None, Write(task_id, name, state, result=result, error=error))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _many(self, _: None, writes: list[Write]) -> list[_Answer]:
        try:
            return list(await self._write_many(writes))
        except StoreError:
            raise  # every caller of the batch gets it
        except Exception:
            # One write the store refused to encode must not fail the others:
            # each on its own, so the error reaches only its caller.
            log.warning("a batch of status writes failed; writing them one by one")
            return [await self._one(None, write) for write in writes]

    async def _one(self, _: None, write: Write) -> _Answer:
        try:
            return await self.store.transition(
                write.task_id, write.name, write.state, result=write.result, error=write.error
            )
        except StoreError:
            raise
        except Exception as exc:
            return exc
