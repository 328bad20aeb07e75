"""Sending task calls: checked and encoded at the sender, recorded ``queued`` in the
status store, published with a broker confirm. One call (:func:`send_one`, behind
``delay`` and ``send``) or many at once (:func:`send_many`, behind ``send_many``).

What an explicit task id changes: it is an idempotency key, so its ``queued`` record
must be created (and a second send of the id refused) *before* anything is published.
A generated id (a fresh uuid4) is known to nobody: its record is written while its
message is published, which saves a store round trip per call. The store never moves a
task backwards (:data:`taskq.status.TRANSITIONS`), so a worker's ``started`` or
``succeeded`` that lands first wins over the late ``queued``.

Concurrent sends share their round trips: the creates asked for in one turn of the event
loop go to the store as one ``create_many`` (:mod:`taskq.coalesce`), and the broker
publishes the messages of one turn as one window of confirms.

A publish that is not confirmed removes its ``queued`` record again, so a re-send of
the same id publishes anew; the broker may still have taken the message, and a worker
that gets it creates the record itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

from taskq.call_record import call_of_body
from taskq.errors import (
    BulkPublishError,
    ConfigurationError,
    MessageTooLarge,
    TaskqError,
)
from taskq.handle import TaskHandle
from taskq.logs import get_logger
from taskq.message import TaskMessage, new_task_id
from taskq.topology import SHORT_STRING, QueueSpec, delay_units

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.brokers.base import Outgoing
    from taskq.stores import StatusStore
    from taskq.stores.base import Create

log = get_logger(__name__)

T = TypeVar("T")

#: One call of a ``send_many``: ``(args, kwargs)``, or ``(args, kwargs, task_id)`` to
#: give it an id (an idempotency key, as ``send(task_id=...)``; ``None``: generated).
Call: TypeAlias = (
    tuple[Sequence[Any], Mapping[str, Any] | None]
    | tuple[Sequence[Any], Mapping[str, Any] | None, str | None]
)

#: Checks a call's arguments against its task (raises InvalidArguments); ``None`` for
#: a task sent by name that is not registered here, which only has to be JSON.
Validate = Callable[[Sequence[Any], Mapping[str, Any]], object] | None

#: How many task ids a log line of a batch names.
_LOGGED_IDS = 5


class Encoded(NamedTuple):
    """A call ready to publish: its task id and message body."""

    task_id: str
    body: bytes
    #: The caller gave the id: an idempotency key.
    explicit: bool
    #: The arguments' JSON its ``queued`` record keeps (:mod:`taskq.call_record`).
    call: str | None = None


def encode_call(
    task: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    task_id: str | None,
    max_size: int,
) -> Encoded:
    """The message of one call, refused now if it could not travel: an id too long for
    the AMQP ``correlation_id`` it travels as, arguments JSON cannot carry, a body over
    ``max_size`` bytes."""
    if task_id and len(task_id.encode()) > SHORT_STRING:
        raise ConfigurationError(
            f"task_id {task_id[:40]!r}... is {len(task_id.encode())} bytes in UTF-8; "
            f"a task id must be at most {SHORT_STRING}"
        )
    message = TaskMessage(task_id or new_task_id(), task, list(args), dict(kwargs))
    # One pass of pydantic's encoder (UUIDs, datetimes, models...); whatever JSON
    # cannot carry raises SerializationError here, before anything is written.
    body = message.encode()
    if len(body) > max_size:
        raise MessageTooLarge(len(body), max_size, task)
    return Encoded(message.id, body, bool(task_id), call_of_body(body))


async def send_one(
    app: TaskQueue,
    spec: QueueSpec,
    call: Encoded,
    delay: float,
    *,
    priority: int = 0,
    headers: Mapping[str, str] | None = None,
) -> TaskHandle:
    """Record and publish one encoded call (with ``headers``); its handle once the
    broker confirmed it. Within a ``send`` span when the app is traced."""
    delay_units(delay)  # a delay longer than the broker's levels spell: refused now
    await app.connect()
    tracing = app.tracing
    if tracing is not None and headers is None:  # off by default: one test
        with tracing.sending(spec.task, [call.task_id]) as traced:
            return await send_one(app, spec, call, delay, priority=priority, headers=traced)
    task_id, task = call.task_id, spec.task
    if call.explicit:
        # The record goes in BEFORE the publish: the store refuses a second create of
        # an id, which makes an explicit task id an idempotency key.
        if not await create(app, task_id, task, call.call):
            existing = await app.store.get(task_id)
            name = existing.name if existing is not None else task
            log.debug("task already known, not published again", task_id=task_id, task=name)
            return TaskHandle(app, task_id, name)
        await _emit_queued(app, [task_id], task)
        try:
            await app.broker.publish(
                spec, call.body, task_id=task_id, delay=delay, priority=priority, headers=headers
            )
        except BaseException as exc:
            await _forget(app.store, [task_id], task, exc)
            raise
        return TaskHandle(app, task_id, task)

    await _emit_queued(app, [task_id], task)  # before the publish: `started` comes after
    # The record is written while the message is published and its confirm awaited: the
    # confirm, the longer round trip, is the only wait in series. The publish runs in
    # this task (the broker's publishes of a lone caller go out at once: no loop turn),
    # the record's write in a task of its own, started first: its frame goes out first.
    creating = asyncio.ensure_future(create(app, task_id, task, call.call))
    try:
        await app.broker.publish(
            spec, call.body, task_id=task_id, delay=delay, priority=priority, headers=headers
        )
    except BaseException as exc:
        if await _created(creating) is True:  # the record was written: remove it again
            await _forget(app.store, [task_id], task, exc)
        raise
    created = await _created(creating)
    if isinstance(created, Exception):
        # Published and confirmed: the task will run (a worker creates its record), and
        # raising would invite a second send of it under another id.
        log.warning(
            "task published, but its queued record could not be written",
            task_id=task_id,
            task=task,
            error=str(created),
        )
    return TaskHandle(app, task_id, task)


async def _created(creating: asyncio.Future[T]) -> T | Exception:
    """What the concurrent create answered (whether it wrote), or the store's error."""
    try:
        return await creating
    except Exception as exc:
        return exc


