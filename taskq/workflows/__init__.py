"""Workflows: chains, groups and chords of tasks, run on the broker and the status
store taskq already has (no polling task, nothing kept in worker memory).

- :mod:`~taskq.workflows.signature`: a task call as data (``task.s()``, ``task.si()``);
- :mod:`~taskq.workflows.canvas`: ``chain``, ``group``, ``chord`` and their JSON form;
- :mod:`~taskq.workflows.shape`: positions in a workflow and the task ids they give;
- :mod:`~taskq.workflows.steps`: publishing steps idempotently, reading node results;
- :mod:`~taskq.workflows.advance`: what a worker does after a step's outcome is recorded;
- :mod:`~taskq.workflows.handle`: sending, ``WorkflowHandle`` and ``WorkflowStatus``.
"""

from taskq.stores.workflow_base import WorkflowState
from taskq.workflows.canvas import Chain, Chord, Group, chain, chord, from_dict, group
from taskq.workflows.handle import StepStatus, WorkflowHandle, WorkflowStatus
from taskq.workflows.signature import Canvas, Signature

__all__ = [
    "Canvas",
    "Chain",
    "Chord",
    "Group",
    "Signature",
    "StepStatus",
    "WorkflowHandle",
    "WorkflowState",
    "WorkflowStatus",
    "chain",
    "chord",
    "from_dict",
    "group",
]
