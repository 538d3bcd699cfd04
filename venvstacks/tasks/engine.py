"""Running venvstacks tasks with doit: the only module besides `tasks.py` that knows doit.

Tasks arrive as typed dicts (`TaskDict`), become doit `Task` objects, and run through doit's own
`TaskControl` and runners (threads for `-j N`: the work is subprocess-bound). Dependency state lives
in a JSON file inside the build dir and uses content hashes (doit's MD5 checker), never timestamps.
A file lock on the build dir keeps two builds from sharing it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypedDict

from doit.control import TaskControl
from doit.dependency import DatabaseException, Dependency, JsonDB, MD5Checker
from doit.exceptions import BaseFail, TaskFailed
from doit.runner import MThreadRunner, Runner
from doit.task import Stream, Task

from venvstacks.errors import StackError

__all__ = ["RunResult", "TaskDict", "TaskState", "build_dir_lock", "run_tasks", "task_states"]

_log = logging.getLogger(__name__)


class TaskDict(TypedDict, total=False):
    """The subset of doit's task dictionary that venvstacks uses."""

    name: str
    basename: str
    actions: list[Any]
    file_dep: list[str]
    targets: list[str]
    task_dep: list[str]
    uptodate: list[Any]
    doc: str
    verbosity: int


def full_name(task: TaskDict) -> str:
    return f"{task['basename']}:{task['name']}"


def to_doit_task(task: TaskDict) -> Task:
    return Task(
        full_name(task),
        task.get("actions", []),
        file_dep=task.get("file_dep", []),
        targets=task.get("targets", []),
        task_dep=task.get("task_dep", []),
        uptodate=task.get("uptodate", []),
        doc=task.get("doc"),
        verbosity=task.get("verbosity", 0),
    )


@dataclass
class RunResult:
    """What a run did: tasks executed, tasks skipped as up to date, failures with their reasons."""

    code: int = 0
    executed: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # what executed tasks returned


ProgressCallback = Callable[[str, str, float | None], None]
"""Called with (event, task name, seconds) for events 'start', 'done', 'skip', 'fail'."""


class _Reporter:
    """A doit reporter that records results and forwards progress events."""

    def __init__(self, result: RunResult, progress: ProgressCallback | None) -> None:
        self._result = result
        self._progress = progress
        self._started: dict[str, float] = {}

    def _emit(self, event: str, name: str, seconds: float | None = None) -> None:
        if self._progress is not None:
            self._progress(event, name, seconds)

    def initialize(self, tasks: object, selected_tasks: object) -> None:
        pass

    def get_status(self, task: Task) -> None:
        pass

    def execute_task(self, task: Task) -> None:
        self._started[task.name] = time.monotonic()
        self._emit("start", task.name)

    def _elapsed(self, task: Task) -> float:
        seconds = time.monotonic() - self._started.get(task.name, time.monotonic())
        self._result.durations[task.name] = seconds
        return seconds

    def add_failure(self, task: Task, fail: BaseFail) -> None:
        message = (
            str(fail.get_msg()).strip() if isinstance(fail, TaskFailed) else _describe_error(fail)
        )
        self._result.failures[task.name] = message
        self._emit("fail", task.name, self._elapsed(task))

    def add_success(self, task: Task) -> None:
        self._result.executed.append(task.name)
        self._result.values[task.name] = dict(getattr(task, "values", None) or {})
        self._emit("done", task.name, self._elapsed(task))

    def skip_uptodate(self, task: Task) -> None:
        self._result.up_to_date.append(task.name)
        self._emit("skip", task.name)

    def skip_ignore(self, task: Task) -> None:
        pass

    def cleanup_error(self, exception: BaseException) -> None:
        _log.error("cleanup failed: %s", exception)

    def runtime_error(self, msg: str) -> None:
        self._result.failures.setdefault("venvstacks", msg)

    def teardown_task(self, task: Task) -> None:
        pass

    def complete_run(self) -> None:
        pass


def _describe_error(fail: BaseFail) -> str:
    """A task error that is not a StackError is a venvstacks bug: keep its traceback."""
    return str(fail.get_msg()).strip()


class _AtomicJsonDB(JsonDB):  # type: ignore[misc]
    """doit's JSON backend, written to a temporary file and renamed into place.

    A build killed while the DB is written leaves the previous DB, never a truncated one; a DB
    that cannot be read (damaged by hand) is started afresh: every task then checks its inputs
    again, which is safe.
    """

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        try:
            super().__init__(name, codec, module_name=module_name)
        except DatabaseException:
            _log.warning("warning: ignoring the damaged task database %s", name)
            self.name, self.codec = name, codec
            self._db: dict[str, Any] = {}

    def dump(self) -> None:
        path = Path(self.name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.codec.encode(self._db), encoding="utf-8")
        tmp.replace(path)


class _SavingDependency(Dependency):  # type: ignore[misc]
    """Saves the DB after every successful task, so a killed build keeps what it finished."""

    def save_success(self, task: Task, result_hash: str | None = None) -> None:
        super().save_success(task, result_hash)
        self.backend.dump()


def _dependency_db(db_path: Path) -> Dependency:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return _SavingDependency(_AtomicJsonDB, str(db_path), checker_cls=MD5Checker)


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
    doit_tasks = [to_doit_task(t) for t in tasks]
    control = TaskControl(doit_tasks)
    control.process(list(selected))
    result = RunResult()
    reporter = _Reporter(result, progress)
    dep_manager = _dependency_db(db_path)
    args: list[Any] = [dep_manager, reporter, keep_going, always, Stream(0)]
    runner = MThreadRunner(*args, jobs) if jobs > 1 else Runner(*args)
    # doit swaps sys.stdout/stderr around each action, from worker threads with -j N: put the
    # real streams back whatever happened, or later messages could vanish into a capture buffer.
    # Python 3.11's sysconfig fills its cache without a lock: fill it before threads start.
    sysconfig.get_config_vars()
    stdout, stderr = sys.stdout, sys.stderr
    try:
        result.code = runner.run_all(control.task_dispatcher())
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return result


@dataclass(frozen=True)
class TaskState:
    """Whether a task would run, and why."""

    name: str
    status: str  # "up-to-date", "run" or "error"
    reasons: dict[str, Any]


def task_states(tasks: Sequence[TaskDict], db_path: Path) -> list[TaskState]:
    """The state of every task without running anything (doit's own up-to-date check)."""
    doit_tasks = [to_doit_task(t) for t in tasks]
    control = TaskControl(doit_tasks)
    control.process(None)
    # doit writes its DB back on close: work on a copy, never touching a running build's DB.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tasks.db"
        if db_path.exists():
            shutil.copyfile(db_path, copy)
        dep_manager = _dependency_db(copy)
        states = []
        try:
            for task in doit_tasks:
                status = dep_manager.get_status(task, control.tasks, get_log=True)
                reasons = {k: v for k, v in status.reasons.items() if v}
                states.append(TaskState(task.name, status.status, reasons))
        finally:
            dep_manager.close()
    return states


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


def _wait_for_lock(handle: IO[str]) -> None:
    while not _try_lock(handle):
        time.sleep(0.2)


@contextlib.contextmanager
def build_dir_lock(lock_path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on a build dir; a second build waits, or fails when `wait` is off.

    The lock is released when the file is closed, including when the process dies.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
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
            yield
        finally:
            handle.seek(0)
            handle.truncate()
