"""Connection URLs: which implementation a URL selects, and how to show one safely.

A password must never reach a log line, an error message or a ``repr``: everything
that prints a URL prints :func:`mask_url` of it.

A broker of several nodes is a list of URLs, or one string of them separated by ``;``
(Celery's spelling), each URL complete with its own credentials, vhost and options::

    amqp://u:p@rabbit1:5672/prod;amqp://u:p@rabbit2:5672/prod;amqp://u:p@rabbit3:5672/prod

:func:`split_urls` reads either form; :func:`mask_url` and :func:`scrub` take a list
string too and mask every URL in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

from taskq.errors import ConfigurationError

MEMORY_URL = "memory://"

#: Separates the URLs of one broker's nodes in a single string (Celery's spelling: a
#: character no URL carries unencoded where it matters, and no shell quotes it).
URL_SEPARATOR = ";"


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


#: A query parameter whose name holds one of these carries a secret: ``password``,
#: ``passwd``, redis-py's ``ssl_password`` (a client key's passphrase), a
#: ``passphrase``, a ``secret``, a ``token``. Masking one too many costs nothing.
_SECRET_WORDS = ("pass", "secret", "token")


def _is_secret(name: str) -> bool:
    name = unquote_plus(name).lower()
    return any(word in name for word in _SECRET_WORDS)


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """The URLs of a list, in order: a sequence of strings, or one string of URLs
    separated by ``;``, blanks around each dropped. Refused with
    :class:`ConfigurationError`: an empty list, an empty entry (``a;;b``, a trailing
    ``;``), a string in the list that is itself a list, and the same URL twice (a node
    tried twice in a row only delays the failover to the next)."""
    given = [urls] if isinstance(urls, str) else list(urls)
    found: list[str] = []
    for entry in given:
        if not isinstance(entry, str):
            raise ConfigurationError(f"a broker URL must be a string, not {type(entry).__name__}")
        pieces = [piece.strip() for piece in entry.split(URL_SEPARATOR)]
        if not all(pieces):
            raise ConfigurationError(
                f"the URL list {mask_url(entry)!r} has an empty entry: separate "
                f"complete URLs by {URL_SEPARATOR!r}"
            )
        if len(pieces) > 1 and not all("://" in piece for piece in pieces):
            raise ConfigurationError(
                f"{mask_url(entry)!r} is not a list of complete URLs: a {URL_SEPARATOR!r} "
                "inside a password or vhost must be written %3B"
            )
        if len(given) > 1 and len(pieces) > 1:
            raise ConfigurationError(
                f"{mask_url(entry)!r} in a list of URLs is itself a list: give either a "
                f"list of URLs or one string of URLs separated by {URL_SEPARATOR!r}"
            )
        found += pieces
    if not found:
        raise ConfigurationError("the list of broker URLs is empty")
    repeated = sorted({mask_url(url) for url in found if found.count(url) > 1})
    if repeated:
        raise ConfigurationError(f"a broker URL is given twice: {', '.join(repeated)}")
    return found


def join_urls(urls: Sequence[str]) -> str:
    """The one-string form of a list of URLs (``TASKQ_BROKER_URL``, ``taskq config``)."""
    return URL_SEPARATOR.join(urls)


def _listed(text: str) -> list[str] | None:
    """The URLs of ``text`` if it is a list of several, each with a scheme; ``None`` for
    one URL, even one whose unencoded password holds a ``;`` (``redis://:a;b@h``: its
    second piece has no scheme, and splitting there would show half the password)."""
    if URL_SEPARATOR not in text:
        return None
    pieces = [piece.strip() for piece in text.split(URL_SEPARATOR)]
    if all("://" in piece for piece in pieces if piece):
        return pieces
    return None


def mask_url(url: str) -> str:
    """``amqp://guest:secret@host/`` -> ``amqp://guest:***@host/``; a secret given as
    a query parameter (``redis://host/0?password=secret``,
    ``rediss://host/0?ssl_password=secret``) is masked too, the other parameters
    (certificate paths, say) are shown as written. A ``;`` list has each URL masked."""
    listed = _listed(url)
    if listed is not None:
        return URL_SEPARATOR.join(mask_url(piece) if piece else piece for piece in listed)
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        # The hosts as written: one, an IPv6 literal, or several (``h1:26379,h2:26379``,
        # which hostname and port cannot parse).
        hosts = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{hosts}"
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
    listed = _listed(url)
    if listed is not None:
        return set().union(*(_secrets(piece) for piece in listed if piece))
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    written = (piece.partition("=") for piece in parts.query.split("&"))
    found |= {value for name, _, value in written if value and _is_secret(name)}
    return found | {unquote_plus(s) for s in found} | {unquote(s) for s in found}


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with ``url`` shown masked and every
    secret the URL carries (its password, as written or percent-decoded, or a
    ``password=`` parameter) replaced by ``***`` wherever it appears. For a ``;`` list,
    the list and each of its URLs."""
    shown = sorted({url, *(piece for piece in _listed(url) or () if piece)}, key=len, reverse=True)
    # Placeholders keep the masked URLs' own user names out of the scrub below.
    placeholders = [(f"\x00{index}\x01", mask_url(each)) for index, each in enumerate(shown)]
    for each, (placeholder, _) in zip(shown, placeholders, strict=True):
        text = text.replace(each, placeholder)
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    for placeholder, masked in placeholders:
        text = text.replace(placeholder, masked)
    return text


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
