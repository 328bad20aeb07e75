"""What the status store contract tests share: the moves of the transition table,
allowed and refused, and a way to give a task a record in any state by allowed moves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from taskq.status import TRANSITIONS, ErrorInfo, TaskState, TaskStatus
from taskq.stores.base import StatusStore

MakeStore = Callable[..., Awaitable[StatusStore]]

STARTED, SUCCEEDED, FAILED = TaskState.STARTED, TaskState.SUCCEEDED, TaskState.FAILED


def path_to(state: TaskState) -> list[TaskState]:
    """The shortest run of moves from no record to ``state``, searched in TRANSITIONS."""
    paths: dict[TaskState | None, list[TaskState]] = {None: []}
    frontier: list[TaskState | None] = [None]
    while frontier:
        reached: list[TaskState | None] = []
        for current in frontier:
            for to in sorted(TRANSITIONS[current]):
                if to not in paths:
                    paths[to] = [*paths[current], to]
                    reached.append(to)
        frontier = reached
    return paths[state]


async def reach(store: StatusStore, task_id: str, state: TaskState | None) -> TaskStatus | None:
    """Give ``task_id`` a record in ``state`` (no record for ``None``) by allowed moves."""
    status = None
    for step in [] if state is None else path_to(state):
        error = ErrorInfo(type="E", message="on the way") if step is not SUCCEEDED else None
        status = await store.transition(task_id, "t", step, result=[step.value], error=error)
        assert status is not None, f"the path to {state} is refused at {step}"
    return status


def name(current: TaskState | None, to: TaskState) -> str:
    return f"{current or 'absent'}->{to}"


ALLOWED = [(current, to) for current, targets in TRANSITIONS.items() for to in sorted(targets)]
REFUSED = [
    (current, to)
    for current, targets in TRANSITIONS.items()
    for to in TaskState
    if to not in targets
]
