"""Named points where crash tests stop publish and deploy, to kill them there for real.

With ``VENVSTACKS_PAUSE_AT=<point>[,<point>...]`` (and optionally ``VENVSTACKS_PAUSE_FILE``), the
process appends ``<pid> <point>`` to the pause file and stops itself (SIGSTOP; the thread that
reached the point then never goes on) when it reaches a named point; the test then kills it with
SIGKILL. Without the variable, `crash_point` does nothing.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["crash_point"]

_ENV = "VENVSTACKS_PAUSE_AT"
_FILE = "VENVSTACKS_PAUSE_FILE"


def crash_point(name: str) -> None:
    """Stop here if a crash test asked for this point (see the module docs)."""
    wanted = os.environ.get(_ENV)
    if not wanted or name not in wanted.split(","):
        return
    target = os.environ.get(_FILE)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {name}\n")
    stop = getattr(signal, "SIGSTOP", None)
    if stop is not None:
        os.kill(os.getpid(), stop)
    while True:  # a stop signal may take effect after this thread ran on: never go past here
        time.sleep(3600)
