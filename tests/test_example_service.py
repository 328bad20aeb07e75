"""The example service (``examples/service``) works as the README runs it: uvicorn
serving the API, and the ``scheduler`` and ``critical`` worker pools, each a process of
its own against RabbitMQ and Redis; the ``internal`` app's tasks run inside the API."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from examples.service.settings import AppSettings
from tests.deployment import ROOT, environment, tear_down
from tests.helpers import eventually

TASKS = {"critical": ["critical.payments.charge"], "scheduler": ["scheduler.notifications.fire"]}
START_TIMEOUT = 15.0


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def task_ids(self) -> set[str]:
        """The task ids in this worker's JSON log lines: the tasks it handled."""
        lines = (json.loads(line) for line in self.text().splitlines() if line.startswith("{"))
        return {line["task_id"] for line in lines if "task_id" in line}

    async def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)


@pytest_asyncio.fixture
async def service_env(
    amqp_url: str, redis_url: str, exchange: str
) -> AsyncIterator[dict[str, str]]:
    """Settings of a service of this test's own: the ``critical`` and ``scheduler`` apps
    on exchanges named after the test's; their queues and status records are deleted
    afterwards."""
    env = {k: v for k, v in environment().items() if not k.startswith(("CRITICAL_", "SCHEDULER_"))}
    for name in TASKS:
        env[f"{name.upper()}_BROKER_URL"] = amqp_url
        env[f"{name.upper()}_STORE_URL"] = redis_url
        env[f"{name.upper()}_EXCHANGE"] = f"{exchange}-{name}"
    yield env
    for name, tasks in TASKS.items():
        await tear_down(amqp_url, redis_url, f"{exchange}-{name}", tasks)


