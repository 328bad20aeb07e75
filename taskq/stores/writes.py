"""What a status write is: the unit of :meth:`~taskq.stores.base.StatusStore.write_many`
and what a move answers. Apart from the contract (:mod:`taskq.stores.base`, which
re-exports them) because every store, the worker's batcher and the bench build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from taskq.status import ErrorInfo, TaskState


class _NoResult:
    def __repr__(self) -> str:
        return "NO_RESULT"


#: Default of ``result=``: leave the stored result as it is.
NO_RESULT: Final[Any] = _NoResult()


@dataclass(frozen=True, slots=True)
class Write:
    """One conditional write, as :meth:`StatusStore.transition` (or, with
    ``only_if_absent``, :meth:`StatusStore.create`) would make it: the unit of
    :meth:`StatusStore.write_many`."""

    task_id: str
    name: str
    state: TaskState
    only_if_absent: bool = False
    result: Any = field(default=NO_RESULT)
    error: ErrorInfo | None = None
    #: A create's call JSON (:mod:`taskq.call_record`), kept in the record it creates.
    call: str | None = None


class Moved(Protocol):
    """What a worker reads of a record it just moved (:meth:`StatusStore.move_many`):
    its state and attempts. A :class:`~taskq.status.TaskStatus` is one."""

    @property
    def state(self) -> TaskState: ...

    @property
    def attempts(self) -> int: ...


class Move(NamedTuple):
    """A :class:`Moved` as a store builds one from its answer."""

    state: TaskState
    attempts: int


#: One create of :meth:`StatusStore.create_many`: ``(task_id, name)`` or
#: ``(task_id, name, call)``.
Create = tuple[str, str] | tuple[str, str, str | None]


def call_of(item: Create) -> str | None:
    """A create's call JSON, if it has one."""
    return item[2] if len(item) == 3 else None
