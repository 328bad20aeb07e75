"""JSON Schema (2020-12) of the task message, for publishers in other languages.

    taskq schema                                   # the envelope: any task's message
    taskq schema examples.app:app --task emails.send
    taskq schema examples.app:app                  # {"emails.send": {...}, ...}

The envelope is :mod:`taskq.message`'s wire format: ``id``, ``task``, ``args``,
``kwargs`` (and ``workflow`` for a workflow step); other fields are allowed. A task's
schema is that envelope with ``task`` fixed to the task's name and ``args``/``kwargs``
described by the task's signature, parameter by parameter, with the same types (and
pydantic's JSON Schema of them) that the worker's argument validation uses (lax mode:
the worker also accepts ``"42"`` for an ``int``, which the schema does not promise).

Python binds a parameter by position or by name, and the message says which: the
first ``m`` positional parameters in ``args``, the rest by name in ``kwargs``. The
schema spells that out as one ``oneOf`` branch per ``m``, each with exactly ``m``
``args`` items and the remaining parameters as ``kwargs`` properties (required where
they have no default, nothing else allowed unless the function takes ``**kwargs``),
so a message that passes a parameter twice, or misses one, does not validate. The
parameters' own schemas are in ``$defs`` as ``param.<name>``.

How to publish such a body (exchange, routing key, AMQP properties) is in the
schema's ``description`` and in ``x-taskq-amqp``, an annotation JSON Schema validators
ignore.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticSerializationError, to_jsonable_python

from taskq.message import CONTENT_TYPE
from taskq.task import Task

DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: A task name, as :func:`taskq.topology.check_name` accepts it.
TASK_NAME_PATTERN = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"

_PUBLISHING = (
    "Publish the JSON body (UTF-8) to the app's topic exchange (default 'taskq', "
    "TASKQ_EXCHANGE) with the task name as routing key, mandatory, with publisher "
    "confirms; AMQP properties: delivery_mode 2 (persistent), content_type "
    f"{CONTENT_TYPE}, correlation_id = the task id, message_id unique per publish, and "
    "priority (1..max_priority) only for a task declared with max_priority."
)


def envelope_schema() -> dict[str, Any]:
    """The schema of any task's message: the four fields (and ``workflow``)."""
    return {
        "$schema": DIALECT,
        "title": "taskq task message",
        "description": "The body of a message that asks a taskq worker to run a task. "
        + _PUBLISHING,
        "x-taskq-amqp": _amqp(None),
        "type": "object",
        "properties": _envelope_properties(),
        "required": ["id", "task", "args", "kwargs"],
        "additionalProperties": True,
    }


def task_schema(task: Task[Any, Any]) -> dict[str, Any]:
    """The schema of a message for ``task``: the envelope with its name and its
    arguments as the worker validates them."""
    parameters = list(inspect.signature(task.fn).parameters.values())
    defs = _parameter_schemas(task, parameters)
    properties = _envelope_properties()
    properties["task"] = {"const": task.name, "description": properties["task"]["description"]}
    doc = inspect.getdoc(task.fn)
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": f"taskq task message: {task.name}",
        "description": (f"{doc}\n\n" if doc else "") + _PUBLISHING,
        "x-taskq-amqp": _amqp(task),
        "type": "object",
        "properties": properties,
        "required": ["id", "task", "args", "kwargs"],
        "additionalProperties": True,
        "oneOf": _bindings(parameters),
    }
    if defs:
        schema["$defs"] = defs
    return schema


def app_schemas(tasks: Mapping[str, Task[Any, Any]]) -> dict[str, dict[str, Any]]:
    """One schema per task, by task name, in name order."""
    return {name: task_schema(tasks[name]) for name in sorted(tasks)}


# -- the envelope --------------------------------------------------------------------------


def _envelope_properties() -> dict[str, Any]:
    return {
        "id": {
            "type": "string",
            "minLength": 1,
            "description": "The task id, unique per task (taskq makes UUID4s); the status "
            "store's key. Also the AMQP correlation_id.",
        },
        "task": {
            "type": "string",
            "pattern": TASK_NAME_PATTERN,
            "maxLength": 190,
            "description": "The task's name; the same as the routing key.",
        },
        "args": {"type": "array", "description": "Positional arguments."},
        "kwargs": {"type": "object", "description": "Keyword arguments."},
        "workflow": {
            "type": "object",
            "description": "Only in a step of a workflow (taskq.workflows): which "
            "workflow, and the step's position in it.",
            "properties": {"id": {"type": "string"}, "path": {"type": "string"}},
            "required": ["id", "path"],
        },
    }


