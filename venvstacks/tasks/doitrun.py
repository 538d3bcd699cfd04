"""Running tasks with doit: task dicts become doit `Task`s, run by doit's own `TaskControl` and
runners (threads for `-j N`: the work is subprocess-bound), with the database in doit's JSON format
written atomically. The only module of `tasks/` that imports doit at run time.
"""

from __future__ import annotations

import functools
import logging
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doit.control import TaskControl
from doit.dependency import Dependency, JsonDB, MD5Checker
from doit.exceptions import BaseFail, InvalidCommand, InvalidDodoFile, InvalidTask, TaskFailed
from doit.runner import MThreadRunner, Runner
from doit.task import Stream, Task

from venvstacks.errors import StackError
from venvstacks.tasks import model
from venvstacks.tasks.model import (
    ProgressCallback,
    RunResult,
    TaskDict,
    TaskState,
    doit_problem,
    full_name,
)
from venvstacks.tasks.taskdb import load_task_db, write_atomically

__all__ = ["doit_task_states", "run_with_doit", "to_doit_task"]

_log = logging.getLogger(__name__)


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


def _doit_control(tasks: Sequence[TaskDict], selected: Sequence[str] | None) -> TaskControl:
    """doit's view of `tasks`; doit's complaints about them become one-line StackErrors."""
    try:
        control = TaskControl([to_doit_task(t) for t in tasks])
        control.process(None if selected is None else list(selected))
    except (InvalidTask, InvalidDodoFile, InvalidCommand) as exc:
        raise StackError(doit_problem(exc)) from None
    return control


class _Reporter:
    """A doit reporter that records results and forwards progress events.

    It also tells `model.current_task` which task a thread works for: doit calls `get_status`
    and (serial runs) everything else on the main thread, `execute_task` on the worker thread
    that then runs the task's actions.
    """

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
        model.set_current_task(task.name)

    def execute_task(self, task: Task) -> None:
        model.set_current_task(task.name)
        self._started[task.name] = time.monotonic()
        self._emit("start", task.name)

    def _elapsed(self, task: Task) -> float:
        seconds = time.monotonic() - self._started.get(task.name, time.monotonic())
        self._result.durations[task.name] = seconds
        return seconds

    def add_failure(self, task: Task, fail: BaseFail) -> None:
        model.set_current_task(None)
        message = (
            str(fail.get_msg()).strip() if isinstance(fail, TaskFailed) else _describe_error(fail)
        )
        self._result.failures[task.name] = message
        self._emit("fail", task.name, self._elapsed(task))

    def add_success(self, task: Task) -> None:
        model.set_current_task(None)
        self._result.executed.append(task.name)
        self._result.values[task.name] = dict(getattr(task, "values", None) or {})
        self._emit("done", task.name, self._elapsed(task))

    def skip_uptodate(self, task: Task) -> None:
        model.set_current_task(None)
        self._result.up_to_date.append(task.name)
        self._emit("skip", task.name)

    def skip_ignore(self, task: Task) -> None:
        model.set_current_task(None)

    def cleanup_error(self, exception: BaseException) -> None:
        _log.error("cleanup failed: %s", exception)

    def runtime_error(self, msg: str) -> None:
        self._result.failures.setdefault("venvstacks", doit_problem(Exception(msg)))

    def teardown_task(self, task: Task) -> None:
        pass

    def complete_run(self) -> None:
        model.set_current_task(None)


def _describe_error(fail: BaseFail) -> str:
    """A task error that is not a StackError (a venvstacks bug): one line; the traceback goes
    to the debug log (`-vv`)."""
    _log.debug("%s", str(fail.get_msg()).strip())
    exc = getattr(fail, "exception", None)
    if isinstance(exc, BaseException):
        cause = f"{type(exc).__name__}: {exc}"
    else:
        lines = [line for line in str(fail.get_msg()).strip().splitlines() if line.strip()]
        cause = lines[-1] if lines else type(fail).__name__
    return f"{cause} (an internal error: -vv shows where)"


