"""The pytest plugin for applications' own tests (taskq.testing), run the way a user's
project runs it: pytester writes a small project whose app points at RabbitMQ and Redis
ports where nothing listens, and runs pytest on it in a subprocess, with the plugin
loaded by its entry point."""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest

pytest_plugins = ["pytester"]

#: The user's project: an app with real URLs (nothing listens there), and its tasks.
TASKS = """
from taskq import TaskQueue

app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:9/", store="redis://127.0.0.1:9/0",
                exchange="shop")
attempts = {}

@app.task(name="emails.send")
def send_email(address: str, subject: str) -> str:
    return f"sent {subject} to {address}"

@app.task(name="orders.place")
async def place_order(order_id: int, address: str) -> int:
    await send_email.delay(address, f"order {order_id}")   # a task sending a task
    return order_id

@app.task(name="cache.clear", broadcast=True)
async def clear_cache(key: str) -> str:
    return key

@app.task(name="orders.flaky", max_retries=3, retry_backoff=60, retry_jitter=False)
async def flaky(key: str) -> int:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise RuntimeError("not yet")
    return attempts[key]
"""

INI = """
[pytest]
taskq_app = shop.tasks:app
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

TESTS = """
import time
import pytest
from taskq import TaskState
from taskq.testing import embedded, sent_tasks as sent, taskq_drain as drain
from shop import tasks
from shop.tasks import app, clear_cache, place_order, send_email, flaky


async def test_the_fixture_is_the_projects_own_app_on_the_embedded_backend(taskq_app):
    assert taskq_app is app
    assert taskq_app.broker.display_url == "memory://"
    assert taskq_app.settings.broker_url == taskq_app.settings.store_url == "memory://"
    assert (await send_email.delay("a@b.c", "hi")).id  # nothing listens on port 9


async def test_sent_tasks_lists_what_was_published_in_order(taskq_app, sent_tasks):
    first = await send_email.delay("a@b.c", "one")
    second = await place_order.send(args=[7, "a@b.c"], task_id="order-7", countdown=30)
    await taskq_app.send("emails.send", kwargs={"address": "x@y.z", "subject": "two"})
    await send_email.send_many([(("c@d.e", "three"), {}), (("f@g.h", "four"), {})])

    every = sent_tasks(taskq_app)
    assert [t.task for t in every] == ["emails.send", "orders.place"] + ["emails.send"] * 3
    assert [t.args[1] for t in every[3:]] == ["three", "four"]
    assert (every[0].id, every[0].args, every[0].kwargs) == (first.id, ["a@b.c", "one"], {})
    assert (every[1].id, every[1].delay) == (second.id, 30)
    assert [t.kwargs for t in sent_tasks(taskq_app, "emails.send")][1] == {
        "address": "x@y.z", "subject": "two"}
    assert sent_tasks is sent


async def test_each_test_starts_from_an_empty_broker_and_store(taskq_app, sent_tasks):
    assert sent_tasks(taskq_app) == []
    assert await taskq_app.handle("order-7").status() is None


async def test_drain_runs_queued_tasks_and_the_tasks_they_send(taskq_app, taskq_drain):
    handle = await place_order.delay(1, "a@b.c")
    assert taskq_drain is drain

    await taskq_drain(taskq_app)

    assert (await handle.status()).state is TaskState.SUCCEEDED
    [email] = sent(taskq_app, "emails.send")
    status = await taskq_app.handle(email.id).status()
    assert status.state is TaskState.SUCCEEDED and status.result == "sent order 1 to a@b.c"


async def test_drain_leaves_delayed_tasks_unless_asked(taskq_app, taskq_drain):
    later = await send_email.send(args=["a@b.c", "later"], countdown=3600)
    retried = await flaky.delay("k")

    await taskq_drain(taskq_app)
    assert (await later.status()).state is TaskState.QUEUED
    assert (await retried.status()).state is TaskState.RETRYING  # its backoff: 60 s

    started = time.monotonic()
    await taskq_drain(taskq_app, include_delayed=True)
    assert time.monotonic() - started < 5
    assert (await later.status()).state is TaskState.SUCCEEDED
    done = await retried.status()
    assert (done.state, done.attempts, done.result) == (TaskState.SUCCEEDED, 3, 3)
    assert [t.id for t in sent(taskq_app, "orders.flaky")] == [retried.id]  # once


async def test_the_worker_fixture_runs_tasks_in_the_background(taskq_app, taskq_worker):
    handle = await send_email.delay("a@b.c", "now")
    assert await handle.result(timeout=5) == "sent now to a@b.c"


async def test_broadcast_calls_are_listed_too(taskq_app, taskq_worker, sent_tasks):
    handle = await clear_cache.delay("prices")
    [call] = sent_tasks(taskq_app, "cache.clear")
    assert (call.id, call.args) == (handle.id, ["prices"])


def test_the_app_is_given_back_after_the_test():
    assert app.settings.broker_url == "amqp://guest:guest@127.0.0.1:9/"
    assert type(app.broker).__name__ == "AmqpBroker"
    assert type(app.store).__name__ == "RedisStore"


async def test_the_functions_work_without_the_fixtures():
    with embedded(app):
        handle = await send_email.delay("a@b.c", "plain")
        await drain(app)
        assert [t.id for t in sent(app)] == [handle.id]
        assert await handle.result(timeout=1) == "sent plain to a@b.c"
    assert app.broker.display_url != "memory://"
"""


def _project(pytester: pytest.Pytester, ini: str = INI) -> None:
    pytester.makeini(ini)
    pytester.mkpydir("shop")
    (pytester.path / "shop" / "tasks.py").write_text(textwrap.dedent(TASKS))


def test_the_plugin_is_installed_under_its_entry_point() -> None:
    [entry] = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "taskq"]
    assert entry.value == "taskq.testing"


def test_the_fixtures_run_a_projects_own_tasks_on_the_embedded_backend(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester)
    pytester.makepyfile(test_shop=TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)

    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["taskq: taskq_app = shop.tasks:app (embedded broker and store)"])


def test_a_project_that_does_not_use_the_plugin_is_left_alone(pytester: pytest.Pytester) -> None:
    # (pytest-asyncio, installed here, warns about its own unset option otherwise)
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_plain="""
        def test_plain():
            assert True
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)

    result.assert_outcomes(passed=1)
    assert "taskq:" not in result.stdout.str()  # no header line, no warning, no error


def test_the_app_fixture_without_the_ini_option_says_what_to_write(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester, ini="[pytest]\nasyncio_mode = auto\n")
    pytester.makepyfile(test_shop="def test_app(taskq_app):\n    pass\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*taskq_app fixture needs the app named*shop.tasks:app*"])
