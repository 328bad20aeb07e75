"""Connection URLs: which implementation a URL selects, and how to show one safely.

A password must never reach a log line, an error message or a ``repr``: everything
that prints a URL prints :func:`mask_url` of it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MEMORY_URL = "memory://"


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


_SECRET_PARAMS = frozenset({"password", "pass", "passwd"})


def mask_url(url: str) -> str:
    """``amqp://guest:secret@host/`` -> ``amqp://guest:***@host/``; a password given as
    a query parameter (``redis://host/0?password=secret``) is masked too."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            masked = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
