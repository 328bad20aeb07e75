"""The one place where aio-pika, aiormq, asyncio and socket errors become taskq errors.

Like httpx's ``map_httpcore_exceptions``: every call into the driver runs inside
:func:`amqp_errors`, which knows what the call was doing (publishing or not) and so
which taskq error the driver's error means::

    with amqp_errors(url, publishing=True, task_id=task_id, timeout=10.0):
        await exchange.publish(...)

A password never reaches a message: the URL is shown through :func:`~taskq.urls.mask_url`
and driver texts are scrubbed of it too.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiormq.exceptions as amqp

from taskq.errors import (
    BrokerConnectionError,
    BrokerError,
    PublishError,
    QueueMismatch,
    TaskqError,
)
from taskq.urls import mask_url, scrub

# RabbitMQ's 406 reply names the object: "PRECONDITION_FAILED - inequivalent arg
# 'x-queue-type' for queue 'taskq.add' in vhost '/': received 'quorum' but current is ..."
_MISMATCH = re.compile(r"for (?P<kind>queue|exchange) '(?P<name>[^']*)'")
_REPLY_PREFIX = "PRECONDITION_FAILED - "

#: Errors that mean the connection or the channel went away under us.
_GONE = (amqp.AMQPConnectionError, amqp.ChannelInvalidStateError, OSError)
#: A bare ``RuntimeError`` raised inside aio-pika or aiormq means the same: during a
#: reconnect aiormq's ``channel()`` raises "<Connection ...> closed" and aio-pika's
#: "Connection was not opened" (seen in the fault suite, cutting a publisher's
#: connection); :func:`driver_lost` tells it from anyone else's RuntimeError.
_LOST = (*_GONE, RuntimeError)
_DRIVERS = ("aiormq.", "aio_pika.")


#: :func:`~taskq.urls.mask_url`, once per URL: every publish enters :func:`amqp_errors`,
#: and parsing the URL each time was a tenth of a single publish's CPU (issue 5).
_masked = functools.lru_cache(maxsize=16)(mask_url)


@contextmanager
def amqp_errors(
    url: str,
    *,
    publishing: bool = False,
    task_id: str | None = None,
    timeout: float | None = None,
) -> Iterator[None]:
    """Translate driver errors raised in the block; ``raise ... from`` keeps the cause.

    ``publishing`` selects what a lost connection or a timeout means: a
    :class:`PublishError` (the publish may or may not have been taken) instead of a
    :class:`BrokerConnectionError`.
    """
    where = _masked(url)
    try:
        yield
    except TaskqError:
        raise
    except (amqp.AuthenticationError, amqp.ProbableAuthenticationError) as exc:
        raise BrokerConnectionError(
            f"RabbitMQ at {where} refused the login: {_text(exc, url)}"
        ) from exc
    except amqp.ChannelPreconditionFailed as exc:
        raise _mismatch(exc) from exc
    except amqp.PublishError as exc:  # a Basic.Return: no queue is bound to the key
        raise PublishError(
            f"{_what(task_id)} was returned unroutable by {where}: {_text(exc, url)}",
            task_id=task_id,
        ) from exc
    except amqp.DeliveryError as exc:  # a Basic.Nack
        raise PublishError(
            f"{_what(task_id)} was refused (nacked) by {where}", task_id=task_id
        ) from exc
    except TimeoutError as exc:
        if publishing:
            raise PublishError(
                f"{_what(task_id)} was not confirmed by {where} within {timeout:g}s",
                task_id=task_id,
            ) from exc
        raise BrokerConnectionError(f"RabbitMQ at {where} did not answer in time") from exc
    except _LOST as exc:
        if not isinstance(exc, _GONE) and not driver_lost(exc):
            raise  # ours, or a RecursionError: not a connection matter
        if publishing:
            raise PublishError(
                f"{_what(task_id)} was not confirmed: connection to {where} lost "
                f"({_text(exc, url)})",
                task_id=task_id,
            ) from exc
        tls = _tls_failure(exc)
        if tls is not None:
            raise BrokerConnectionError(
                f"TLS with RabbitMQ at {where} failed: {_text(tls, url)}{_tls_hint(tls)}"
            ) from exc
        raise BrokerConnectionError(f"cannot reach RabbitMQ at {where}: {_text(exc, url)}") from exc
    except amqp.AMQPError as exc:  # any other channel error: 403, 404, ...
        if publishing:
            raise PublishError(
                f"{_what(task_id)} failed on {where}: {_text(exc, url)}", task_id=task_id
            ) from exc
        raise BrokerError(f"RabbitMQ at {where} refused: {_text(exc, url)}") from exc


def publish_failure(exc: BaseException, url: str, *, task_id: str, timeout: float) -> BaseException:
    """The error :func:`amqp_errors` raises for ``exc`` raised by the publish of
    ``task_id``: for a batch, which keeps one outcome per message instead of raising.
    ``raise ... from exc`` keeps the cause, as for a single publish."""
    try:
        with amqp_errors(url, publishing=True, task_id=task_id, timeout=timeout):
            raise exc
    except BaseException as translated:  # returned, not swallowed
        return translated
    raise AssertionError("unreachable")  # pragma: no cover


def reply_text(exc: amqp.AMQPError) -> str:
    """The broker's own words (``PRECONDITION_FAILED - ...``) when it gave some."""
    texts = [arg for arg in exc.args if isinstance(arg, str)]
    return texts[-1] if texts else str(exc)


def _mismatch(exc: amqp.ChannelPreconditionFailed) -> BrokerError:
    detail = reply_text(exc).removeprefix(_REPLY_PREFIX)
    found = _MISMATCH.search(detail)
    if found is None or found["kind"] == "exchange":
        return BrokerError(f"RabbitMQ refused a declaration: {detail}")
    return QueueMismatch(found["name"], detail)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a lost or refused connection: aiormq raises it wrapped in an
    ``AMQPConnectionError`` (``raise ... from``), or bare when it builds its context."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__
    return cause


def _tls_hint(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return " (is the URL's cafile= the CA that signed the broker's certificate?)"
    if "CERTIFICATE_REQUIRED" in str(exc):
        return " (the broker asks for a client certificate: certfile= and keyfile=)"
    return ""


def driver_lost(exc: RuntimeError) -> bool:
    """A bare ``RuntimeError`` raised by the driver itself (its innermost frame is in
    aiormq or aio-pika): they raise no other kind for a connection that is closed or
    not yet re-opened."""
    if type(exc) is not RuntimeError:
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return isinstance(module, str) and module.startswith(_DRIVERS)


def _what(task_id: str | None) -> str:
    return f"publish of task {task_id}" if task_id else "publish"


def _text(exc: BaseException, url: str) -> str:
    """``str(exc)`` with the URL's password masked, should a driver ever echo it."""
    return scrub(str(exc) or type(exc).__name__, url)
