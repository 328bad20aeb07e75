"""Tasks of the ``internal`` app: they run in the background of the API process.

Nothing is distributed: the embedded broker hands them to the worker started in the
API's lifespan. Use it for work that must not hold up a response but needs no other
machine (an audit trail, a cache refresh); it is lost if the process dies before it ran.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def record(event: str, subject: str) -> dict[str, Any]:
    """Record that ``event`` happened to ``subject``; the result says which process
    (the API's) recorded it and when."""
    await asyncio.sleep(0.01)  # the write to the audit trail
    recorded_at = datetime.now(UTC).isoformat()
    log.info("audit event recorded", audit_event=event, subject=subject)
    return {"event": event, "subject": subject, "pid": os.getpid(), "recorded_at": recorded_at}