class _AtomicJsonDB(JsonDB):  # type: ignore[misc]
    """doit's JSON backend, written to a temporary file and renamed into place.

    A build killed while the DB is written leaves the previous DB, never a truncated one; a DB
    that cannot be read or has the wrong shape (damaged by hand) is started afresh: every task
    then checks its inputs again, which is safe. A DB that cannot be saved (a full disk) is
    reported once and left as it was: the tasks it would have recorded run again next time.
    """

    def __init__(
        self,
        name: str,
        codec: Any,
        *,
        module_name: str | None = None,
        shown_as: Path | None = None,
        preloaded: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.codec, self.shown_as = name, codec, shown_as
        self._db: dict[str, Any] = (
            preloaded if preloaded is not None else load_task_db(Path(name), self.shown_as)
        )
        self._save_failed = False

    def dump(self) -> None:
        try:
            write_atomically(Path(self.name), self.codec.encode(self._db))
        except OSError as exc:
            if not self._save_failed:
                _log.warning(
                    "warning: cannot save the task database %s (%s): finished tasks will "
                    "run again next time",
                    self.shown_as or self.name,
                    exc.strerror or exc,
                )
            self._save_failed = True


class _SavingDependency(Dependency):  # type: ignore[misc]
    """Saves the DB after every successful task, so a killed build keeps what it finished."""

    def save_success(self, task: Task, result_hash: str | None = None) -> None:
        super().save_success(task, result_hash)
        self.backend.dump()


def _dependency_db(
    db_path: Path, shown_as: Path | None = None, preloaded: dict[str, Any] | None = None
) -> Dependency:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    backend = functools.partial(_AtomicJsonDB, shown_as=shown_as or db_path, preloaded=preloaded)
    return _SavingDependency(backend, str(db_path), checker_cls=MD5Checker)


def run_with_doit(
    tasks: Sequence[TaskDict],
    selected: Sequence[str],
    db_path: Path,
    db: dict[str, Any] | None,
    *,
    jobs: int,
    always: bool,
    keep_going: bool,
    progress: ProgressCallback | None,
) -> RunResult:
    """Run `selected` tasks (and what they need) that are not up to date, with doit."""
    control = _doit_control(tasks, selected)
    result = RunResult()
    reporter = _Reporter(result, progress)
    dep_manager = _dependency_db(db_path, preloaded=db)
    args: list[Any] = [dep_manager, reporter, keep_going, always, Stream(0)]
    runner = MThreadRunner(*args, jobs) if jobs > 1 else Runner(*args)
    # doit swaps sys.stdout/stderr around each action, from worker threads with -j N: put the
    # real streams back whatever happened, or later messages could vanish into a capture buffer.
    # Python 3.11's sysconfig fills its cache without a lock: fill it before threads start.
    sysconfig.get_config_vars()
    stdout, stderr = sys.stdout, sys.stderr
    try:
        result.code = runner.run_all(control.task_dispatcher())
    except (InvalidTask, InvalidDodoFile, InvalidCommand) as exc:
        raise StackError(doit_problem(exc)) from None
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        model.set_current_task(None)
    return result


def doit_task_states(tasks: Sequence[TaskDict], db_path: Path) -> list[TaskState]:
    """The state of every task without running anything (doit's own up-to-date check)."""
    control = _doit_control(tasks, None)
    doit_tasks = list(control.tasks.values())
    # doit writes its DB back on close: work on a copy, never touching a running build's DB.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tasks.db"
        if db_path.is_dir():
            raise StackError(f"the task database {db_path} is a folder; remove it")
        if db_path.exists():
            shutil.copyfile(db_path, copy)
        dep_manager = _dependency_db(copy, shown_as=db_path)
        states = []
        try:
            for task in doit_tasks:
                status = dep_manager.get_status(task, control.tasks, get_log=True)
                reasons = {k: v for k, v in status.reasons.items() if v}
                states.append(TaskState(task.name, status.status, reasons))
        finally:
            dep_manager.close()
    return states
