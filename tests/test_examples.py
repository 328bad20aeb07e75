"""The examples do what the README says they do."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from taskq import Worker
from tests.deployment import environment, run_python, tear_down
from tests.helpers import eventually

EMAIL_TASKS = ["emails.send", "reports.build"]


async def test_the_quickstart_runs_on_the_embedded_broker_and_prints_its_results() -> None:
    ran = await run_python("examples/quickstart.py", env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""  # it keeps the worker's logs quiet
    out = ran.stdout
    assert "add.delay(1, 2)                     -> 3" in out
    assert "-> 'HELLO! HELLO!'" in out
    assert "not re-sent: True" in out
    assert "-> succeeded, attempts 1" in out
    assert "-> TaskFailed: ZeroDivisionError" in out
    assert "-> '200 OK from https://example.com'" in out
    assert "-> succeeded, attempts 3" in out
    assert "-> queued now, then 5" in out


async def test_the_priorities_example_runs_urgent_calls_first_on_the_embedded_broker() -> None:
    ran = await run_python("examples/priorities.py", env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    out = ran.stdout
    assert "ran in this order: vip-1, vip-2, soon, routine-0, routine-1," in out
    assert "priority=10 -> ConfigurationError: task 'reports.build' takes a priority" in out
    assert "a task without max_priority -> ConfigurationError" in out


@pytest.mark.parametrize("api", ["examples.api", "examples.service.api"])
async def test_the_api_examples_never_import_the_task_code(api: str) -> None:
    check = (
        f"import sys, {api}; "
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'workers']; "
        "assert not loaded, loaded"
    )

    ran = await run_python("-c", check, env=environment())

    assert ran.returncode == 0, ran.stderr


@pytest_asyncio.fixture
async def deployment(
    amqp_url: str, redis_url: str, exchange: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The example deployment's settings, and fresh imports of its modules so they read
    them; its queues and status records are deleted afterwards."""
    monkeypatch.setenv("TASKQ_BROKER_URL", amqp_url)
    monkeypatch.setenv("TASKQ_STORE_URL", redis_url)
    monkeypatch.setenv("TASKQ_EXCHANGE", exchange)
    for module in ("workers.emails", "examples.api"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    yield
    await tear_down(amqp_url, redis_url, exchange, EMAIL_TASKS)


async def test_the_api_sends_an_email_task_by_name_and_reports_it_succeeded(
    deployment: None,
) -> None:
    api = importlib.import_module("examples.api").app
    workers = importlib.import_module("workers.emails")
    transport = httpx.ASGITransport(app=api)

    async with (
        api.router.lifespan_context(api),
        Worker(workers.app, concurrency=4),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        sent = await client.post(f"/emails/{uuid.uuid4()}", params={"subject": "hello"})
        assert sent.status_code == 202, sent.text
        task_id = sent.json()["task_id"]

        async def get_status() -> httpx.Response:
            return await client.get(f"/tasks/{task_id}")

        done = await eventually(get_status, lambda r: r.json().get("state") == "succeeded")
        unknown = await client.get("/tasks/no-such-task")

    body = done.json()
    assert (body["id"], body["name"], body["result"], body["attempts"]) == (
        task_id, "emails.send", True, 1,
    )  # fmt: skip
    assert unknown.status_code == 404


async def test_the_api_cancels_a_task_by_id_without_the_task_code(deployment: None) -> None:
    api = importlib.import_module("examples.api").app
    transport = httpx.ASGITransport(app=api)
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        sent = await client.post(f"/emails/{uuid.uuid4()}")  # no worker runs it yet
        task_id = sent.json()["task_id"]
        cancelled = await client.post(f"/tasks/{task_id}/cancel")
        status = await client.get(f"/tasks/{task_id}")
        again = await client.post(f"/tasks/{task_id}/cancel")
        unknown = await client.post("/tasks/no-such-task/cancel")
    assert (cancelled.status_code, cancelled.json()) == (200, {"cancelled": True})
    assert status.json()["state"] == "cancelled"
    assert again.json() == {"cancelled": True}
    assert unknown.status_code == 404


async def test_the_workflows_example_runs_on_the_embedded_broker_and_prints_its_results() -> None:
    ran = await run_python("examples/workflows.py", env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    out = ran.stdout
    assert "chain(price('apple'), times(10))      -> 30" in out
    assert "group(price x 3)                      -> [3, 4, 2]" in out
    assert "chord(price x 3, total)               -> 9" in out
    assert "chain(chord(...), times(3), times.si) -> 1" in out
    assert "-> TaskFailed: RuntimeError" in out
    assert "-> paged payments about " in out
    assert "-> ['succeeded', 'failed', None]" in out
    assert "send_workflow(..., 'order-7')         -> 10" in out
