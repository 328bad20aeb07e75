"""The application's mail client (here: an outbox in memory standing for SMTP)."""

from __future__ import annotations

#: What was delivered: (address, template) pairs.
OUTBOX: list[tuple[str, str]] = []


def deliver(to: str, template: str, context: dict[str, str]) -> str:
    """Hand one email to the SMTP server (a real client raises ``ConnectionError``
    when the server is down)."""
    OUTBOX.append((to, template))
    return f"{template} to {to}"
