"""The app and its tasks, without a broker: registration, configuration, sending rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from taskq import ConfigurationError, PublishError, TaskQueue, TaskState, UnknownTask
from taskq.brokers.memory import MemoryBroker
from taskq.message import TaskMessage
from taskq.topology import QueueSpec, Topology, topic_matches


def test_a_task_is_named_after_its_module_and_function_unless_named() -> None:
    app = TaskQueue()

    @app.task
    def plain() -> None: ...

    @app.task(name="emails.send")
    def named() -> None: ...

    assert plain.name == f"{__name__}.plain"
    assert named.name == "emails.send"
    assert app.get_task("emails.send") is named
    with pytest.raises(UnknownTask):
        app.get_task("nope")


def test_bad_task_names_and_duplicates_are_refused_where_they_are_written() -> None:
    app = TaskQueue()
    for bad in ("", "emails.*", "a..b", "has space", "x#"):
        with pytest.raises(ConfigurationError, match="not valid"):
            app.task(name=bad)(lambda: None)

    @app.task(name="dup")
    def one() -> None: ...

    with pytest.raises(ConfigurationError, match="already registered"):
        app.task(name="dup")(lambda: None)
    with pytest.raises(ConfigurationError, match="queue_type"):
        app.task(name="q", queue_type="stream")(lambda: None)  # type: ignore[arg-type]


def test_urls_and_exchange_come_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKQ_BROKER_URL", "amqp://user:hunter2@127.0.0.1:5672/")
    monkeypatch.setenv("TASKQ_STORE_URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("TASKQ_EXCHANGE", "billing")
    app = TaskQueue()
    assert app.topology.exchange == "billing"
    assert app.broker.display_url == "amqp://user:***@127.0.0.1:5672/"
    assert app.store.display_url == "redis://:***@127.0.0.1:6379/0"
    assert "hunter2" not in repr(app)
    monkeypatch.delenv("TASKQ_BROKER_URL")
    monkeypatch.delenv("TASKQ_STORE_URL")
    assert TaskQueue().broker.display_url == "memory://"


def test_an_unknown_url_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported broker URL 'kafka://u:\\*\\*\\*@h/'"):
        TaskQueue(broker="kafka://u:pw@h/")
    with pytest.raises(ConfigurationError, match="unsupported store URL"):
        TaskQueue(store="mongodb://h/")


def test_topic_patterns_follow_amqp_rules() -> None:
    assert topic_matches("emails.*", "emails.send")
    assert not topic_matches("emails.*", "emails.send.bulk")
    assert topic_matches("emails.#", "emails") and topic_matches("emails.#", "emails.send.bulk")
    assert topic_matches("#", "anything.at.all") and not topic_matches("*", "two.words")


def test_queue_names_and_arguments_are_derived_in_one_place() -> None:
    top = Topology("shop")
    assert top.queue_name("emails.send") == "shop.emails.send"
    assert top.dead_exchange == top.dead_queue == "shop.dead"
    assert top.queue_arguments("quorum")["x-queue-type"] == "quorum"
    assert top.queue_arguments("quorum")["x-dead-letter-exchange"] == "shop.dead"
    assert top.queue_arguments("classic")["x-queue-type"] == "classic"


def test_a_message_with_only_the_four_fields_decodes_and_extra_fields_are_ignored() -> None:
    msg = TaskMessage.decode(b'{"id": "1", "task": "t", "args": [1], "kwargs": {"a": 2}, "x": 0}')
    assert (msg.id, msg.task, msg.args, msg.kwargs) == ("1", "t", [1], {"a": 2})


class _RefusingBroker(MemoryBroker):
    async def publish(
        self,
        queue: QueueSpec,
        body: bytes,
        *,
        task_id: str,
        delay: float = 0.0,
        priority: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        raise PublishError("not confirmed (test)", task_id=task_id)


async def test_a_publish_that_fails_raises_and_removes_its_queued_record() -> None:
    app = TaskQueue(broker=_RefusingBroker(Topology("t")))

    @app.task
    async def job() -> None: ...

    task_id = str(uuid.uuid4())
    async with app:
        with pytest.raises(PublishError):
            await job.send(task_id=task_id)
        assert await app.handle(task_id).status() is None
        # A re-send with the same id tries to publish again (it is not "already known").
        with pytest.raises(PublishError):
            await job.send(task_id=task_id)


async def test_an_explicit_ids_queued_record_is_written_before_the_publish() -> None:
    """An explicit task id is an idempotency key: its record goes in first. (A generated
    one is written while its message is published: taskq.sending.)"""
    seen: list[Any] = []

    class _Spy(MemoryBroker):
        async def publish(
            self,
            queue: QueueSpec,
            body: bytes,
            *,
            task_id: str,
            delay: float = 0.0,
            priority: int = 0,
            headers: Mapping[str, str] | None = None,
        ) -> None:
            seen.append(await app.store.get(task_id))
            await super().publish(queue, body, task_id=task_id)

    app = TaskQueue(broker=_Spy(Topology("t")))

    @app.task
    async def job() -> None: ...

    async with app:
        await job.send(task_id="job-1")
    assert seen[0] is not None and seen[0].state is TaskState.QUEUED


def test_passwords_are_masked_wherever_a_url_carries_them() -> None:
    from taskq.urls import mask_url

    assert mask_url("amqp://guest:s3cret@[::1]:5672/vh") == "amqp://guest:***@[::1]:5672/vh"
    assert mask_url("redis://h:6379/0?password=s3cret&db=1") == "redis://h:6379/0?password=***&db=1"
    assert mask_url("amqp://h/") == "amqp://h/"
    app = TaskQueue(store="redis://127.0.0.1:6379/0?password=s3cret")
    assert "s3cret" not in repr(app)


def test_a_driver_message_is_scrubbed_of_every_secret_its_url_carries() -> None:
    from taskq.urls import scrub

    url = "amqp://guest:p%40ss@127.0.0.1:5672/"
    text = f"cannot connect to {url}: login p@ss refused, p%40ss"
    assert scrub(text, url) == (
        "cannot connect to amqp://guest:***@127.0.0.1:5672/: login *** refused, ***"
    )
    query = "redis://h:6379/0?password=s3cret"
    assert "s3cret" not in scrub(f"{query} said: bad s3cret", query)
