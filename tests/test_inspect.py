"""``taskq queues`` and ``taskq status --task/--state/--limit``, in subprocesses against
RabbitMQ and Redis: what an operator looks at to see where the tasks are."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from taskq import TaskQueue, TaskState, TaskStatus
from taskq.cli import RET_OK, RET_USAGE
from taskq.status import ErrorInfo
from taskq.stores.base import DEFAULT_TTL
from taskq.topology import QueueSpec
from tests.cli_app import TASK_NAMES
from tests.contract.test_broker_contract import Inbox
from tests.helpers import eventually
from tests.test_cli import env, taskq

__all__ = ["env"]  # the fixture, shared with tests/test_cli.py


@pytest_asyncio.fixture
async def rabbit(
    env: dict[str, str], amqp_url: str, redis_url: str, exchange: str
) -> AsyncIterator[TaskQueue]:
    """This test's side of the deployment that ``env`` describes (``env``, torn down
    after this, deletes what both left)."""
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    await app.connect()
    try:
        yield app
    finally:
        await app.close()


def rows_by_name(stdout: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(stdout)
    for row in rows:
        assert {"name", "ready", "unacked", "consumers"} <= row.keys()
    return {row["name"]: row for row in rows}


# -- taskq queues ---------------------------------------------------------------------


async def test_queues_shows_ready_messages_consumers_and_the_dead_letters_of_an_app(
    env: dict[str, str], rabbit: TaskQueue, exchange: str
) -> None:
    # Given four tasks sent, one dead-lettered, one held by a consumer, two waiting
    for n in range(4):
        await rabbit.send("cli.add", [n, n])
    inbox = Inbox()
    consumer = await rabbit.broker.consume([QueueSpec("cli.add")], inbox, prefetch=1)
    try:
        first = await inbox.get()
        await rabbit.broker.dead_letter(first, "task raised RuntimeError: boom")
        await first.ack()
        await inbox.get()  # held, never settled while we look

        async def shown() -> dict[str, dict[str, Any]]:
            ran = await taskq("queues", "tests.cli_app:app", "--json", env=env)
            assert ran.returncode == RET_OK, ran.stderr
            assert "management API" in ran.stderr  # why unacked is unknown here
            return rows_by_name(ran.stdout)

        # When an operator asks (quorum queues report counts a moment late)
        add, dead = f"{exchange}.cli.add", f"{exchange}.dead"
        rows = await eventually(
            shown,
            lambda r: (r[add]["ready"], r[add]["consumers"], r[dead]["ready"]) == (2, 1, 1),
            timeout=10,
        )
    finally:
        await consumer.close()

    # Then every task queue of the app is listed, and the dead letters last
    assert list(rows) == [f"{exchange}.{task}" for task in TASK_NAMES] + [dead]
    assert rows[add] == {
        "name": add,
        "task": "cli.add",
        "ready": 2,
        "unacked": None,  # no management plugin on this broker: a passive declare
        "consumers": 1,
        "declared": True,
        "type": "quorum",  # as the app declares it; AMQP cannot tell where it lives
        "leader": None,
        "members": None,
    }
    assert (rows[dead]["task"], rows[dead]["type"]) == (None, "quorum")
    never_sent = rows[f"{exchange}.cli.fail"]
    assert (never_sent["declared"], never_sent["ready"], never_sent["consumers"]) == (False, 0, 0)
    assert never_sent["type"] is None


class _ManagementStub(BaseHTTPRequestHandler):
    """Answers as RabbitMQ's management API would, from ``server.answers``."""

    server: Any

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers["Authorization"]))
        answer = self.server.answers.get(self.path.split("?")[0])
        body = json.dumps(answer).encode()
        self.send_response(200 if answer is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def management() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ManagementStub)
    server.seen = []  # type: ignore[attr-defined]
    server.answers = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_queues_without_an_app_lists_the_queues_bound_to_the_exchange_from_the_management_api(
    env: dict[str, str], exchange: str, management: Any
) -> None:
    add, dead = f"{exchange}.cli.add", f"{exchange}.dead"
    queue = {"destination_type": "queue"}
    management.answers = {
        f"/api/exchanges/%2F/{exchange}/bindings/source": [
            {**queue, "destination": add},  # a task queue has two bindings: listed once
            {**queue, "destination": add},
            {**queue, "destination": "someone-else.queue"},  # not named after our exchange
            {"destination_type": "exchange", "destination": "elsewhere"},
        ],
        # As RabbitMQ 3.10.8's plugin answers for a three-node cluster (checked by hand
        # on the fault suite's cluster): a quorum queue's leader and members, a classic
        # queue's node.
        "/api/queues/%2F": [
            {
                "name": add,
                "messages_ready": 5,
                "messages_unacknowledged": 3,
                "consumers": 2,
                "type": "quorum",
                "leader": "rabbit-2@h2",
                "members": ["rabbit-2@h2", "rabbit-3@h3", "rabbit-1@h1"],
            },
            {
                "name": dead,
                "messages_ready": 1,
                "messages_unacknowledged": 0,
                "consumers": 0,
                "type": "classic",
                "node": "rabbit-1@h1",
            },
            {"name": "someone-else.queue", "messages_ready": 9},
        ],
    }
    port = management.server_address[1]

    ran = await taskq("queues", "--json", "--management-url", f"http://127.0.0.1:{port}", env=env)
    table = await taskq("queues", "--management-url", f"http://127.0.0.1:{port}/", env=env)

    assert ran.returncode == RET_OK, ran.stderr
    assert json.loads(ran.stdout) == [
        {
            "name": add,
            "task": "cli.add",
            "ready": 5,
            "unacked": 3,
            "consumers": 2,
            "declared": True,
            "type": "quorum",
            "leader": "rabbit-2@h2",
            "members": ["rabbit-2@h2", "rabbit-3@h3", "rabbit-1@h1"],
        },
        {
            "name": dead,
            "task": None,
            "ready": 1,
            "unacked": 0,
            "consumers": 0,
            "declared": True,
            "type": "classic",
            "leader": "rabbit-1@h1",
            "members": None,
        },
    ]
    assert table.returncode == RET_OK, table.stderr
    assert table.lines[1].split() == [add, "5", "3", "2"]
    # The plugin answers only the columns asked for.
    asked = [path for path, _ in management.seen if path.startswith("/api/queues/")]
    assert asked and all("type,leader,members,node" in path for path in asked)
    # the broker URL's credentials (guest:guest), as the plugin shares RabbitMQ's users
    guest = "Basic " + base64.b64encode(b"guest:guest").decode()
    assert {auth for _, auth in management.seen} == {guest}


