"""Where each of the service's RabbitMQ apps connects, read from the environment.

Each app has its own three variables, named after it, so ``critical`` and
``scheduler`` can live on different brokers, stores and exchanges:

    CRITICAL_BROKER_URL   (default amqp://guest:guest@127.0.0.1:5672/)
    CRITICAL_STORE_URL    (default redis://127.0.0.1:6379/0)
    CRITICAL_EXCHANGE     (default critical)

and likewise ``SCHEDULER_*``. The defaults are the local RabbitMQ and Redis, so the
service and its workers meet with nothing exported. ``TASKQ_*`` is left alone: it
configures the single app that ``TaskQueue()`` and the ``taskq`` CLI build by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from taskq.urls import mask_url

LOCAL_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_STORE_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class AppSettings:
    """One app's broker, store and exchange.

    >>> AppSettings.from_env("critical", {"CRITICAL_EXCHANGE": "payments"}).exchange
    'payments'
    """

    broker_url: str
    store_url: str
    exchange: str

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] = os.environ) -> AppSettings:
        prefix = name.upper()
        return cls(
            broker_url=environ.get(f"{prefix}_BROKER_URL") or LOCAL_BROKER_URL,
            store_url=environ.get(f"{prefix}_STORE_URL") or LOCAL_STORE_URL,
            exchange=environ.get(f"{prefix}_EXCHANGE") or name,
        )

    def __repr__(self) -> str:
        # Settings get printed and logged; the URLs' passwords must not be.
        return (
            f"AppSettings(broker_url={mask_url(self.broker_url)!r}, "
            f"store_url={mask_url(self.store_url)!r}, exchange={self.exchange!r})"
        )