async def create(app: TaskQueue, task_id: str, task: str, call: str | None = None) -> bool:
    """:meth:`StatusStore.create`, with the creates of concurrent sends in one round
    trip (:meth:`StatusStore.create_many`, a Redis pipeline) per turn of the loop."""
    return await app._creates(None, (task_id, task, call))


def encode_calls(
    task: str, calls: Sequence[Call], validate: Validate, max_size: int
) -> list[Encoded]:
    """Every call checked and encoded, before anything is written or sent; the first bad
    one raises its error with ``call <index>:`` in front of the message."""
    encoded = []
    for index, call in enumerate(calls):
        try:
            if not isinstance(call, tuple | list) or len(call) not in (2, 3):
                raise ConfigurationError(
                    "send_many takes (args, kwargs) or (args, kwargs, task_id) tuples, "
                    f"not {call!r:.80}"
                )
            args, kwargs = call[0], call[1] or {}
            task_id = call[2] if len(call) == 3 else None
            if validate is not None:
                validate(args, kwargs)
            encoded.append(encode_call(task, args, kwargs, task_id, max_size))
        except TaskqError as exc:
            exc.args = (f"call {index}: {exc}", *exc.args[1:])
            raise
    return encoded


async def send_many(
    app: TaskQueue,
    spec: QueueSpec,
    calls: Sequence[Encoded],
    delay: float,
    *,
    priority: int = 0,
    headers: Mapping[str, str] | None = None,
) -> list[TaskHandle]:
    """Record every call ``queued`` in one store round trip, publish the new ones with
    their confirms pipelined, return their handles in call order. With no explicit id
    in the batch, the records are written while the messages are published, as
    :func:`send_one` does for one call.

    Raises :class:`BulkPublishError` when any publish was not confirmed (the records of
    those are removed again)."""
    task = spec.task
    delay_units(delay)
    if not calls:
        return []
    await app.connect()
    tracing = app.tracing
    if tracing is not None and headers is None:  # off by default: one test
        with tracing.sending(task, [call.task_id for call in calls]) as traced:
            return await send_many(app, spec, calls, delay, priority=priority, headers=traced)
    items: list[Create] = [(call.task_id, task, call.call) for call in calls]
    if any(call.explicit for call in calls):
        # Idempotency keys: only the ids the store did not know yet are published.
        written = await app.store.create_many(items)
        new = [call for call, fresh in zip(calls, written, strict=True) if fresh]
        known = [call.task_id for call, fresh in zip(calls, written, strict=True) if not fresh]
        names = await _known_names(app.store, known)
        handles = [TaskHandle(app, c.task_id, names.get(c.task_id, task)) for c in calls]
        try:
            outcomes = await _publish_many(app, spec, new, delay, priority, headers)
        except BaseException as exc:  # cancelled: the calls may or may not be out
            await _forget(app.store, [call.task_id for call in new], task, exc)
            raise
    else:
        new = list(calls)
        handles = [TaskHandle(app, call.task_id, task) for call in calls]
        creating = asyncio.ensure_future(app.store.create_many(items))
        try:
            outcomes = await _publish_many(app, spec, new, delay, priority, headers)
        except BaseException as exc:
            await _created(creating)
            await _forget(app.store, [call.task_id for call in new], task, exc)
            raise
        created = await _created(creating)
        if isinstance(created, Exception):
            log.warning(
                "tasks published, but their queued records could not be written",
                task_id=calls[0].task_id,
                task=task,
                tasks=len(calls),
                error=str(created),
            )
    failed = {
        call.task_id: outcome
        for call, outcome in zip(new, outcomes, strict=True)
        if outcome is not None
    }
    if not failed:
        return handles
    first = next(iter(failed.values()))
    await _forget(app.store, list(failed), task, first)
    raise BulkPublishError(
        task,
        confirmed=[handle for handle in handles if handle.id not in failed],
        not_confirmed=list(failed),
        errors=list(failed.values()),
    ) from first


