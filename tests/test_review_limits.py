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
