"""``taskq bench``: taskq's throughput and latency, next to plain aio-pika's, in one run.

Like RabbitMQ's PerfTest, against the broker and store it is given, on a fresh
exchange (``taskq-bench-<random>``) that is deleted afterwards with every queue and
status record of the run. The raw baseline (:mod:`.raw`, :mod:`.sequential`) is what
the client stack does on this machine, and the ceiling (:mod:`.ceiling`) what a
worker's unavoidable I/O allows; each taskq figure is reported with its ratio to them.

    taskq bench --tasks 20000 --processes 2 --json

Modules: :mod:`.config` (flags and fixed shapes), :mod:`.runner` (the phases in
order), :mod:`.raw`, :mod:`.enqueue`, :mod:`.drain`, :mod:`.latency`,
:mod:`.sequential`, :mod:`.ceiling` (the phases; :mod:`.ceiling_consumer` is one
ceiling process), :mod:`.records` (timings from the status store), :mod:`.procs`
(the processes a run starts, their CPU and memory), :mod:`.tasks` (the workers'
app), :mod:`.cleanup`, :mod:`.report`.
"""

from taskq.bench.config import BenchConfig
from taskq.bench.report import Progress, table
from taskq.bench.runner import run_bench

__all__ = ["BenchConfig", "Progress", "run_bench", "table"]
