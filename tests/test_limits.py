"""AMQP short strings (queue names, correlation_id) stop at 255 bytes: what would not
fit is refused by taskq, in its own words, on both backends alike."""

from __future__ import annotations

import pytest

from taskq import ConfigurationError, TaskQueue


async def test_an_explicit_task_id_too_long_for_amqp_is_refused_before_anything_is_written(
    app: TaskQueue,
) -> None:
    @app.task
    async def job(x: int) -> int:
        return x

    task_id = "k" * 300  # travels as correlation_id, an AMQP short string
    with pytest.raises(ConfigurationError, match="255"):
        await job.send(args=(1,), task_id=task_id)
    with pytest.raises(ConfigurationError, match="255"):
        await app.send(job.name, args=[1], task_id=task_id)
    assert await app.handle(task_id).status() is None
    assert (await job.send(args=(1,), task_id="k" * 255)).id == "k" * 255


def test_a_task_whose_queue_name_is_too_long_for_amqp_is_refused_where_it_is_written() -> None:
    app = TaskQueue(broker="memory://", store="memory://", exchange="e" * 100)
    with pytest.raises(ConfigurationError, match="255"):
        app.task(name="a" * 160)(lambda: None)  # a valid name (190 at most), too long here
    assert app.task(name="a" * 154)(lambda: None).queue.task == "a" * 154  # 255 exactly


async def test_sending_by_a_name_whose_queue_name_is_too_long_is_refused() -> None:
    app = TaskQueue(broker="memory://", store="memory://", exchange="e" * 100)
    with pytest.raises(ConfigurationError, match="255"):
        await app.send("a" * 160, args=[])
    assert await app.store.get("anything") is None
