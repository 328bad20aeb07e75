"""HTTP basic auth for the dashboard, on when ``--auth user:password`` (or
``TASKQ_DASHBOARD_AUTH``) is given. The password is compared in constant time and
never shown: not in a page, a log line or an error."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from taskq.errors import ConfigurationError

#: The environment variable ``taskq dashboard`` reads when ``--auth`` is not given.
AUTH_ENV = "TASKQ_DASHBOARD_AUTH"


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> BasicAuth:
        """From ``user:password`` (the password may hold ``:``)."""
        user, colon, password = text.partition(":")
        if not colon or not user or not password:
            raise ConfigurationError("--auth takes user:password, both non-empty")
        return cls(user, password)

    def accepts(self, header: str | None) -> bool:
        if header is None or not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        # Both compared, always: how long a refusal takes tells nothing.
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


class BasicAuthMiddleware:
    """Refuses every HTTP request without the right credentials with a 401."""

    def __init__(self, app: ASGIApp, auth: BasicAuth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        if self.auth.accepts(raw.decode("latin-1") if raw is not None else None):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", b'Basic realm="taskq", charset="UTF-8"'),
                    (b"content-type", b"text/plain; charset=utf-8"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"authentication required\n"})
