"""Running venvstacks tasks: a no-op is decided without doit, everything else runs with doit.

Tasks arrive as typed dicts (`TaskDict`). A run first asks `uptodate.all_up_to_date`, by doit's
own rules, whether every task it involves is up to date; when so, nothing is imported, set up or
written. Otherwise doit decides and runs (`doitrun`): dependency state lives in a JSON file inside
the build dir and uses content hashes (doit's MD5 checker), never timestamps. A file lock on the
build dir keeps two builds from sharing it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from venvstacks.errors import StackError
from venvstacks.proc import inherited_fd
from venvstacks.tasks.model import (
    ProgressCallback,
    RunResult,
    TaskDict,
    TaskState,
    current_task,
    doit_problem,
    full_name,
)
from venvstacks.tasks.taskdb import db_shape_problem, load_task_db, repair_task_db
from venvstacks.tasks.uptodate import all_up_to_date

__all__ = [
    "ProgressCallback",
    "RunResult",
    "TaskDict",
    "TaskState",
    "build_dir_lock",
    "current_task",
    "db_shape_problem",
    "doit_problem",
    "full_name",
    "load_task_db",
    "lock_waits",
    "repair_task_db",
    "run_tasks",
    "task_states",
]

_log = logging.getLogger(__name__)


def run_tasks(
    tasks: Sequence[TaskDict],
    selected: Sequence[str],
    db_path: Path,
    *,
    jobs: int = 1,
    always: bool = False,
    keep_going: bool = False,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run `selected` tasks (and what they need) that are not up to date."""
    db = load_task_db(db_path)
    if not always:
        fresh = all_up_to_date(tasks, selected, db)
        if fresh is not None:
            for name in fresh:
                if progress is not None:
                    progress("skip", name, None)
            return RunResult(up_to_date=fresh)
    from venvstacks.tasks.doitrun import run_with_doit

    return run_with_doit(
        tasks,
        selected,
        db_path,
        db,
        jobs=jobs,
        always=always,
        keep_going=keep_going,
        progress=progress,
    )


def task_states(tasks: Sequence[TaskDict], db_path: Path) -> list[TaskState]:
    """The state of every task without running anything (doit's own up-to-date check)."""
    from venvstacks.tasks.doitrun import doit_task_states

    return doit_task_states(tasks, db_path)


def _try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _describe_holder(recorded: str) -> str:
    """Who holds a build-dir lock: the venvstacks process, or what it started if it is gone."""
    found = re.fullmatch(r"venvstacks \(pid (\d+)\)", recorded)
    if found is None:
        return recorded or "another process"
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return f"subprocesses of the ended {recorded}"
    except OSError:
        pass
    return recorded


_LOCK_WAITS = [0]  # how many times this process waited for a build dir another process held


def lock_waits() -> int:
    """How many times this process waited for a build dir: what was read of a build dir before
    a wait may have been rewritten by the other process meanwhile (see `StackTasks.lock_valid`)."""
    return _LOCK_WAITS[0]


def _wait_for_lock(handle: IO[str]) -> None:
    while not _try_lock(handle):
        time.sleep(0.2)
    _LOCK_WAITS[0] += 1


@contextlib.contextmanager
def build_dir_lock(lock_path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on a build dir; a second build waits, or fails when `wait` is off.

    The lock is released when the file is closed, including when the process dies.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = _describe_holder(handle.read().strip())
            if not wait:
                raise StackError(
                    f"the build dir {lock_path.parent.parent} is in use by {holder}"
                ) from None
            _log.warning("waiting for %s to finish with %s", holder, lock_path.parent.parent)
            _wait_for_lock(handle)
        handle.seek(0)
        handle.truncate()
        handle.write(f"venvstacks (pid {os.getpid()})\n")
        handle.flush()
        try:
            # Subprocesses hold the lock too: one that outlives a killed build (an orphaned uv
            # still writing an environment) keeps the next build waiting until it ends.
            with inherited_fd(handle.fileno()):
                yield
        finally:
            handle.seek(0)
            handle.truncate()