# -- taskq status --task NAME --state STATE --limit N ---------------------------------


async def test_status_lists_the_latest_tasks_of_a_name_in_a_state(
    env: dict[str, str], rabbit: TaskQueue
) -> None:
    store, ids = rabbit.store, []
    for n in range(3):
        ids.append(task_id := uuid.uuid4().hex)
        error = ErrorInfo(type="RuntimeError", message=f"boom {n}")
        await store.transition(task_id, "cli.fail", TaskState.STARTED)
        await store.transition(task_id, "cli.fail", TaskState.FAILED, error=error)
    await store.transition(uuid.uuid4().hex, "cli.add", TaskState.FAILED)  # another task
    await store.create(uuid.uuid4().hex, "cli.fail")  # another state

    listed = await taskq(
        "status", "--task", "cli.fail", "--state", "failed", "--limit", "2", env=env
    )
    as_json = await taskq("status", "--task", "cli.fail", "--state", "failed", "--json", env=env)
    everything = await taskq("status", env=env)

    assert listed.returncode == RET_OK, listed.stderr
    assert [line.split("  ")[:3] for line in listed.lines] == [
        [ids[2], "cli.fail", "failed"],
        [ids[1], "cli.fail", "failed"],
    ]
    assert listed.lines[0].endswith("RuntimeError: boom 2")
    statuses = [TaskStatus.model_validate(item) for item in json.loads(as_json.stdout)]
    assert [s.id for s in statuses] == ids[::-1]
    assert statuses[0] == await store.get(ids[2])
    assert len(everything.lines) == 5


async def test_status_takes_a_task_id_or_the_listing_options_not_both(
    env: dict[str, str],
) -> None:
    ran = await taskq("status", uuid.uuid4().hex, "--state", "failed", env=env)
    assert ran.returncode == RET_USAGE
    assert "not both" in ran.stderr


async def test_results_are_kept_a_day_by_default_on_either_store(
    redis_url: str, rabbit: TaskQueue, exchange: str
) -> None:
    task_id = uuid.uuid4().hex
    await rabbit.store.create(task_id, "cli.add")
    client = aioredis.from_url(redis_url)
    try:
        ttl_ms = await client.pttl(f"{exchange}:task:{task_id}")
    finally:
        await client.aclose()
    assert DEFAULT_TTL == 86_400
    assert 86_390_000 < ttl_ms <= 86_400_000
    assert TaskQueue(broker="memory://", store="memory://").store.ttl == DEFAULT_TTL


def test_with_a_list_of_nodes_the_management_api_of_the_next_node_answers_when_the_first_does_not(
    management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``taskq queues`` and the dashboard ask the API beside the broker when no URL is
    given: with a list of nodes whose first is down, the next node's API answers (any
    node's answers for the whole cluster). Here the nodes are two loopback addresses
    and only 127.0.0.1 has an API (the stand-in, on its own port)."""
    from taskq.brokers import amqp_management
    from taskq.brokers.amqp import AmqpBroker
    from taskq.topology import Topology

    monkeypatch.setattr(amqp_management, "HTTP_PORT", management.server_address[1])
    management.answers = {"/api/queues/%2F": [{"name": "q", "messages_unacknowledged": 4}]}
    broker = AmqpBroker(
        "amqp://guest:guest@127.0.0.2:5672/;amqp://ops:s3cret@127.0.0.1:5672/", Topology("t")
    )
    api = broker.management_api()
    assert api.base_url.startswith("http://127.0.0.2:")
    assert api.queues()["q"].unacked == 4
    ops = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    assert {auth for _, auth in management.seen} == {ops}  # that node's credentials

    management.answers = {}  # an API that answers, with an error: not skipped over
    with pytest.raises(amqp_management.ManagementUnavailable, match="404"):
        api.queues()
    single = AmqpBroker("amqp://guest:guest@127.0.0.2:5672/", Topology("t")).management_api()
    with pytest.raises(amqp_management.ManagementUnavailable, match="no management API at"):
        single.queues()
