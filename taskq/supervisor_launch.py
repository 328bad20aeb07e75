"""How the supervisor starts a child: a fresh interpreter, or a fork of the zygote.

:class:`PopenLauncher` runs the ``taskq worker`` command line once per child;
:class:`ForkLauncher` asks a zygote (:mod:`taskq.zygote`) that ran it once and
imported the app to fork each child, so they share its memory. Either way a child
runs in its own process group and gets SIGTERM when its parent dies (Linux).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

from taskq.zygote import ZygoteLauncher, die_with_parent

TYPE_CHECKING = False  # typing: not imported by the supervisor for this
if TYPE_CHECKING:
    from typing import Protocol

    class Child(Protocol):
        """What the supervisor uses of a child: :class:`subprocess.Popen`'s, or a
        :class:`~taskq.zygote.ForkedChild`'s (whose pid is known once it is forked)."""

        @property
        def pid(self) -> int | None: ...

        def poll(self) -> int | None: ...

        def send_signal(self, signum: int) -> None: ...

        def kill(self) -> None: ...

        def wait(self) -> int: ...

    class Launcher(Protocol):
        def start(self, slot: int, on_started: OnStarted) -> Child: ...

        def close(self) -> None: ...


#: Set in a child's environment: the slot it fills (0 .. N-1).
SLOT_ENV = "TASKQ_WORKER_SLOT"

#: Called with a child's pid and slot once the child runs.
OnStarted = Callable[[int, int], None]


class PopenLauncher:
    """Each child a fresh interpreter running ``command``."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.command = list(command)
        self.env = dict(env)

    def start(self, slot: int, on_started: OnStarted) -> Child:
        process = subprocess.Popen(
            self.command,
            env={**self.env, SLOT_ENV: str(slot)},
            process_group=0,
            preexec_fn=die_with_parent,
        )
        on_started(process.pid, slot)
        return process

    def close(self) -> None:
        pass


class ForkLauncher:
    """Each child forked by a zygote running ``command`` (:mod:`taskq.zygote`)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.zygote = ZygoteLauncher(command, env)

    def start(self, slot: int, on_started: OnStarted) -> Child:
        self.zygote.on_started = lambda child: on_started(child.pid or 0, child.slot)
        return self.zygote.start(slot)

    def close(self) -> None:
        self.zygote.close()
