"""examples/node: a Node.js publisher (amqplib) sends ``emails.send`` by the wire
format to RabbitMQ, and a Python worker runs it; its JSON Schema check (ajv, on the
committed examples/schema) takes the messages taskq itself writes and refuses bad ones.

Runs ``npm ci`` in a copy of the folder (the repository never holds node_modules);
skipped, with the reason, only where node or npm is not installed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from taskq import TaskQueue, TaskState, Worker
from taskq.message import TaskMessage
from tests.deployment import ROOT, environment, tear_down

NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed for the Node.js publisher example (apt-get install nodejs npm)",
)


async def _run(*args: str, cwd: Path, stdin: bytes | None = None, timeout: float = 180) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=environment(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{out.decode()}{err.decode()}"
    return out.decode()


@pytest.fixture(scope="module")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/node with its dependencies installed as package-lock.json pins them, and
    the committed schemas beside it where the example expects them."""
    root = tmp_path_factory.mktemp("node-example")
    project = root / "node"
    shutil.copytree(
        ROOT / "examples" / "node", project, ignore=shutil.ignore_patterns("node_modules")
    )
    shutil.copytree(ROOT / "examples" / "schema", root / "schema")
    assert NPM is not None
    installed = subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=project, env=environment(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}{installed.stderr}"
    return project


async def test_a_task_published_from_node_is_run_by_the_python_worker(
    node_project: Path, amqp_url: str, redis_url: str, exchange: str
) -> None:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    received: list[tuple[uuid.UUID, str]] = []

    @app.task(name="emails.send")
    def send_email(user_id: uuid.UUID, subject: str) -> bool:
        received.append((user_id, subject))
        return True

    user_id = uuid.uuid4()
    try:
        # Given a Python worker (it declares the exchange and the task's queue)
        async with app, Worker(app):
            # When the Node.js publisher sends emails.send to that exchange
            assert NODE is not None
            out = await _run(
                NODE, "publish.js", "--url", amqp_url, "--exchange", exchange,
                str(user_id), "Welcome!", cwd=node_project, timeout=60,
            )  # fmt: skip
            task_id = out.strip()

            # Then the worker ran it, with its arguments validated (a UUID again)
            assert await app.handle(task_id).result(timeout=20) is True
            status = await app.handle(task_id).status()
            assert status is not None
            assert (status.state, status.name) == (TaskState.SUCCEEDED, "emails.send")
            assert received == [(user_id, "Welcome!")]
    finally:
        await tear_down(amqp_url, redis_url, exchange, ["emails.send"])


async def test_the_schema_takes_taskqs_own_messages_and_refuses_bad_ones(
    node_project: Path,
) -> None:
    uid = str(uuid.uuid4())

    def body(args: list[object], kwargs: dict[str, object], **extra: object) -> dict[str, object]:
        data = json.loads(TaskMessage("t-1", "emails.send", args, kwargs).encode())
        return {**data, **extra}

    good = [
        body([uid, "hi"], {}),
        body([uid], {"subject": "hi"}),
        body([], {"user_id": uid, "subject": "hi"}),
        body([uid, "hi"], {}, workflow={"id": "wf", "path": "0"}, later_field=1),
    ]
    bad = {
        "not a uuid": body(["nope", "hi"], {}),
        "missing subject": body([uid], {}),
        "given twice": body([uid, "hi"], {"subject": "hi"}),
        "unknown kwarg": body([uid, "hi"], {"cc": "x"}),
        "too many args": body([uid, "hi", "x"], {}),
        "another task": {**body([uid, "hi"], {}), "task": "emails.other"},
        "no id": {k: v for k, v in body([uid, "hi"], {}).items() if k != "id"},
    }
    lines = "".join(json.dumps(b) + "\n" for b in [*good, *bad.values()])

    assert NODE is not None
    out = await _run(NODE, "schema.js", "emails.send", cwd=node_project, stdin=lines.encode())

    answers = out.splitlines()
    assert answers[: len(good)] == ["valid"] * len(good), answers
    for reason, answer in zip(bad, answers[len(good) :], strict=True):
        assert answer.startswith("invalid: "), (reason, answer)
