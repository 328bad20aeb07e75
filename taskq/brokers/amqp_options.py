"""What an AMQP URL says besides where the broker is: heartbeats and TLS.

aiormq reads these query parameters itself, on every connect and reconnect (so renewed
certificate files are picked up by the next reconnect)::

    amqps://user:pass@rabbit.example:5671/vhost?cafile=/etc/taskq/ca.pem
        &certfile=/etc/taskq/client.pem&keyfile=/etc/taskq/client.key&heartbeat=30

- ``heartbeat``: seconds; taskq asks for :data:`DEFAULT_HEARTBEAT` when the URL says
  nothing (aiormq would ask for 60). ``heartbeat=0`` turns heartbeats off.
- ``cafile`` / ``capath`` / ``cadata`` (base64 DER): the CA to verify the broker with,
  else the system's. ``certfile`` + ``keyfile``: a client certificate.
  ``no_verify_ssl=1``: no verification at all, for tests only.

Here they are checked when the broker object is made, because aiormq reads them
leniently: a heartbeat it cannot parse silently turns heartbeats off, TLS options on
``amqp://`` are ignored (plain TCP), a missing file is reported at connect time as "No
such file or directory" with no file named, and an encrypted key makes OpenSSL prompt
on the terminal.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from taskq.errors import ConfigurationError
from taskq.urls import key_is_encrypted, mask_url, tls_options

#: The heartbeat timeout, in seconds, that taskq asks for unless the URL says
#: ``heartbeat=``. Each side sends a heartbeat every half of it. On a half-open
#: connection RabbitMQ closes it (requeueing its unacked messages) after about 3 x this,
#: and aiormq gives up on it after 3 x (this + 1) s and reconnects (measured with 4:
#: 13 s and 16 s). A shorter one notices sooner, but an event loop blocked that long (a
#: task doing CPU-bound work in an ``async def``) then loses its connection.
DEFAULT_HEARTBEAT = 30

#: The TLS options aiormq reads from the query (``aiormq.connection.Connection``).
TLS_OPTIONS = frozenset({"cafile", "capath", "cadata", "certfile", "keyfile", "no_verify_ssl"})

#: RabbitMQ negotiates the heartbeat as an AMQP short (``connection.tune``).
_MAX_HEARTBEAT = 65535


def connect_options(url: str, ssl_context: ssl.SSLContext | None) -> dict[str, Any]:
    """Keyword arguments for ``aio_pika.connect_robust(url, ...)`` besides the URL,
    after checking what the URL says; raises :class:`ConfigurationError`."""
    options: dict[str, Any] = {}
    heartbeat = _heartbeat(url)
    if heartbeat is None:
        # A keyword goes into the URL's query (aio_pika.make_url); only when the URL
        # has none, so that the URL's own value wins.
        options["heartbeat"] = DEFAULT_HEARTBEAT
    given = tls_options(
        url,
        what="AMQP",
        tls_scheme="amqps",
        is_tls=TLS_OPTIONS.__contains__,
        files=("cafile", "certfile", "keyfile"),
    )
    if ssl_context is not None:
        if urlsplit(url).scheme.lower() != "amqps":
            raise ConfigurationError(
                f"an ssl_context was given for {mask_url(url)!r}: use amqps://"
            )
        options["ssl_context"] = ssl_context  # aiormq then ignores the URL's TLS options
    else:
        _refuse_encrypted_key(given.get("keyfile") or given.get("certfile"))
    return options


def _heartbeat(url: str) -> int | None:
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    given = [value for name, value in query if name == "heartbeat"]
    if not given:
        return None
    text = given[0]  # aiormq reads the first (yarl's MultiDict.get)
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_HEARTBEAT:
        raise ConfigurationError(
            f"heartbeat={text} in the AMQP URL is not a whole number of seconds from 0 "
            f"(off) to {_MAX_HEARTBEAT}"
        )
    return int(text)


def _refuse_encrypted_key(path: str | None) -> None:
    if path is not None and key_is_encrypted(path):  # readable: tls_options checked it
        raise ConfigurationError(
            f"the AMQP URL's key file {path} is encrypted, and aiormq has no way to take its "
            "passphrase (OpenSSL would prompt on the terminal): use an unencrypted key "
            "readable by the worker's user only, or pass AmqpBroker(..., ssl_context=...) "
            "with the key loaded by ssl.SSLContext.load_cert_chain(password=...)"
        )
