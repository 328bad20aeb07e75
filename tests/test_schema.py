"""``taskq schema``: JSON Schema (2020-12) of the task message, the envelope alone or a
task's, from the types its worker validates with; the committed schemas of the example
app are what the command prints today. (That real messages validate against them is
checked with a JSON Schema validator in Node: tests/test_node_publisher.py.)"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pydantic

from taskq import TaskQueue
from taskq.cli.common import load_app
from taskq.cli.schema import render
from taskq.schema import DIALECT, app_schemas, envelope_schema, task_schema
from tests.deployment import ROOT, environment, run_python

SCHEMAS = ROOT / "examples" / "schema"
EXAMPLE_APP = "examples.app:app"


def _regenerate(path: Path, command: str) -> str:
    return f"{path.relative_to(ROOT)} is out of date: `{command} > {path.relative_to(ROOT)}`"


def test_the_committed_schemas_of_the_example_app_are_current() -> None:
    app = load_app(EXAMPLE_APP)
    envelope = SCHEMAS / "envelope.json"
    assert envelope.read_text() == render(envelope_schema()) + "\n", _regenerate(
        envelope, "taskq schema"
    )
    committed = sorted(p.name for p in SCHEMAS.glob("*.json") if p.name != "envelope.json")
    assert committed == [f"{name}.json" for name in sorted(app.tasks)]
    for name, task in app.tasks.items():
        path = SCHEMAS / f"{name}.json"
        assert path.read_text() == render(task_schema(task)) + "\n", _regenerate(
            path, f"taskq schema {EXAMPLE_APP} --task {name}"
        )


async def test_the_command_prints_the_envelope_one_task_or_every_task() -> None:
    env = environment()
    envelope, one, every, unknown = [
        await run_python("-m", "taskq", "schema", *args, env=env)
        for args in (
            [],
            [EXAMPLE_APP, "--task", "emails.send"],
            [EXAMPLE_APP],
            [EXAMPLE_APP, "--task", "emails.nope"],
        )
    ]

    assert envelope.returncode == one.returncode == every.returncode == 0, envelope.stderr
    assert json.loads(envelope.stdout) == json.loads((SCHEMAS / "envelope.json").read_text())
    assert json.loads(one.stdout) == json.loads((SCHEMAS / "emails.send.json").read_text())
    assert json.loads(every.stdout) == {
        name: json.loads((SCHEMAS / f"{name}.json").read_text())
        for name in ("emails.send", "reports.build")
    }
    assert unknown.returncode == 6
    assert "no task named 'emails.nope' (its tasks: emails.send, reports.build)" in unknown.stderr


def test_the_envelope_is_the_wire_format() -> None:
    schema = envelope_schema()

    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["id", "task", "args", "kwargs"]
    assert schema["additionalProperties"] is True  # other fields are allowed and ignored
    props = schema["properties"]
    assert (props["args"]["type"], props["kwargs"]["type"]) == ("array", "object")
    assert props["workflow"]["required"] == ["id", "path"]
    assert schema["x-taskq-amqp"]["properties"]["content_type"] == "application/json"


class Address(pydantic.BaseModel):
    street: str
    zip_code: str


class Opaque:
    """A type JSON Schema cannot describe (the worker takes it with arbitrary types)."""


def _branches(schema: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {b["properties"]["args"]["minItems"]: b["properties"] for b in schema["oneOf"]}


def test_a_tasks_schema_binds_each_parameter_by_position_or_by_name_once() -> None:
    app = TaskQueue()

    @app.task(name="shop.ship")
    def ship(order: uuid.UUID, /, to: Address, express: bool = False, *, note: str = "") -> None:
        """Ship an order."""

    schema = task_schema(ship)

    assert schema["properties"]["task"]["const"] == "shop.ship"
    assert schema["description"].startswith("Ship an order.")
    defs = schema["$defs"]
    assert defs["param.order"] == {"type": "string", "format": "uuid"}
    assert defs["param.to"] == {"$ref": "#/$defs/Address"}  # the model's own schema, shared
    assert set(defs["Address"]["required"]) == {"street", "zip_code"}
    assert defs["param.express"] == {"type": "boolean", "default": False}
    branches = _branches(schema)
    # `order` is positional-only: at least one argument by position
    assert sorted(branches) == [1, 2, 3]
    one = branches[1]
    assert one["args"] == {
        "type": "array",
        "minItems": 1,
        "maxItems": 1,
        "prefixItems": [{"$ref": "#/$defs/param.order"}],
    }
    assert one["kwargs"]["required"] == ["to"]
    assert set(one["kwargs"]["properties"]) == {"to", "express", "note"}
    assert one["kwargs"]["additionalProperties"] is False
    three = branches[3]
    assert set(three["kwargs"]["properties"]) == {"note"}  # keyword-only: by name only
    assert three["kwargs"]["required"] == []


def test_star_args_and_star_kwargs_and_types_json_cannot_describe() -> None:
    app = TaskQueue()

    @app.task(name="shop.log")
    async def log(level: int, *lines: str, thing: Opaque | None = None, **labels: int) -> None:
        pass

    schema = task_schema(log)

    branches = _branches(schema)
    assert sorted(branches) == [0, 1]
    assert branches[1]["args"]["items"] == {"$ref": "#/$defs/param.lines"}  # any number more
    assert "maxItems" not in branches[1]["args"]
    assert branches[1]["kwargs"]["additionalProperties"] == {"$ref": "#/$defs/param.labels"}
    assert branches[1]["kwargs"]["propertyNames"] == {"not": {"enum": ["level"]}}
    assert branches[0]["args"]["maxItems"] == 0 and "prefixItems" not in branches[0]["args"]
    assert schema["$defs"]["param.lines"] == {"type": "string"}
    assert schema["$defs"]["param.labels"] == {"type": "integer"}
    assert "not described in JSON Schema" in json.dumps(schema["$defs"]["param.thing"])
    assert list(app_schemas(app.tasks)) == ["shop.log"]
