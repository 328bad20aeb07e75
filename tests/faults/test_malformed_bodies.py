"""Malformed message bodies from a property-based generator, published by a foreign
client straight to a task queue of a running worker process: none crashes it, every one
is dead-lettered with a reason, and recorded ``failed`` where an id could be read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.faults.harness import (
    Deployment,
    Figures,
    Fleet,
    queue_depths,
    report,
    stop_cleanly,
)
from tests.faults.servers import RabbitNode
from tests.helpers import eventually

CASES = 150
CASE_HEADER = "x-fault-case"

#: One good value per field of the wire format; a case spoils at least one.
GOOD: dict[str, Any] = {"task": "fault.touch", "args": ["key", 0], "kwargs": {}}
FIELDS = ("id", *GOOD)
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
_json = st.recursive(
    _json_scalars | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
BAD: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["", 0, 17, None, [], {}, True]),
    "task": st.sampled_from(["", 5, None, ["fault.touch"], "fault.nope", "fault.args"]),
    # Not an array, or an array the signature (key: str, seconds: float) refuses.
    "args": st.sampled_from([{}, "key", 3, None, [], ["key", "soon"], ["key", 0, 1, 2]]),
    "kwargs": st.sampled_from([[], "x", 1, None, {"nope": 1}, {"seconds": "later"}]),
}


@dataclass
class Case:
    body: bytes
    correlation_id: str | None
    #: The id a worker can read, the body's else the correlation_id (None: no record).
    task_id: str | None


@st.composite
def spoiled_messages(draw: st.DrawFn) -> tuple[bytes, Any]:
    """A JSON object shaped like a task message with at least one field spoiled
    (missing or wrong), maybe with extra fields; returns the body and its ``id``."""
    spoil = draw(st.sets(st.sampled_from(["id", *GOOD]), min_size=1))
    message: dict[str, Any] = {"id": "ID"}  # replaced by a unique id below
    for name in ["id", *GOOD]:
        if name not in spoil:
            message.setdefault(name, GOOD.get(name))
        elif draw(st.booleans()):
            message.pop(name, None)  # missing
        else:
            message[name] = draw(BAD[name])
    extra = st.text(min_size=1, max_size=8).filter(lambda key: key not in FIELDS)
    message.update(draw(st.dictionaries(extra, _json, max_size=2)))
    return json.dumps(message).encode(), message.get("id")


def bodies() -> st.SearchStrategy[tuple[bytes, Any]]:
    not_json = st.binary(max_size=64).filter(lambda b: not _parses(b))
    json_non_objects = _json.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: (json.dumps(v).encode(), None)
    )
    edge = st.sampled_from(
        [
            b"",
            b"\xff\xfe{\x00}\x00",  # UTF-16 with a BOM
            b"[" * 100_000,  # deeper than the json module recurses
            b'{"id": "ID", "task": "fault.touch", "args": ["k", 0], "kwargs": {}',  # cut short
        ]
    ).map(lambda b: (b, "ID" if b"ID" in b else None))
    return not_json.map(lambda b: (b, None)) | json_non_objects | spoiled_messages() | edge


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


def generate_cases(count: int) -> list[Case]:
    drawn: list[tuple[bytes, Any, bool]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies(), st.booleans())
    def collect(body: tuple[bytes, Any], with_correlation: bool) -> None:
        drawn.append((*body, with_correlation))

    collect()
    cases = []
    for n, (body, body_id, with_correlation) in enumerate(drawn):
        if body_id == "ID":
            body = body.replace(b'"ID"', f'"mal-{n:04d}"'.encode())
        correlation_id = f"corr-{n:04d}" if with_correlation else None
        cases.append(Case(body, correlation_id, readable_id(body) or correlation_id))
    return cases


def readable_id(body: bytes) -> str | None:
    """The body's ``id`` where the body is a JSON object with a non-empty string id."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


@pytest.mark.timeout(180)
async def test_malformed_bodies_are_dead_lettered_with_a_reason_and_crash_no_worker(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    cases = generate_cases(CASES)
    figures = Figures("6 malformed bodies", tasks=len(cases))
    worker = fleet.start("--concurrency", "8")
    await fleet.wait_started(worker)
    app = deployment.app()
    await app.connect()
    try:
        # A foreign client: raw AMQP, straight to the exchange with the task's key.
        connection = await aio_pika.connect(node.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(deployment.exchange)
            for n, case in enumerate(cases):
                await exchange.publish(
                    aio_pika.Message(
                        case.body,
                        headers={CASE_HEADER: n},
                        correlation_id=case.correlation_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key="fault.touch",
                    mandatory=True,
                )
        dead_queue = app.topology.dead_queue

        async def dead_count() -> int:
            return (await queue_depths(node, deployment.exchange)).get(dead_queue, 0)

        await eventually(dead_count, lambda n: n >= len(cases), timeout=60, interval=0.5)
        letters = await app.broker.dead_letters(limit=len(cases) + 10)
        by_case = {int(letter.headers[CASE_HEADER]): letter for letter in letters}
        recorded = 0
        for case in cases:
            if case.task_id is not None:
                status = await app.handle(case.task_id).status()
                assert status is not None and status.state == "failed", (case, status)
                assert status.error is not None and status.error.message
                recorded += 1
        events = fleet.events()
        internal = [e for e in events if e.get("event", "").startswith("unexpected error")]
        figures.notes.update(dead_lettered=len(letters), recorded_failed=recorded)
        report(figures)

        assert len(letters) == len(cases)
        assert sorted(by_case) == list(range(len(cases)))
        for n, letter in by_case.items():
            assert letter.reason and letter.reason != "unknown", (cases[n], letter.reason)
            assert not letter.reason.startswith("internal error"), (cases[n], letter.reason)
            assert letter.body == cases[n].body
        assert not internal, internal[:3]
        assert worker.alive, "a malformed body crashed the worker"
        await stop_cleanly(fleet, node, dead_letters=len(cases))
    finally:
        await app.close()
