"""Periodic schedules: ``@app.periodic`` tasks sent on their ticks by ``taskq scheduler``,
with one active scheduler at a time (RabbitMQ's single active consumer) and each tick's
task id deterministic, so that a tick sent twice runs once.

- :mod:`taskq.schedules.cron`: five-field cron expressions, DST rules;
- :mod:`taskq.schedules.schedule`: :class:`Schedule`, its ticks and task ids;
- :mod:`taskq.schedules.registry`: an app's schedules, checked at start;
- :mod:`taskq.schedules.leader`: which scheduler is active;
- :mod:`taskq.schedules.scheduler`: :class:`Scheduler`, which sends the ticks.
"""

from taskq.schedules.schedule import Schedule
from taskq.schedules.scheduler import Scheduler

__all__ = ["Schedule", "Scheduler"]
