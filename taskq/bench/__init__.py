"""``taskq bench``: taskq's throughput and latency, next to plain aio-pika's, in one run.

Like RabbitMQ's PerfTest, against the broker and store it is given, on a fresh
exchange (``taskq-bench-<random>``) that is deleted afterwards with every queue and
status record of the run. The raw baseline (:mod:`.raw`) is the ceiling of the client
stack on this machine; each taskq rate is reported with its ratio to it.

    taskq bench --tasks 20000 --processes 2 --json

Modules: :mod:`.config` (flags and fixed shapes), :mod:`.runner` (the phases in
order), :mod:`.raw`, :mod:`.enqueue`, :mod:`.drain`, :mod:`.latency` (the phases),
:mod:`.records` (timings from the status store), :mod:`.procs` (worker processes and
their RSS), :mod:`.tasks` (the workers' app), :mod:`.cleanup`, :mod:`.report`.
"""

from taskq.bench.config import BenchConfig
from taskq.bench.report import Progress, table
from taskq.bench.runner import run_bench

__all__ = ["BenchConfig", "Progress", "run_bench", "table"]
