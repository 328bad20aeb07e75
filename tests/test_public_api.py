"""The public API is a deliberate list: a new name in it is a decision, made here."""

import taskq


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(taskq.__all__) == sorted(
        [
            "Task",
            "TaskQueue",
            "Reject",
            "Retry",
            "Worker",
            "BroadcastHandle",
            "Schedule",
            "Scheduler",
            "ErrorInfo",
            "TaskHandle",
            "TaskState",
            "TaskStatus",
            "Signature",
            "chain",
            "chord",
            "group",
            "WorkflowHandle",
            "WorkflowState",
            "WorkflowStatus",
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
            "TaskqError",
            "TaskTimeout",
            "UnknownTask",
            "__version__",
        ]
    )
    for name in taskq.__all__:
        assert hasattr(taskq, name), name


def test_every_error_is_a_taskq_error() -> None:
    for name in taskq.__all__:
        obj = getattr(taskq, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, taskq.TaskqError), name


def test_task_states_are_the_documented_strings() -> None:
    assert [s.value for s in taskq.TaskState] == [
        "queued",
        "started",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert set(taskq.TaskStatus.model_fields) == {
        "id",
        "name",
        "state",
        "attempts",
        "result",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "cancel_requested",
        "worker",
        "args",
        "kwargs",
        "call_truncated",
    }
    assert set(taskq.ErrorInfo.model_fields) == {"type", "message", "traceback"}
