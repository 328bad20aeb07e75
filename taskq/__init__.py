"""taskq: Python tasks on RabbitMQ, with a status store, and nothing lost.

app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:5672/", store="redis://127.0.0.1:6379/0")

@app.task
async def add(x: int, y: int) -> int:
    return x + y

async with app:
    handle = await add.delay(1, 2)
    print(await handle.result(timeout=10))
"""

from taskq.app import TaskQueue
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
    # running tasks
    "Worker",
    # asking how a task went
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
