"""taskq: Python tasks on RabbitMQ, with a status store, and nothing lost.

app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:5672/", store="redis://127.0.0.1:6379/0")

@app.task
async def add(x: int, y: int) -> int:
    return x + y

async with app:
    handle = await add.delay(1, 2)
    print(await handle.result(timeout=10))
"""

from __future__ import annotations

# The names are imported when first used (PEP 562), not with the package: a process
# that runs only ``taskq.supervisor`` (``taskq worker --processes N``'s supervisor)
# imports ``taskq`` without the drivers, pydantic or the app, and stays a few MiB.
TYPE_CHECKING = False  # not typing's: importing typing costs the supervisor 0.5 MiB
if TYPE_CHECKING:
    from typing import Any

    from taskq.app import TaskQueue
    from taskq.broadcast import BroadcastHandle
    from taskq.errors import (
        BrokerConnectionError,
        BrokerError,
        BulkPublishError,
        ConfigurationError,
        InvalidArguments,
        MalformedMessage,
        MessageTooLarge,
        PublishError,
        QueueMismatch,
        ResultTimeout,
        SerializationError,
        StoreError,
        TaskCancelled,
        TaskFailed,
        TaskqError,
        TaskTimeout,
        UnknownTask,
    )
    from taskq.handle import TaskHandle
    from taskq.retry import Reject, Retry
    from taskq.schedules import Schedule, Scheduler
    from taskq.status import ErrorInfo, TaskState, TaskStatus
    from taskq.task import Task
    from taskq.worker import Worker
    from taskq.workflows import (
        Signature,
        WorkflowHandle,
        WorkflowState,
        WorkflowStatus,
        chain,
        chord,
        group,
    )

__version__ = "0.1.0"

__all__ = [
    # the app and its tasks
    "Task",
    "TaskQueue",
    # raised inside a task to steer its retries
    "Reject",
    "Retry",
    # workflows
    "Signature",
    "chain",
    "chord",
    "group",
    "WorkflowHandle",
    "WorkflowState",
    "WorkflowStatus",
    # periodic schedules
    "Schedule",
    "Scheduler",
    # running tasks
    "Worker",
    # asking how a task went
    "BroadcastHandle",
    "ErrorInfo",
    "TaskHandle",
    "TaskState",
    "TaskStatus",
    # errors
    "BrokerConnectionError",
    "BrokerError",
    "BulkPublishError",
    "ConfigurationError",
    "InvalidArguments",
    "MalformedMessage",
    "MessageTooLarge",
    "PublishError",
    "QueueMismatch",
    "ResultTimeout",
    "SerializationError",
    "StoreError",
    "TaskCancelled",
    "TaskFailed",
    "TaskTimeout",
    "TaskqError",
    "UnknownTask",
    "__version__",
]


#: Where each public name lives: imported from there on first use.
_HOMES = {
    "TaskQueue": "taskq.app",
    "BroadcastHandle": "taskq.broadcast",
    **{
        name: "taskq.errors"
        for name in (
            "BrokerConnectionError", "BrokerError", "BulkPublishError", "ConfigurationError",
            "InvalidArguments", "MalformedMessage", "MessageTooLarge", "PublishError",
            "QueueMismatch", "ResultTimeout", "SerializationError", "StoreError",
            "TaskCancelled", "TaskFailed", "TaskqError", "TaskTimeout", "UnknownTask",
        )
    },
    "TaskHandle": "taskq.handle",
    "Reject": "taskq.retry",
    "Retry": "taskq.retry",
    "Schedule": "taskq.schedules",
    "Scheduler": "taskq.schedules",
    "ErrorInfo": "taskq.status",
    "TaskState": "taskq.status",
    "TaskStatus": "taskq.status",
    "Task": "taskq.task",
    "Worker": "taskq.worker",
    **{
        name: "taskq.workflows"
        for name in (
            "Signature", "WorkflowHandle", "WorkflowState", "WorkflowStatus", "chain",
            "chord", "group",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
