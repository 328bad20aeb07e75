"""The event loop taskq's own processes run on: uvloop where it is installed.

Only entry points that own their process call :func:`run` (``taskq worker``,
``taskq bench``): a library never installs an event loop policy behind an
application's back, so ``TaskQueue`` and ``Worker`` run on whatever loop the
application gave them. uvloop halves the CPU aio-pika spends per message (frame
encoding, callbacks, transports: measured for issue 5); it is a dependency only where
it builds (``sys_platform != "win32"`` in ``pyproject.toml``), and everything works
on asyncio's own loop without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` if uvloop is importable, else ``None`` (asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: what :func:`run` will use (bench reports it)."""
    return "uvloop" if loop_factory() is not None else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop where available, without touching the global
    event loop policy."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def cancel_requested() -> bool:
    """Whether the current task has been asked to stop.

    A loop that runs until cancelled checks this as well as catching the cancel:
    ``asyncio.wait_for`` (redis-py sends with it, aiormq waits with it) on Python 3.11
    returns the inner result instead of raising when a cancel lands as the inner call
    completes, and a ``while True`` loop would then run on and its stopper wait forever.
    The request still shows in :meth:`asyncio.Task.cancelling`."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancel_requested() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task has been asked to stop
    (:func:`cancel_requested`): for code that runs to its end rather than until
    cancelled, at the points where it may stop. Without it a cancel swallowed by
    ``asyncio.wait_for`` on 3.11 (a Ctrl-C landing as a ``taskq bench`` phase reads the
    store through redis-py) would let the whole run go on and exit 0."""
    if cancel_requested():
        raise asyncio.CancelledError
