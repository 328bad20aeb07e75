"""A workflow for people: ``taskq status WF_ID`` prints its state and its tree, one
step a line with its task id, state and result or error."""

from __future__ import annotations

import json

from taskq.workflows.handle import StepStatus, WorkflowStatus

#: Characters of a result or error shown on a step's line.
SHOWN = 60


def describe_workflow(status: WorkflowStatus) -> str:
    rows: list[tuple[str, object]] = [
        ("workflow", status.id),
        ("state", status.state.value),
        ("created", status.created_at),
        ("finished", status.finished_at),
    ]
    if status.failed_step is not None:
        what = f"{status.error.type}: {status.error.message}" if status.error else "?"
        rows.append(("failed", f"{status.failed_step}: {what}"))
    lines = [f"{key:<9} {'-' if value is None else value}" for key, value in rows]
    lines.append(status.tree.kind)
    lines.extend(_children(status.tree, ""))
    return "\n".join(lines)


def _children(node: StepStatus, indent: str) -> list[str]:
    lines = []
    for index, child in enumerate(node.children):
        last = index == len(node.children) - 1
        lines.append(f"{indent}{'└─' if last else '├─'} {_line(child)}")
        lines.extend(_children(child, indent + ("   " if last else "│  ")))
    return lines


def _line(node: StepStatus) -> str:
    if node.kind != "task":
        return f"{node.path}  {node.kind}"
    line = f"{node.path}  {node.name}  "
    status = node.status
    if status is None:
        return line + "not published"
    line += f"{status.state.value}  attempts={status.attempts}  [{node.task_id}]"
    if status.error is not None:
        line += f"  {status.error.type}: {' '.join(status.error.message.split())[:SHOWN]}"
    elif status.state.value == "succeeded":
        line += f"  result={json.dumps(status.result)[:SHOWN]}"
    return line