async def _publish_many(
    app: TaskQueue,
    spec: QueueSpec,
    calls: Sequence[Encoded],
    delay: float,
    priority: int,
    headers: Mapping[str, str] | None,
) -> list[BaseException | None]:
    """Each call's outcome; an error raised before anything was published is every
    call's."""
    if not calls:
        return []
    task_ids = [call.task_id for call in calls]
    await _emit_queued(app, task_ids, spec.task)
    try:
        messages: list[Outgoing] = (
            [(call.task_id, call.body) for call in calls]
            if headers is None
            else [(call.task_id, call.body, headers) for call in calls]
        )
        return await app.broker.publish_many(spec, messages, delay=delay, priority=priority)
    except TaskqError as exc:
        return [exc] * len(calls)


async def _known_names(store: StatusStore, task_ids: list[str]) -> dict[str, str]:
    """The task names of ids the store already knew (another task's id is its own)."""
    records = await asyncio.gather(*(store.get(task_id) for task_id in task_ids))
    return {record.id: record.name for record in records if record is not None}


async def _emit_queued(app: TaskQueue, task_ids: list[str], task: str) -> None:
    events = app.events
    if events is not None:  # off by default: one test and nothing else
        await asyncio.gather(*(events.emit("queued", task_id, task) for task_id in task_ids))


async def _forget(store: StatusStore, task_ids: list[str], task: str, error: BaseException) -> None:
    """Remove the ``queued`` records of publishes that were not confirmed, so that a
    re-send of those ids publishes again; the publish error stays the one raised."""
    if isinstance(error, TaskqError):
        log.warning(
            "publish failed",
            task_id=task_ids[0],
            task=task,
            not_confirmed=len(task_ids),
            task_ids=task_ids[:_LOGGED_IDS],
            error=str(error),
        )
    results = await asyncio.shield(
        asyncio.gather(*(store.discard(task_id) for task_id in task_ids), return_exceptions=True)
    )
    for task_id, result in zip(task_ids, results, strict=True):
        if isinstance(result, TaskqError):  # keep the publish error; say what else failed
            log.warning(
                "could not remove the queued record", task_id=task_id, task=task, error=str(result)
            )
        elif isinstance(result, BaseException):
            raise result
