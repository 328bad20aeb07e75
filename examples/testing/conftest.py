"""The project's own fixtures; taskq's (taskq_app, taskq_worker, taskq_drain,
sent_tasks) come from the plugin installed with taskq."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shop import mail


@pytest.fixture(autouse=True)
def outbox() -> Iterator[list[tuple[str, str]]]:
    mail.OUTBOX.clear()
    yield mail.OUTBOX
    mail.OUTBOX.clear()
