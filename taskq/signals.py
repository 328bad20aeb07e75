"""SIGTERM and SIGINT as a request to stop, for the long-running loops (a worker, a
scheduler) that a command or an application runs in the foreground."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call ``request_stop``; the handlers are removed
    on the way out. Where none can be installed (not the main thread, or Windows) the
    loop still stops when asked in code."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, request_stop)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
