"""Settings: every option of an app and of a worker, from arguments, the environment
(``TASKQ_*``) or defaults, in that order of precedence.

One model, so that a value means the same wherever it is read: ``TaskQueue(...)``, the
``Worker``, the ``taskq`` command and ``taskq config``, which prints it.

With ``TASKQ_CONCURRENCY=4`` in the environment:

>>> TaskqSettings.load(concurrency=8).concurrency         # an argument wins
8
>>> TaskqSettings.load(concurrency=None).concurrency      # None: not given
4
>>> TaskqSettings.load().grace                            # neither: the default
30.0

A variable set to the empty string counts as unset (``TASKQ_EXCHANGE= taskq ...`` in a
shell script that did not mean to set it). A bad value is refused with the variable
named, as a :class:`~taskq.errors.ConfigurationError`.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskq.errors import ConfigurationError
from taskq.stores import DEFAULT_TTL
from taskq.topology import QueueType
from taskq.urls import MEMORY_URL, mask_url

ENV_PREFIX = "TASKQ_"

#: Where a value came from, as :meth:`TaskqSettings.sources` tells.
Source = Literal["argument", "env", "default"]

#: Fields holding a URL, shown masked everywhere.
URL_FIELDS = ("broker_url", "store_url")


class TaskqSettings(BaseSettings):
    """The effective options. Build it with :meth:`load`, which takes the arguments
    actually given (``None`` = not given) and fills the rest from ``TASKQ_<NAME>``
    variables, then from the defaults below."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
    )

    # -- the app ----------------------------------------------------------------------
    #: The broker: ``amqp://`` / ``amqps://`` (vhost as the path) or the embedded ``memory://``;
    #: a cluster's nodes as URLs separated by ``;``.
    broker_url: str = MEMORY_URL
    #: The status store: ``redis://`` / ``rediss://``, ``redis+sentinel://``,
    #: ``postgresql://`` / ``postgres://`` or the embedded ``memory://``.
    store_url: str = MEMORY_URL
    #: The PostgreSQL store's schema; ``None``: named after the exchange.
    store_schema: str | None = None
    #: Names every object the app declares (queues, delay levels, dead letters).
    exchange: str = "taskq"
    #: Default queue type of task queues.
    queue_type: QueueType = "quorum"
    #: Cluster nodes each new quorum queue is replicated on; ``None``: RabbitMQ's default.
    queue_replicas: int | None = Field(None, ge=1)
    #: Seconds a publish waits for the broker's confirm.
    publish_timeout: float = Field(10.0, gt=0)
    #: Seconds a finished task's record is kept; ``None``: forever.
    result_ttl: float | None = Field(DEFAULT_TTL, gt=0)
    #: The broker's own consumer timeout (RabbitMQ's default: 30 minutes).
    consumer_timeout: float = Field(1800.0, gt=0)
    #: Bytes a task message may have.
    max_message_size: int = Field(1024 * 1024, ge=1)
    #: Publish lifecycle events to ``taskq.events`` (:mod:`taskq.events`).
    events: bool = False

    # -- the worker -------------------------------------------------------------------
    #: Tasks run at once per worker process, and the prefetch of each task queue.
    concurrency: int = Field(16, ge=1)
    #: Threads for sync tasks; ``None``: the concurrency.
    threads: int | None = Field(None, ge=1)
    #: Seconds running tasks may finish on stop before they are cancelled and requeued.
    grace: float = Field(30.0, ge=0)
    #: Worker processes the launcher starts.
    processes: int = Field(1, ge=1)
    #: Tasks a worker process runs before it is replaced; ``None``: never replaced.
    max_tasks_per_child: int | None = Field(None, ge=1)

    # -- logging (the CLI only) -------------------------------------------------------
    #: ``None``: the command's own default (info for a worker, warning for the others).
    log_level: Literal["debug", "info", "warning", "error", "critical"] | None = None
    #: ``console``, ``json``, or ``auto`` (console on a terminal, JSON otherwise).
    log_format: Literal["auto", "console", "json"] = "auto"

    @classmethod
    def load(cls, **arguments: Any) -> TaskqSettings:
        """Settings with ``arguments`` (those not ``None``) over the environment over
        the defaults; a bad value raises :class:`ConfigurationError` naming it."""
        given = {name: value for name, value in arguments.items() if value is not None}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
        try:
            return cls(**given)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc, given)) from None

    @staticmethod
    def env_name(field: str) -> str:
        return f"{ENV_PREFIX}{field.upper()}"

    def sources(self, arguments: dict[str, Any] | None = None) -> dict[str, Source]:
        """Where each value came from, given the ``arguments`` passed to :meth:`load`.
        The environment is read again: ask right after loading."""
        arguments = arguments or {}
        found: dict[str, Source] = {}
        for name in type(self).model_fields:
            if arguments.get(name) is not None:
                found[name] = "argument"
            elif os.environ.get(self.env_name(name)):
                found[name] = "env"
            else:
                found[name] = "default"
        return found

    def display(self) -> dict[str, Any]:
        """The values as they may be shown: every URL with its password masked."""
        values = self.model_dump()
        for name in URL_FIELDS:
            values[name] = mask_url(values[name])
        return values

    def __repr_args__(self) -> Any:
        # A repr (in a traceback, a log line) never shows a password either.
        return list(self.display().items())


def _describe(exc: ValidationError, given: dict[str, Any]) -> str:
    problems = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        where = name if name in given else TaskqSettings.env_name(name)
        value = err.get("input")
        shown = mask_url(value) if isinstance(value, str) else value
        problems.append(f"{where}={shown!r}: {err['msg']}")
    return "invalid settings: " + "; ".join(problems)
