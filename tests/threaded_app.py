"""An app whose module starts a thread when it is imported: forked workers would not
have it, so the zygote says so (tests/test_zygote.py)."""

from __future__ import annotations

import threading

from taskq import TaskQueue

app = TaskQueue()
_stop = threading.Event()
threading.Thread(target=_stop.wait, name="import-time-thread", daemon=True).start()


@app.task(name="threaded.noop")
async def noop() -> None:
    """Nothing: the app only has to start."""
