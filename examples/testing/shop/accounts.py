"""The application's own code: what a web request runs when someone signs up."""

from __future__ import annotations

import uuid

from shop.tasks import send_email

#: The tips email goes out three days after signing up.
TIPS_AFTER = 3 * 24 * 3600


async def sign_up(address: str) -> str:
    """Create the account and queue its emails; returns the new user's id."""
    user_id = str(uuid.uuid4())
    await send_email.delay(address, "welcome", {"user_id": user_id})
    await send_email.send(args=[address, "tips", {}], countdown=TIPS_AFTER)
    return user_id
