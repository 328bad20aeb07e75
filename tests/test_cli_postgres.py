"""The ``taskq`` command on a PostgreSQL store, in subprocesses configured only by
TASKQ_* variables: ``taskq worker --processes 2`` (workers forked by the supervisor,
each with its own pool), ``send --wait``, ``status --json`` and ``status --task
--state``, then the worker stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from taskq import TaskQueue
from taskq.cli import RET_OK
from taskq.stores.postgres_schema import schema_name
from tests.cli_app import TASK_NAMES
from tests.conftest import drop_pg_schema
from tests.deployment import ROOT, environment, run_python

APP = "tests.cli_app:app"


@pytest_asyncio.fixture
async def env(amqp_url: str, pg_url: str, exchange: str) -> AsyncIterator[dict[str, str]]:
    yield environment(broker_url=amqp_url, store_url=pg_url, exchange=exchange)
    app = TaskQueue(broker=amqp_url, store="memory://", exchange=exchange)
    try:
        await app.broker.connect()
        await app.broker.destroy(TASK_NAMES)
    finally:
        await app.close()
        await drop_pg_schema(pg_url, schema_name(exchange))


async def test_worker_send_and_status_on_a_postgres_store(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as stderr:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskq", "worker", APP, "--processes", "2",
            "--concurrency", "4", "--log-format", "json",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count('"worker started"') < 2:
            assert worker.returncode is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)

        sent = await run_python(
            "-m", "taskq", "send", "cli.add", "--args", "[20, 22]", "--wait", "20", env=env
        )
        assert sent.returncode == RET_OK, sent.stderr
        task_id, result = sent.lines
        assert json.loads(result) == 42

        status = await run_python("-m", "taskq", "status", task_id, "--json", env=env)
        assert status.returncode == RET_OK, status.stderr
        record = json.loads(status.stdout)
        assert (record["state"], record["result"], record["args"]) == ("succeeded", 42, [20, 22])
        listed = await run_python(
            "-m", "taskq", "status", "--task", "cli.add", "--state", "succeeded", "--json",
            env=env,
        )  # fmt: skip
        assert listed.returncode == RET_OK, listed.stderr
        assert task_id in listed.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == RET_OK, log.read_text()


async def test_taskq_store_migrate_with_app_uses_that_app_s_store_and_schema(
    pg_url: str, tmp_path: Path
) -> None:
    """``taskq store migrate --app APP_PATH``: the app's own store URL and schema, not
    the environment's (which names Redis here)."""
    schema = f"taskq_test_{uuid.uuid4().hex[:10]}"
    module = f"migrate_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from taskq import TaskQueue\n"
        f"app = TaskQueue(broker='memory://', store={pg_url!r}, store_schema={schema!r})\n"
    )
    env = environment(store_url="redis://127.0.0.1:1/0")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    try:
        ran = await run_python("-m", "taskq", "store", "migrate", "--app", f"{module}:app", env=env)
        again = await run_python(
            "-m", "taskq", "store", "migrate", "--app", f"{module}:app", env=env
        )
    finally:
        await drop_pg_schema(pg_url, schema)
    assert ran.returncode == RET_OK, ran.stderr
    assert f"schema {schema} migrated from version 0 to" in ran.stdout
    assert again.returncode == RET_OK and "up to date" in again.stdout
