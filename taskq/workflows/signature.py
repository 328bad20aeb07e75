"""Signatures: a task call written down as data, to be run later as a step of a
workflow. ``add.s(1)`` is "call ``add`` with 1 and, in a chain, the previous step's
result in front"; ``add.si(1)`` (immutable) ignores the previous result.

A signature is plain JSON (:meth:`Signature.to_dict`): a workflow can be built and
sent by task name by code that never imports the tasks (``app.signature(...)``), and
its shape is kept as is in the status store for the workers that run it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.workflows.handle import WorkflowHandle


class Canvas(ABC):
    """A workflow, or a piece of one: a :class:`Signature`, a chain, a group or a
    chord. Sending one makes it a workflow of its own."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The JSON form the status store keeps and workers read."""

    @abstractmethod
    def signatures(self) -> Iterator[Signature]:
        """Every signature in it, in order (error callbacks included)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Canvas) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def _app(self) -> TaskQueue:
        for sig in self.signatures():
            if sig.app is not None:
                return sig.app
        raise ConfigurationError(
            "this workflow knows no app (it was built from data): send it with "
            "app.send_workflow(...)"
        )

    async def delay(self) -> WorkflowHandle:
        """Send it as a workflow, with the app of its tasks; its handle."""
        return await self.send()

    async def send(self, *, workflow_id: str | None = None) -> WorkflowHandle:
        """:meth:`delay` with options: ``workflow_id`` is an idempotency key (see
        :meth:`TaskQueue.send_workflow`)."""
        return await self._app().send_workflow(self, workflow_id=workflow_id)


class Signature(Canvas):
    """One task call of a workflow: the task's name, arguments and options.

    ``countdown`` delays the step after it is published (as ``send(countdown=...)``);
    ``immutable`` steps do not get the previous step's result as first argument.
    """

    __slots__ = ("app", "args", "countdown", "immutable", "kwargs", "task")

    def __init__(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        immutable: bool = False,
        app: TaskQueue | None = None,
    ) -> None:
        if not isinstance(task, str) or not task:
            raise ConfigurationError(f"a signature needs a task name, not {task!r}")
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ConfigurationError(f"signature args must be a list, not {args!r:.60}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ConfigurationError(f"signature kwargs must be a dict, not {kwargs!r:.60}")
        if countdown is not None and (
            isinstance(countdown, bool)
            or not isinstance(countdown, int | float)
            or not math.isfinite(countdown)
            or countdown < 0
        ):
            raise ConfigurationError(f"countdown must be seconds (0 or more), not {countdown!r}")
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.countdown = None if countdown is None else float(countdown)
        self.immutable = bool(immutable)
        #: The app to send it with; ``None`` for one read back from JSON.
        self.app = app

    def __repr__(self) -> str:
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.task}.{'si' if self.immutable else 's'}({call})"

    def set(self, *, countdown: float | None = None) -> Signature:
        """A copy with these options."""
        return Signature(
            self.task,
            self.args,
            self.kwargs,
            countdown=countdown,
            immutable=self.immutable,
            app=self.app,
        )

    def signatures(self) -> Iterator[Signature]:
        yield self

    def to_dict(self) -> dict[str, Any]:
        node: dict[str, Any] = {
            "type": "task",
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
        }
        if self.countdown is not None:
            node["options"] = {"countdown": self.countdown}
        if self.immutable:
            node["immutable"] = True
        return node

    @classmethod
    def from_dict(cls, node: Mapping[str, Any], app: TaskQueue | None = None) -> Signature:
        options = node.get("options") or {}
        return cls(
            node["task"],
            node.get("args") or (),
            node.get("kwargs") or {},
            countdown=options.get("countdown"),
            immutable=bool(node.get("immutable")),
            app=app,
        )
