"""Connection URLs: which implementation a URL selects, and how to show one safely.

A password must never reach a log line, an error message or a ``repr``: everything
that prints a URL prints :func:`mask_url` of it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MEMORY_URL = "memory://"


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def mask_url(url: str) -> str:
    """``amqp://guest:secret@host/`` -> ``amqp://guest:***@host/``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
