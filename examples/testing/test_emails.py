"""Testing an application's tasks with taskq's pytest plugin.

The application's code runs as it does in production (it sends with ``.delay()`` and
``.send()``); its app is switched to the embedded broker and store for each test, so
the tests need no RabbitMQ or Redis, and start from empty queues every time.
"""

from __future__ import annotations

import pytest
from shop import mail
from shop.accounts import TIPS_AFTER, sign_up
from shop.tasks import send_email

from taskq import TaskQueue, TaskState


async def test_signing_up_queues_a_welcome_email_now_and_tips_later(
    taskq_app: TaskQueue, sent_tasks
) -> None:
    user_id = await sign_up("ada@example.com")

    welcome, tips = sent_tasks(taskq_app, "emails.send")
    assert welcome.args == ["ada@example.com", "welcome", {"user_id": user_id}]
    assert (welcome.delay, tips.delay) == (0, TIPS_AFTER)
    assert tips.args[1] == "tips"


async def test_the_welcome_email_goes_out_and_the_tips_wait(
    taskq_app: TaskQueue, taskq_drain, sent_tasks, outbox
) -> None:
    await sign_up("ada@example.com")

    await taskq_drain(taskq_app)  # runs what is queued, leaves the delayed
    assert outbox == [("ada@example.com", "welcome")]

    await taskq_drain(taskq_app, include_delayed=True)  # three days, at once
    assert outbox == [("ada@example.com", "welcome"), ("ada@example.com", "tips")]
    for sent in sent_tasks(taskq_app):
        status = await taskq_app.handle(sent.id).status()
        assert status.state is TaskState.SUCCEEDED


async def test_an_smtp_outage_is_retried(
    taskq_app: TaskQueue, taskq_drain, sent_tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SMTP server that refuses the first connection
    calls = []
    deliver = mail.deliver

    def flaky(to: str, template: str, context: dict[str, str]) -> str:
        calls.append(template)
        if len(calls) == 1:
            raise ConnectionError("SMTP server unavailable")
        return deliver(to, template, context)

    monkeypatch.setattr(mail, "deliver", flaky)

    # When an email is sent
    handle = await send_email.delay("ada@example.com", "welcome", {})
    await taskq_drain(taskq_app, include_delayed=True)  # the 30 s backoff is skipped

    # Then the second attempt delivered it
    status = await handle.status()
    assert (status.state, status.attempts) == (TaskState.SUCCEEDED, 2)
    assert [t.id for t in sent_tasks(taskq_app)] == [handle.id]  # one task, two attempts


async def test_a_worker_running_in_the_background(taskq_app: TaskQueue, taskq_worker) -> None:
    handle = await send_email.delay("ada@example.com", "welcome", {})

    assert await handle.result(timeout=5) == "welcome to ada@example.com"
