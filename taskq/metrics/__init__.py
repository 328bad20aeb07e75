"""Prometheus metrics of a worker: ``taskq worker APP --metrics-port 9100``.

Needs ``prometheus_client`` (the extra ``taskq[metrics]``); nothing imports this
package unless metrics are asked for.

Per task name: ``taskq_tasks_total{task,state}`` (started, succeeded, failed, retried,
cancelled, dead_lettered), ``taskq_task_duration_seconds{task}`` and
``taskq_task_wait_seconds{task}`` (histograms), ``taskq_tasks_running{task}``; per
process: ``taskq_broker_reconnects_total``, ``taskq_store_errors_total``.

In your own process::

    metrics = WorkerMetrics()
    server = serve(metrics.registry, port=9100)          # 127.0.0.1 unless host=...
    async with Worker(app, metrics=metrics):
        ...
"""

from taskq.metrics.server import ChildrenMetrics, MetricsServer, serve
from taskq.metrics.worker import WorkerMetrics

__all__ = ["ChildrenMetrics", "MetricsServer", "WorkerMetrics", "serve"]
