"""Settings: an argument wins over its ``TASKQ_*`` variable, which wins over the
default; ``taskq config`` shows the effective values, passwords masked."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import pytest

from taskq import TaskQueue
from taskq.errors import ConfigurationError
from taskq.settings import TaskqSettings
from taskq.worker import Worker
from tests.deployment import ROOT, environment, run_python, tear_down
from tests.logging_app import TASK_NAMES

SECRET = "s3cr3t-pw"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TASKQ_* setting of the machine running the tests leaks into these."""
    for name in TaskqSettings.model_fields:
        monkeypatch.delenv(TaskqSettings.env_name(name), raising=False)


# -- precedence ---------------------------------------------------------------------


def test_an_app_option_comes_from_the_argument_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert TaskQueue().topology.exchange == "taskq"
    assert TaskQueue().consumer_timeout == 1800.0

    monkeypatch.setenv("TASKQ_EXCHANGE", "from-env")
    monkeypatch.setenv("TASKQ_CONSUMER_TIMEOUT", "600")
    app = TaskQueue()
    assert app.topology.exchange == "from-env"
    assert app.consumer_timeout == 600.0
    assert app.settings.sources(app.arguments)["exchange"] == "env"

    app = TaskQueue(exchange="from-arg", consumer_timeout=900)
    assert app.topology.exchange == "from-arg"
    assert app.consumer_timeout == 900.0
    assert app.settings.sources(app.arguments)["exchange"] == "argument"


def test_the_broker_and_store_urls_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, amqp_url: str, redis_url: str
) -> None:
    monkeypatch.setenv("TASKQ_BROKER_URL", amqp_url)
    monkeypatch.setenv("TASKQ_STORE_URL", redis_url)

    app = TaskQueue()

    assert type(app.broker).__name__ == "AmqpBroker"
    assert type(app.store).__name__ == "RedisStore"
    assert TaskQueue(broker="memory://", store="memory://").broker.display_url == "memory://"


def test_a_worker_option_comes_from_the_argument_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = TaskQueue()
    default = Worker(app)
    assert (default.concurrency, default.threads, default.grace) == (16, 16, 30.0)

    monkeypatch.setenv("TASKQ_CONCURRENCY", "3")
    monkeypatch.setenv("TASKQ_GRACE", "5")
    from_env = Worker(app)
    assert (from_env.concurrency, from_env.threads, from_env.grace) == (3, 3, 5.0)

    from_args = Worker(app, concurrency=7, grace=1.5)
    assert (from_args.concurrency, from_args.threads, from_args.grace) == (7, 7, 1.5)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_EXCHANGE", "")
    assert TaskQueue().topology.exchange == "taskq"


def test_a_bad_value_in_the_environment_is_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKQ_CONCURRENCY", "many")
    with pytest.raises(ConfigurationError, match="TASKQ_CONCURRENCY='many'"):
        Worker(TaskQueue())
    monkeypatch.setenv("TASKQ_PUBLISH_TIMEOUT", "0")
    with pytest.raises(ConfigurationError, match="TASKQ_PUBLISH_TIMEOUT"):
        TaskQueue()


def test_the_settings_repr_never_shows_a_password() -> None:
    settings = TaskqSettings.load(broker_url=f"amqp://guest:{SECRET}@127.0.0.1:5672/")

    assert SECRET not in repr(settings)
    assert "amqp://guest:***@127.0.0.1:5672/" in repr(settings)
    assert settings.broker_url.endswith(f"{SECRET}@127.0.0.1:5672/")  # usable, not masked


# -- taskq config --------------------------------------------------------------------


async def test_taskq_config_shows_environment_values_with_the_password_masked(
    amqp_url: str,
) -> None:
    broker = amqp_url.replace("guest:guest@", f"guest:{SECRET}@")
    env = environment(
        broker_url=broker, store_url=f"redis://:{SECRET}@127.0.0.1:6379/0", concurrency="4"
    )

    human = await run_python("-m", "taskq", "config", env=env)
    machine = await run_python("-m", "taskq", "config", "--json", env=env)

    assert human.returncode == machine.returncode == 0, human.stderr + machine.stderr
    assert SECRET not in human.stdout + human.stderr + machine.stdout + machine.stderr
    assert "guest:***@" in human.stdout
    settings = json.loads(machine.stdout)
    assert settings["broker_url"]["value"] == broker.replace(SECRET, "***")
    assert settings["store_url"] == {
        "value": "redis://:***@127.0.0.1:6379/0",
        "source": "env",
        "env": "TASKQ_STORE_URL",
    }
    assert settings["concurrency"] == {"value": 4, "source": "env", "env": "TASKQ_CONCURRENCY"}
    assert settings["exchange"] == {"value": "taskq", "source": "default", "env": "TASKQ_EXCHANGE"}


async def test_taskq_config_of_an_app_shows_the_app_s_own_values(
    amqp_url: str, redis_url: str, exchange: str
) -> None:
    env = environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange)

    # Nothing is connected or declared: there is nothing to clean up.
    ran = await run_python("-m", "taskq", "config", "tests.cli_app:app", "--json", env=env)

    assert ran.returncode == 0, ran.stderr
    settings = json.loads(ran.stdout)
    assert settings["exchange"]["value"] == exchange
    assert settings["exchange"]["source"] == "env"
    assert settings["broker_url"]["value"].startswith("amqp://guest:***@")


async def test_taskq_config_refuses_a_bad_variable_in_one_line() -> None:
    ran = await run_python("-m", "taskq", "config", env=environment(grace="soon"))

    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines() == [
        "taskq: error: invalid settings: TASKQ_GRACE='soon': "
        "Input should be a valid number, unable to parse string as a number"
    ]


@pytest.mark.parametrize(("flags", "expected"), [((), 3), (("--concurrency", "5"), 5)])
async def test_taskq_worker_takes_a_flag_over_its_variable(
    flags: tuple[str, ...], expected: int, amqp_url: str, redis_url: str, exchange: str
) -> None:
    env = environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange, concurrency="3")
    try:
        started = await _worker_started(env, *flags)
    finally:
        await tear_down(amqp_url, redis_url, exchange, TASK_NAMES)

    assert started["concurrency"] == expected


async def _worker_started(env: dict[str, str], *flags: str) -> dict[str, Any]:
    """The ``worker started`` line of a ``taskq worker``, which is then stopped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq", "worker", "tests.logging_app:app",
        "--log-format", "json", *flags,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            while True:
                line = await proc.stderr.readline()
                assert line, "the worker exited before it started"
                event = json.loads(line)
                if event["event"] == "worker started":
                    return event  # type: ignore[no-any-return]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.communicate()
