"""Chains, groups and chords, and their JSON form.

    chain(a.s(1), b.s(), c.s())        # a(1), then b(<a's result>), then c(<b's result>)
    group(a.s(1), a.s(2))              # in parallel; result: [a(1), a(2)] in member order
    chord(group(...), total.s())       # total([<member results>]) once every member succeeded

A chord is a chain of its group and its callback (and is kept as such: a group inside a
chain is joined before the next step, whatever it is called). Chains hold groups and
chords, and the reverse, to any depth. JSON nodes::

    {"type": "task", "task": NAME, "args": [...], "kwargs": {...},
     "options": {"countdown": S}, "immutable": true}          (options, immutable: optional)
    {"type": "chain", "steps": [NODE, ...], "link_error": TASK NODE}  (link_error: optional)
    {"type": "group", "members": [NODE, ...]}
    {"type": "chord", "header": GROUP NODE, "body": NODE, "link_error": TASK NODE}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError
from taskq.workflows.signature import Canvas, Signature

if TYPE_CHECKING:
    from taskq.app import TaskQueue


def _canvases(what: str, items: tuple[Any, ...]) -> list[Canvas]:
    """``f(a, b)`` or ``f([a, b])`` / ``f(gen)``: the pieces, each checked."""
    if len(items) == 1 and not isinstance(items[0], Canvas) and isinstance(items[0], Iterable):
        items = tuple(items[0])
    if not items:
        raise ConfigurationError(f"a {what} needs at least one signature")
    for item in items:
        if not isinstance(item, Canvas):
            raise ConfigurationError(
                f"a {what} holds signatures (task.s(...)), chains, groups and chords, "
                f"not {item!r:.60}"
            )
    return list(items)


def _errback(link_error: Signature | None) -> Signature | None:
    if link_error is not None and not isinstance(link_error, Signature):
        raise ConfigurationError(f"link_error must be a signature, not {link_error!r:.60}")
    return link_error


class Chain(Canvas):
    """Steps run one after the other, each given the previous one's result as its first
    argument (``.si()`` steps excepted). Its result is the last step's. ``link_error``
    runs with the failed step's task id as first argument if a step fails for good."""

    def __init__(self, *steps: Canvas, link_error: Signature | None = None) -> None:
        self.steps = _canvases("chain", steps)
        self.link_error = _errback(link_error)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"

    def signatures(self) -> Iterator[Signature]:
        for step in self.steps:
            yield from step.signatures()
        if self.link_error is not None:
            yield self.link_error

    def to_dict(self) -> dict[str, Any]:
        node: dict[str, Any] = {"type": "chain", "steps": [s.to_dict() for s in self.steps]}
        if self.link_error is not None:
            node["link_error"] = self.link_error.to_dict()
        return node


class Group(Canvas):
    """Members run in parallel (each given the previous step's result, in a chain); the
    group's result is the list of their results, in member order."""

    def __init__(self, *members: Canvas | Iterable[Canvas]) -> None:
        self.members = _canvases("group", members)

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"

    def signatures(self) -> Iterator[Signature]:
        for member in self.members:
            yield from member.signatures()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "group", "members": [m.to_dict() for m in self.members]}


class Chord(Canvas):
    """A group, then ``body`` called once with the list of the members' results, when
    every member succeeded. ``link_error`` as for a chain."""

    def __init__(
        self,
        header: Group | Iterable[Canvas],
        body: Canvas,
        *,
        link_error: Signature | None = None,
    ) -> None:
        self.header = header if isinstance(header, Group) else Group(header)
        if not isinstance(body, Canvas):
            raise ConfigurationError(f"a chord's body is a signature, not {body!r:.60}")
        self.body = body
        self.link_error = _errback(link_error)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def signatures(self) -> Iterator[Signature]:
        yield from self.header.signatures()
        yield from self.body.signatures()
        if self.link_error is not None:
            yield self.link_error

    def to_dict(self) -> dict[str, Any]:
        node: dict[str, Any] = {
            "type": "chord",
            "header": self.header.to_dict(),
            "body": self.body.to_dict(),
        }
        if self.link_error is not None:
            node["link_error"] = self.link_error.to_dict()
        return node


def chain(*steps: Canvas, link_error: Signature | None = None) -> Chain:
    """Run ``steps`` one after the other: see :class:`Chain`.

    >>> wf = await taskq.chain(fetch.s(url), parse.s(), store.s()).delay()
    """
    return Chain(*steps, link_error=link_error)


def group(*members: Canvas | Iterable[Canvas]) -> Group:
    """Run ``members`` in parallel: see :class:`Group`.

    >>> wf = await taskq.group(square.s(i) for i in range(10)).delay()
    """
    return Group(*members)


def chord(
    header: Group | Iterable[Canvas], body: Canvas, *, link_error: Signature | None = None
) -> Chord:
    """Run ``header``'s members, then ``body`` with their results: see :class:`Chord`.

    >>> wf = await taskq.chord([square.s(i) for i in range(10)], total.s()).delay()
    """
    return Chord(header, body, link_error=link_error)


def from_dict(node: Mapping[str, Any], app: TaskQueue | None = None) -> Canvas:
    """The canvas of a JSON node (see the module docstring); raises
    :class:`ConfigurationError` naming what does not fit."""
    if not isinstance(node, Mapping):
        raise ConfigurationError(f"a workflow node is a JSON object, not {node!r:.60}")
    kind = node.get("type")
    try:
        errback = node.get("link_error")
        link_error = None if errback is None else Signature.from_dict(errback, app)
        if kind == "task":
            return Signature.from_dict(node, app)
        if kind == "chain":
            return Chain(*(from_dict(s, app) for s in node["steps"]), link_error=link_error)
        if kind == "group":
            return Group(*(from_dict(m, app) for m in node["members"]))
        if kind == "chord":
            header = from_dict(node["header"], app)
            if not isinstance(header, Group):
                raise ConfigurationError("a chord's header must be a group")
            return Chord(header, from_dict(node["body"], app), link_error=link_error)
    except (KeyError, TypeError) as exc:
        raise ConfigurationError(f"a {kind} node lacks {exc}") from None
    raise ConfigurationError(f"unknown workflow node type {kind!r}")
