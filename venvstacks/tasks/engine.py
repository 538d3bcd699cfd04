"""Running venvstacks tasks with doit: the only module besides `tasks.py` that knows doit.

Tasks arrive as typed dicts (`TaskDict`), become doit `Task` objects, and run through doit's own
`TaskControl` and runners (threads for `-j N`: the work is subprocess-bound). Dependency state lives
in a JSON file inside the build dir and uses content hashes (doit's MD5 checker), never timestamps.
A file lock on the build dir keeps two builds from sharing it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypedDict

from doit.control import TaskControl
from doit.dependency import Dependency, JsonDB, MD5Checker
from doit.exceptions import BaseFail, InvalidCommand, InvalidDodoFile, InvalidTask, TaskFailed
from doit.runner import MThreadRunner, Runner
from doit.task import Stream, Task

from venvstacks.errors import StackError
from venvstacks.proc import inherited_fd

__all__ = [
    "RunResult",
    "TaskDict",
    "TaskState",
    "build_dir_lock",
    "load_task_db",
    "repair_task_db",
    "run_tasks",
    "task_states",
]

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


_DOIT_PROBLEMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?P<task>\S+?)\. Task dependency '(?P<dep>[^']+)' does not exist\."),
        "task {task} needs {dep}, which is not a known task",
    ),
    (
        re.compile(r'Invalid parameter: "(?P<task>[^"]+)"'),
        "no task named {task}",
    ),
    (
        re.compile(r"Cyclic/recursive dependencies for task (?P<task>\S+): \[(?P<cycle>.*)\]"),
        "tasks depend on each other in a cycle: {cycle}",
    ),
    (
        re.compile(r"Task names must be unique\. (?P<task>\S+)"),
        "two tasks are named {task}",
    ),
    (
        re.compile(
            r"Two different tasks can't have a common target\.'(?P<target>.*)' is a "
            r"target for (?P<task>\S+) and (?P<other>\S+)\."
        ),
        "tasks {task} and {other} both write {target}",
    ),
)


def doit_problem(exc: BaseException) -> str:
    """One line, naming the task, for an error doit raised about the task list itself."""
    text = " ".join(str(exc).split())
    for pattern, template in _DOIT_PROBLEMS:
        found = pattern.search(text)
        if found:
            return template.format(**found.groupdict())
    return f"invalid task list: {text}"


def _doit_control(tasks: Sequence[TaskDict], selected: Sequence[str] | None) -> TaskControl:
    """doit's view of `tasks`; doit's complaints about them become one-line StackErrors."""
    try:
        control = TaskControl([to_doit_task(t) for t in tasks])
        control.process(None if selected is None else list(selected))
    except (InvalidTask, InvalidDodoFile, InvalidCommand) as exc:
        raise StackError(doit_problem(exc)) from None
    return control


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
        self._result.failures.setdefault("venvstacks", doit_problem(Exception(msg)))

    def teardown_task(self, task: Task) -> None:
        pass

    def complete_run(self) -> None:
        pass


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


_SPECIAL_KEYS: dict[str, Callable[[object], bool]] = {
    "_values_:": lambda v: isinstance(v, dict),
    "checker:": lambda v: isinstance(v, str),
    "ignore:": lambda v: isinstance(v, str),
    "result:": lambda v: isinstance(v, str | dict),
    "deps:": lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v),
}


def _is_file_state(value: object) -> bool:
    """doit's MD5 checker state of a file dependency: [mtime, size, md5]."""
    if not isinstance(value, list) or len(value) != 3:
        return False
    mtime, size, md5 = value
    return (
        isinstance(mtime, int | float)
        and not isinstance(mtime, bool)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and isinstance(md5, str)
    )


def db_shape_problem(data: object) -> str | None:
    """What is wrong with the shape of a decoded task database, or None when it is usable."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for task, entry in data.items():
        if not isinstance(entry, dict):
            return f"the entry of {task} is not an object"
        for key, value in entry.items():
            check = _SPECIAL_KEYS.get(key, _is_file_state)
            if not check(value):
                return f"the entry of {task} has an invalid {key!r}"
    return None


def load_task_db(path: Path, shown_as: Path | None = None) -> dict[str, Any]:
    """A task database's content; an unreadable or ill-shaped one is started afresh (warning).

    Starting afresh is always safe: every task then checks its inputs again.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if path.is_dir():
            raise StackError(
                f"the task database {shown_as or path} is a folder; remove it"
            ) from None
    else:
        try:
            data = json.loads(text)
        except ValueError:
            problem = "not valid JSON" if text.strip() else "empty"
        else:
            problem = db_shape_problem(data) or ""
            if not problem:
                assert isinstance(data, dict)
                return data
    _log.warning(
        "warning: the task database %s is damaged (%s); starting afresh: every task checks "
        "its inputs again",
        shown_as or path,
        problem,
    )
    return {}


def repair_task_db(path: Path) -> bool:
    """Replace a damaged task database by an empty one (for plain doit); True when it was."""
    if not path.exists() or db_shape_problem(_read_json(path)) is None:
        return False
    load_task_db(path)  # warns
    _write_atomically(path, "{}")
    return True


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    ) -> None:
        self.name, self.codec, self.shown_as = name, codec, shown_as
        self._db: dict[str, Any] = load_task_db(Path(name), self.shown_as)
        self._save_failed = False

    def dump(self) -> None:
        try:
            _write_atomically(Path(self.name), self.codec.encode(self._db))
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


def _dependency_db(db_path: Path, shown_as: Path | None = None) -> Dependency:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    backend = functools.partial(_AtomicJsonDB, shown_as=shown_as or db_path)
    return _SavingDependency(backend, str(db_path), checker_cls=MD5Checker)


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
    control = _doit_control(tasks, selected)
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
    except (InvalidTask, InvalidDodoFile, InvalidCommand) as exc:
        raise StackError(doit_problem(exc)) from None
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