@pytest_asyncio.fixture
async def spawn(service_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    """Starts ``python *args`` in the repository's root, output to a log file (never a
    pipe that could fill up); kills whatever still runs afterwards."""
    started: list[Process] = []

    async def start(*args: str) -> Process:
        log = tmp_path / f"process-{len(started)}.log"
        with log.open("wb") as output:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args,
                cwd=ROOT, env=service_env, stdout=output, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        started.append(Process(proc, log))
        return started[-1]

    yield start
    for process in started:
        if process.proc.returncode is None:
            process.proc.kill()
        await process.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def worker_started(worker: Process, processes: int = 1) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while worker.text().count('"worker started"') < processes:
        assert worker.proc.returncode is None, f"worker exited early:\n{worker.text()}"
        assert time.monotonic() < deadline, f"worker did not start:\n{worker.text()}"
        await asyncio.sleep(0.05)


async def api_serving(api: Process, client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            await client.get("/tasks/internal/none")
            return
        except httpx.TransportError:
            assert api.proc.returncode is None, f"the API exited early:\n{api.text()}"
            assert time.monotonic() < deadline, f"the API did not start:\n{api.text()}"
            await asyncio.sleep(0.05)


async def finished(client: httpx.AsyncClient, app: str, task_id: str) -> dict[str, Any]:
    """The task's status once it is final (succeeded or failed)."""

    async def get() -> httpx.Response:
        return await client.get(f"/tasks/{app}/{task_id}")

    done = await eventually(
        get,
        lambda r: r.status_code == 200 and r.json()["state"] in ("succeeded", "failed"),
        timeout=10,
    )
    status: dict[str, Any] = done.json()
    return status


@pytest.mark.timeout(30)
async def test_the_service_sends_by_name_to_its_two_worker_pools_and_runs_internal_tasks_itself(
    spawn: Any,
) -> None:
    # Given the API under uvicorn and one worker pool per RabbitMQ app
    port = free_port()
    api = await spawn("-m", "uvicorn", "examples.service.api:app", "--port", str(port))
    pools = {  # as the README starts them, the scheduler's under the supervisor
        name: await spawn(
            "-m", "taskq", "worker", f"workers.{name}:app", "--log-format", "json", *args
        )
        for name, args in (("scheduler", ["--processes", "2"]), ("critical", []))
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        await asyncio.gather(
            api_serving(api, client),
            worker_started(pools["scheduler"], processes=2),
            worker_started(pools["critical"]),
        )

        # When a client asks for notifications, a charge and an audit record
        users = [str(uuid.uuid4()), str(uuid.uuid4())]
        order = str(uuid.uuid4())
        sent = await asyncio.gather(
            client.post("/notifications", json={"user_ids": users, "message": "hi"}),
            client.post(f"/payments/{order}", params={"amount_cents": 1250}),
            client.post("/audit", json={"event": "login", "subject": users[0]}),
        )
        assert [r.status_code for r in sent] == [202, 202, 202], [r.text for r in sent]
        notify_id, charge_id, audit_id = (r.json()["task_id"] for r in sent)

        # Then each succeeds, reported by the app that sent it
        notified = await finished(client, "scheduler", notify_id)
        charged = await finished(client, "critical", charge_id)
        audited = await finished(client, "internal", audit_id)
        elsewhere = await client.get(f"/tasks/critical/{notify_id}")  # another app's store
        no_app = await client.get(f"/tasks/nightly/{notify_id}")

    assert (notified["name"], notified["state"], notified["result"]) == (
        "scheduler.notifications.fire", "succeeded", {"notified": 2},
    )  # fmt: skip
    assert (charged["name"], charged["state"], charged["result"]) == (
        "critical.payments.charge",
        "succeeded",
        {"order_id": order, "amount_cents": 1250, "charged": True},
    )
    assert (audited["name"], audited["state"]) == ("internal.audit.record", "succeeded")
    assert audited["result"]["pid"] == api.proc.pid  # ran inside the API process
    assert (elsewhere.status_code, no_app.status_code) == (404, 404)
    # ... each task ran in its own pool, never in the other
    assert notify_id in pools["scheduler"].task_ids() - pools["critical"].task_ids()
    assert charge_id in pools["critical"].task_ids() - pools["scheduler"].task_ids()

    # And everything stops cleanly on SIGTERM, the API's internal worker with it
    codes = await asyncio.gather(api.stop(), *(pool.stop() for pool in pools.values()))
    # uvicorn 0.29+ ends by raising the signal again once shut down (exit -15), as a
    # server stopped by SIGTERM should; the pools exit 0.
    assert codes[0] in (0, -signal.SIGTERM) and codes[1:] == [0, 0], (codes, api.text())
    assert "worker stopped" in api.text() and "Application shutdown complete" in api.text()


def test_each_app_reads_its_own_variables_and_never_shows_a_password() -> None:
    environ = {
        "CRITICAL_BROKER_URL": "amqp://shop:s3cret@rabbit.internal:5672/shop",
        "CRITICAL_EXCHANGE": "payments",
        "SCHEDULER_STORE_URL": "redis://:hunter2@redis.internal:6379/1",
    }

    critical = AppSettings.from_env("critical", environ)
    scheduler = AppSettings.from_env("scheduler", environ)

    assert (critical.broker_url, critical.exchange) == (environ["CRITICAL_BROKER_URL"], "payments")
    assert critical.store_url == "redis://127.0.0.1:6379/0"  # the local default
    assert (scheduler.broker_url, scheduler.exchange) == (
        "amqp://guest:guest@127.0.0.1:5672/",
        "scheduler",
    )
    assert "s3cret" not in repr(critical) and "***" in repr(critical)
    assert "hunter2" not in repr(scheduler) and "***" in repr(scheduler)


@pytest.mark.parametrize("name", ["critical", "scheduler"])
def test_an_app_left_unset_uses_the_local_services_and_is_named_after_itself(name: str) -> None:
    settings = AppSettings.from_env(name, {})

    assert settings == AppSettings(
        "amqp://guest:guest@127.0.0.1:5672/", "redis://127.0.0.1:6379/0", name
    )
