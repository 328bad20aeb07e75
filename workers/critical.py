"""The ``critical`` worker pool of the example service (``examples/service``):

    .venv/bin/taskq worker workers.critical:app --concurrency 4

Its own exchange and queues (``CRITICAL_*``, see ``examples/service/settings.py``), so
a backlog of scheduler work never delays a charge.
"""

from __future__ import annotations

import time
import uuid

import structlog

from examples.service.container import ServiceContainer

app = ServiceContainer().critical

log = structlog.get_logger(__name__)


@app.task(name="critical.payments.charge", max_retries=5)
def charge(order_id: uuid.UUID, amount_cents: int) -> dict[str, object]:
    """Charge an order (here: pretend to). A sync function, as a payment provider's
    blocking client would be: it runs in the worker's thread pool."""
    time.sleep(0.05)  # the payment provider's round trip
    log.info("order charged", order_id=str(order_id), amount_cents=amount_cents)
    return {"order_id": str(order_id), "amount_cents": amount_cents, "charged": True}
