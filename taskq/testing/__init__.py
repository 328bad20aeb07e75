"""Testing an application's own tasks: a pytest plugin, and the functions behind it.

Installed with taskq (``pytest11`` entry point ``taskq``), it does nothing until used.
Name the application's app in the pytest configuration::

    [tool.pytest.ini_options]
    taskq_app = "shop.tasks:app"

and tests get

- ``taskq_app``: that app object, switched to a fresh embedded broker and store for the
  test whatever URLs it was given (nothing reaches RabbitMQ or Redis), put back after;
- ``taskq_worker``: a :class:`~taskq.Worker` of it running in the background;
- ``taskq_drain``: ``await taskq_drain(app, include_delayed=False)`` runs every queued
  task on an in-process worker until none is queued or running (with
  ``include_delayed=True``, delayed tasks and retries too, without waiting out their
  delay);
- ``sent_tasks``: ``sent_tasks(app, name=None)``, what was published, in order, each
  with ``.id``, ``.task``, ``.args``, ``.kwargs``.

``taskq_drain`` and ``sent_tasks`` are also plain functions of this module, and
:func:`embedded` switches any app outside the fixture::

    async def test_signup_sends_a_welcome_email(taskq_app, taskq_drain, sent_tasks):
        await signup("ada@example.com")                  # the application's own code
        [email] = sent_tasks(taskq_app, "emails.send")
        assert email.args == ["ada@example.com", "Welcome!"]
        await taskq_drain(taskq_app)
        assert (await taskq_app.handle(email.id).status()).state == "succeeded"

The async fixture (``taskq_worker``) needs pytest-asyncio, as async tests do. Loaded in
every pytest session of a project where taskq is installed, the plugin only adds an ini
option and four fixtures; nothing runs unless a test asks for one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from taskq.app import TaskQueue
from taskq.cli.common import AppImportError, load_app
from taskq.testing.broker import SentTask, TestingBroker
from taskq.testing.drain import drain as taskq_drain
from taskq.testing.embedded import embedded, sent_tasks
from taskq.worker import Worker

__all__ = [
    "SentTask",
    "TestingBroker",
    "embedded",
    "sent_tasks",
    "taskq_drain",
]

#: The ini option naming the application's app.
INI_APP = "taskq_app"


# -- the plugin -------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_APP,
        "taskq app of the project under test, 'package.module:attribute' "
        "(the taskq_app fixture switches it to the embedded broker and store)",
        default="",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    path = config.getini(INI_APP)
    return f"taskq: {INI_APP} = {path} (embedded broker and store)" if path else None


@pytest.fixture(name="taskq_app")
def _taskq_app(request: pytest.FixtureRequest) -> Iterator[TaskQueue]:
    """The project's app (ini option ``taskq_app``) on a fresh embedded broker and store."""
    path = request.config.getini(INI_APP)
    if not path:
        pytest.fail(
            f"the {INI_APP} fixture needs the app named in the pytest configuration, e.g. "
            f'`{INI_APP} = "shop.tasks:app"` under [tool.pytest.ini_options] '
            f"(or `{INI_APP} = shop.tasks:app` in pytest.ini)",
            pytrace=False,
        )
    try:
        app = load_app(path)
    except AppImportError as exc:
        pytest.fail(f"{INI_APP} = {path}: {exc}", pytrace=False)
    with embedded(app):
        yield app


@pytest.fixture(name="taskq_drain")
def _taskq_drain() -> Callable[..., Any]:
    """``await taskq_drain(app, include_delayed=False)``: see :func:`drain`."""
    return taskq_drain


@pytest.fixture(name="sent_tasks")
def _sent_tasks() -> Callable[..., list[SentTask]]:
    """``sent_tasks(app, name=None)``: see :func:`sent_tasks`."""
    return sent_tasks


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture(name="taskq_worker")
    async def _taskq_worker(taskq_app: TaskQueue) -> AsyncIterator[Worker]:
        """A :class:`~taskq.Worker` of ``taskq_app`` consuming in the background of the
        test's event loop; stopped (gracefully) after the test."""
        async with Worker(taskq_app) as worker:
            yield worker

else:

    @pytest.fixture(name="taskq_worker")
    def _taskq_worker_needs_pytest_asyncio() -> None:
        pytest.fail(
            "the taskq_worker fixture runs on the test's event loop: install pytest-asyncio",
            pytrace=False,
        )
