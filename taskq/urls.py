"""Connection URLs: which implementation a URL selects, and how to show one safely.

A password must never reach a log line, an error message or a ``repr``: everything
that prints a URL prints :func:`mask_url` of it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

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


def _secrets(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    found |= {v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS and v}
    return found | {unquote(s) for s in found}


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with ``url`` shown masked and every
    secret the URL carries (its password, as written or percent-decoded, or a
    ``password=`` parameter) replaced by ``***`` wherever it appears."""
    placeholder = "\x00\x01\x00"  # keeps the masked URL's own user name out of the scrub
    text = text.replace(url, placeholder)
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text.replace(placeholder, mask_url(url))
