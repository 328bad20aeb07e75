"""The wire format of a task call: a JSON object any AMQP client can publish.

    {"id": "<task id>", "task": "<task name>", "args": [...], "kwargs": {...}}

Those four fields are all a message needs; other fields are allowed and ignored, so
later versions can add some without breaking older workers. A step of a workflow
(:mod:`taskq.workflows`) carries one more, ``"workflow": {"id": "<workflow id>",
"path": "<the step's position, e.g. 1.0>"}``, read by the worker that finishes it.
The body is JSON, never pickle: a worker must not run code chosen by whoever can
publish.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pydantic_core

from taskq.errors import MalformedMessage, SerializationError

CONTENT_TYPE = "application/json"


def new_task_id() -> str:
    return str(uuid.uuid4())


def to_json(value: Any, *, what: str) -> bytes:
    """Serialize with pydantic's encoder (UUIDs, datetimes, models, dataclasses...).

    Raises :class:`SerializationError` naming ``what`` for anything JSON cannot carry,
    so a bad argument fails at the sender, never at a worker.
    """
    try:
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise SerializationError(f"{what} cannot be serialized to JSON: {exc}") from exc


def to_jsonable(value: Any, *, what: str) -> Any:
    """The plain JSON form of ``value`` (dicts, lists, str, numbers, None)."""
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise SerializationError(f"{what} cannot be serialized to JSON: {exc}") from exc


class TaskMessage:
    """A decoded task call. Plain slots, not a pydantic model: it is built once per
    message on the hot path and its four fields are checked by hand below."""

    __slots__ = ("args", "id", "kwargs", "task", "workflow")

    def __init__(
        self,
        id: str,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any],
        workflow: dict[str, str] | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.args = args
        self.kwargs = kwargs
        #: ``{"id": ..., "path": ...}`` for a step of a workflow, else ``None``.
        self.workflow = workflow

    def encode(self) -> bytes:
        body = {"id": self.id, "task": self.task, "args": self.args, "kwargs": self.kwargs}
        if self.workflow is not None:
            body["workflow"] = self.workflow
        return to_json(body, what=f"arguments of task {self.task!r}")

    @classmethod
    def decode(cls, body: bytes, *, correlation_id: str | None = None) -> TaskMessage:
        """Parse a body or raise :class:`MalformedMessage` with the reason for the dead
        letter and, where it can be read, the task id (from the body, else from the
        AMQP ``correlation_id``) so the status store can record the failure."""
        try:
            # pydantic's parser: four times json.loads's speed on a task message.
            data = pydantic_core.from_json(body)
        except ValueError:
            # It refuses some JSON that json.loads takes (nesting past 200 levels, which
            # pydantic's own encoder writes up to 255): the stdlib has the last word.
            try:
                data = json.loads(body)
            # RecursionError: valid JSON nested deeper than the json module recurses.
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise MalformedMessage(f"body is not JSON: {exc}", task_id=correlation_id) from None
        if not isinstance(data, dict):
            raise MalformedMessage(
                f"body is JSON {type(data).__name__}, not an object", task_id=correlation_id
            )
        raw_id = data.get("id")
        task_id = raw_id if isinstance(raw_id, str) and raw_id else correlation_id
        raw_task = data.get("task")
        task = raw_task if isinstance(raw_task, str) and raw_task else None
        problems = []
        if not (isinstance(raw_id, str) and raw_id):
            problems.append("'id' must be a non-empty string")
        if task is None:
            problems.append("'task' must be a non-empty string")
        args = data.get("args")
        if not isinstance(args, list):
            problems.append("'args' must be an array")
        kwargs = data.get("kwargs")
        if not isinstance(kwargs, dict):
            problems.append("'kwargs' must be an object")
        workflow = data.get("workflow")
        if workflow is not None and not (
            isinstance(workflow, dict)
            and isinstance(workflow.get("id"), str)
            and isinstance(workflow.get("path"), str)
        ):
            problems.append("'workflow' must be an object with string 'id' and 'path'")
        if problems:
            raise MalformedMessage(
                "malformed task message: " + "; ".join(problems), task_id=task_id, task=task
            )
        assert isinstance(raw_id, str) and task is not None  # narrowed by the checks above
        assert isinstance(args, list) and isinstance(kwargs, dict)
        return cls(raw_id, task, args, kwargs, workflow)
