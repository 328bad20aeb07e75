"""Positions in a workflow's JSON shape, and the deterministic task ids they give.

A step's position is its path of child indexes from the root: in
``chain(a, chord([b, c], d), e)`` the steps are ``0`` (a), ``1.0.0`` and ``1.0.1`` (b,
c: the chord's header is its child 0), ``1.1`` (d, child 1) and ``2`` (e). The root is
always a container: a lone signature sent as a workflow is a chain of one step. A step's
task id is ``<workflow id>.<path>``, so whoever publishes a step, and however often,
publishes it under the same id; an error callback of the node at ``P`` is
``<workflow id>.<P>.error`` (``<workflow id>.error`` for the root's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, NamedTuple

Path = tuple[int, ...]
Node = dict[str, Any]


class _NoInput:
    def __repr__(self) -> str:
        return "NO_INPUT"


#: A node started with nothing before it (the workflow's first steps).
NO_INPUT: Final[Any] = _NoInput()


class Start(NamedTuple):
    """A step to publish: where it is, its node, and the arguments it is called with."""

    path: Path
    node: Node
    args: list[Any]


def path_str(path: Path) -> str:
    return ".".join(map(str, path))


def parse_path(text: str) -> Path:
    """``"1.0"`` -> ``(1, 0)``; raises ``ValueError`` for anything else."""
    if not text:
        return ()
    parts = tuple(int(part) for part in text.split("."))
    if any(part < 0 for part in parts):
        raise ValueError(f"negative index in workflow path {text!r}")
    return parts


def step_id(workflow_id: str, path: Path) -> str:
    return f"{workflow_id}.{path_str(path)}"


def errback_id(workflow_id: str, path: Path) -> str:
    return f"{workflow_id}.{path_str(path)}.error" if path else f"{workflow_id}.error"


def as_root(node: Node) -> Node:
    """The root of a workflow sent as ``node``: a lone task becomes a chain of one."""
    return node if node["type"] != "task" else {"type": "chain", "steps": [node]}


def children(node: Node) -> list[Node]:
    kind = node["type"]
    if kind == "chain":
        return list(node["steps"])
    if kind == "chord":
        return [node["header"], node["body"]]
    if kind == "group":
        return list(node["members"])
    return []


def in_sequence(node: Node) -> bool:
    """Children run one after the other (chain, chord) rather than together (group)."""
    return bool(node["type"] in ("chain", "chord"))


def node_at(root: Node, path: Path) -> Node:
    node = root
    for index in path:
        node = children(node)[index]
    return node


def steps(root: Node, path: Path = ()) -> Iterator[tuple[Path, Node]]:
    """Every task node under ``path``, in order."""
    node = node_at(root, path)
    if node["type"] == "task":
        yield path, node
        return
    for index in range(len(children(node))):
        yield from steps(root, (*path, index))


def call_args(node: Node, given: Any) -> list[Any]:
    """A task node's arguments, with ``given`` (the previous result) in front unless
    the node is immutable or nothing came before."""
    args = list(node.get("args") or ())
    if given is NO_INPUT or node.get("immutable"):
        return args
    return [given, *args]


def starts(node: Node, path: Path, given: Any) -> list[Start]:
    """The steps to publish when the node at ``path`` starts, given ``given``: a chain's
    (or chord's) first child, every member of a group (each gets ``given``)."""
    kind = node["type"]
    if kind == "task":
        return [Start(path, node, call_args(node, given))]
    kids = children(node)
    if in_sequence(node):
        return starts(kids[0], (*path, 0), given)
    found: list[Start] = []
    for index, kid in enumerate(kids):
        found.extend(starts(kid, (*path, index), given))
    return found


def ancestors(path: Path) -> Iterator[Path]:
    """The paths above ``path``, innermost first, the root last."""
    for end in range(len(path) - 1, -1, -1):
        yield path[:end]
