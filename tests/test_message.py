"""Decoding task messages: the fast parser, and the stdlib's last word on what it refuses."""

from __future__ import annotations

import pytest

from taskq.errors import MalformedMessage
from taskq.message import TaskMessage


def nested(depth: int) -> list[object]:
    value: list[object] = []
    inner = value
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    return value


def test_a_message_decodes_to_what_was_encoded() -> None:
    message = TaskMessage("t-1", "emails.send", [1, "é", {"a": [None, 1.5]}], {"k": True})
    decoded = TaskMessage.decode(message.encode())
    assert (decoded.id, decoded.task, decoded.args, decoded.kwargs) == (
        "t-1",
        "emails.send",
        [1, "é", {"a": [None, 1.5]}],
        {"k": True},
    )


def test_arguments_as_deep_as_the_encoder_writes_still_decode() -> None:
    # pydantic's parser stops at 200 levels, its encoder at 255.
    body = TaskMessage("t-2", "deep", [nested(240)], {}).encode()
    assert TaskMessage.decode(body).args == [nested(240)]


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"[1, 2]", b'"\\ud800" 1'])
def test_what_is_not_a_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        TaskMessage.decode(body, correlation_id="c-1")
