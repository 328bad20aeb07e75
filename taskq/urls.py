"""Connection URLs: which implementation a URL selects, and how to show one safely.

A password must never reach a log line, an error message or a ``repr``: everything
that prints a URL prints :func:`mask_url` of it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

from taskq.errors import ConfigurationError

MEMORY_URL = "memory://"


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


#: A query parameter whose name holds one of these carries a secret: ``password``,
#: ``passwd``, redis-py's ``ssl_password`` (a client key's passphrase), a
#: ``passphrase``, a ``secret``, a ``token``. Masking one too many costs nothing.
_SECRET_WORDS = ("pass", "secret", "token")


def _is_secret(name: str) -> bool:
    name = unquote_plus(name).lower()
    return any(word in name for word in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """``amqp://guest:secret@host/`` -> ``amqp://guest:***@host/``; a secret given as
    a query parameter (``redis://host/0?password=secret``,
    ``rediss://host/0?ssl_password=secret``) is masked too, the other parameters
    (certificate paths, say) are shown as written."""
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
        pieces = [piece.partition("=") for piece in query.split("&")]
        query = "&".join(
            f"{name}{eq}***" if eq and _is_secret(name) else f"{name}{eq}{value}"
            for name, eq, value in pieces
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    written = (piece.partition("=") for piece in parts.query.split("&"))
    found |= {value for name, _, value in written if value and _is_secret(name)}
    return found | {unquote_plus(s) for s in found} | {unquote(s) for s in found}


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with ``url`` shown masked and every
    secret the URL carries (its password, as written or percent-decoded, or a
    ``password=`` parameter) replaced by ``***`` wherever it appears."""
    placeholder = "\x00\x01\x00"  # keeps the masked URL's own user name out of the scrub
    text = text.replace(url, placeholder)
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text.replace(placeholder, mask_url(url))


def tls_options(
    url: str,
    *,
    what: str,
    tls_scheme: str,
    is_tls: Callable[[str], bool],
    files: tuple[str, ...],
) -> dict[str, str]:
    """The TLS options among ``url``'s query parameters (``is_tls`` says which names
    are), checked where the URL is given rather than at the first connect:

    - on a URL whose scheme is not ``tls_scheme`` they would be ignored (aiormq) or
      fail late with a ``TypeError`` (redis-py): refused, the scheme named;
    - the certificate files named by the options in ``files`` must be readable now: a
      typo is refused with the option named, not reported at connect time as "No such
      file or directory" with no file named.
    """
    parts = urlsplit(url)
    given = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_tls(k)}
    if given and parts.scheme.lower() != tls_scheme:
        raise ConfigurationError(
            f"the {what} URL {mask_url(url)!r} has TLS options ({', '.join(sorted(given))}) "
            f"but no TLS: use {tls_scheme}://"
        )
    for name in files:
        path = given.get(name)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigurationError(
                f"the {what} URL's {name}={path} cannot be read: {exc.strerror or exc}"
            ) from None
    return given


def key_is_encrypted(path: str) -> bool:
    """A PEM private key that needs a passphrase: loaded without one, OpenSSL would
    prompt for it on the terminal (or fail where there is none)."""
    with open(path, "rb") as file:
        pem = file.read()
    # "BEGIN ENCRYPTED PRIVATE KEY" (PKCS#8) or "Proc-Type: 4,ENCRYPTED" (traditional).
    return b"ENCRYPTED" in pem