def _amqp(task: Task[Any, Any] | None) -> dict[str, Any]:
    amqp: dict[str, Any] = {
        "exchange": "<exchange> (default: taskq)",
        "routing_key": task.name if task is not None else "<task name>",
        "mandatory": True,
        "properties": {
            "delivery_mode": 2,
            "content_type": CONTENT_TYPE,
            "correlation_id": "<id>",
            "message_id": "<unique per publish>",
        },
    }
    if task is not None and task.max_priority is not None:
        amqp["properties"]["priority"] = f"0..{task.max_priority} (optional)"
    return amqp


# -- a task's arguments ----------------------------------------------------------------------


class _Schemas(GenerateJsonSchema):
    """pydantic's generator, with a type JSON cannot describe (an arbitrary class the
    task takes) left open instead of failing the whole schema."""

    def handle_invalid_for_json_schema(
        self, schema: CoreSchema, error_info: str
    ) -> JsonSchemaValue:
        return {"description": f"not described in JSON Schema ({error_info})"}


def _parameter_schemas(task: Task[Any, Any], parameters: list[inspect.Parameter]) -> dict[str, Any]:
    """The ``$defs``: each parameter's schema as ``param.<name>`` (``*args``: of one
    item, ``**kwargs``: of one value), and the models they refer to, from one pydantic
    model of the signature."""
    try:
        hints = typing.get_type_hints(task.fn, include_extras=True)
    except Exception:  # an annotation that cannot be resolved: described as anything
        hints = {}
    fields: dict[str, Any] = {}
    for index, p in enumerate(parameters):
        annotation = hints.get(p.name, Any)
        default: Any = ...
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is not p.empty:
            default = _jsonable_default(p.default)
        # Field names of our own, the parameter's name as alias: a parameter may be
        # called `json` or `_x`, which a pydantic field may not.
        fields[f"p{index}"] = (Annotated[annotation, pydantic.Field(alias=p.name)], default)
    model = pydantic.create_model(
        f"{task.name} arguments",
        __config__=pydantic.ConfigDict(arbitrary_types_allowed=True),
        **fields,
    )
    generated = model.model_json_schema(by_alias=True, schema_generator=_Schemas)
    defs: dict[str, Any] = generated.get("$defs", {})
    for p in parameters:
        schema = dict(generated["properties"][p.name])
        schema.pop("title", None)  # pydantic's "User Id": the name says it already
        defs[f"param.{p.name}"] = schema
    return defs


def _jsonable_default(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return None  # not JSON: the default is only shown, never sent


def _bindings(parameters: list[inspect.Parameter]) -> list[dict[str, Any]]:
    """One branch per number ``m`` of arguments given by position."""
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
    var_args = next((p for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    var_kwargs = next((p for p in parameters if p.kind is p.VAR_KEYWORD), None)
    # A positional-only parameter without default must come by position.
    least = max(
        (
            i + 1
            for i, p in enumerate(positional)
            if p.kind is p.POSITIONAL_ONLY and p.default is p.empty
        ),
        default=0,
    )
    branches = []
    for m in range(least, len(positional) + 1):
        by_position, rest = positional[:m], positional[m:]
        # A positional-only parameter left out of args keeps its default (it cannot be
        # named); only the others may come by name.
        by_name = [p for p in rest if p.kind is not p.POSITIONAL_ONLY] + keyword_only
        args: dict[str, Any] = {"type": "array", "minItems": m}
        if by_position:  # 2020-12: prefixItems is never empty
            args["prefixItems"] = [_ref(p) for p in by_position]
        if var_args is not None and m == len(positional):
            args["items"] = _ref(var_args)  # *args: any number more
        else:
            args["maxItems"] = m
        kwargs: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: _ref(p) for p in by_name},
            "required": [p.name for p in by_name if p.default is p.empty],
        }
        if var_kwargs is not None:
            kwargs["additionalProperties"] = _ref(var_kwargs)
            taken = [p.name for p in by_position]
            if taken:  # given by position already: not again by name
                kwargs["propertyNames"] = {"not": {"enum": taken}}
        else:
            kwargs["additionalProperties"] = False
        branches.append(
            {
                "title": f"{m} argument{'' if m == 1 else 's'} by position",
                "properties": {"args": args, "kwargs": kwargs},
            }
        )
    return branches


def _ref(parameter: inspect.Parameter) -> dict[str, Any]:
    return {"$ref": f"#/$defs/param.{parameter.name}"}
