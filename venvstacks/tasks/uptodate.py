"""Is every task of a run up to date? Answered without doit, by doit's own rules, so that a no-op
build neither imports nor sets up doit.

The rules are those of doit's `Dependency.get_status` with the MD5 checker: every `uptodate` check
true (callables get doit's magic `task` and `values` arguments), every target present, the same
checker and the same file dependencies as recorded, and every file dependency unchanged (same
mtime, or same size and MD5). Any doubt (an unknown task, a cycle, an `uptodate` kind doit would
run in a shell, a task marked ignored) answers "no": the caller then runs doit, which decides and
reports as it always does.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

from venvstacks.tasks.model import TaskDict, full_name

__all__ = ["ConfigChanged", "all_up_to_date"]

_CHECKER = "MD5Checker"


class ConfigChanged:
    """An `uptodate` check: true while `config` is what the task's last success recorded.

    The same protocol and database value (`_config_changed`) as doit's `config_changed` for a
    string, so that build dirs and generated dodo files agree.
    """

    def __init__(self, config: str) -> None:
        self.config = config

    def configure_task(self, task: Any) -> None:
        task.value_savers.append(lambda: {"_config_changed": self.config})

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        return values.get("_config_changed") == self.config

    def __repr__(self) -> str:
        return f"config_changed({self.config!r})"


class _TaskView:
    """What an `uptodate` callable may read of its task (doit passes its `Task`)."""

    def __init__(self, task: TaskDict, values: Mapping[str, Any]) -> None:
        self.name = full_name(task)
        self.file_dep = set(task.get("file_dep", []))
        self.targets = list(task.get("targets", []))
        self.values = dict(values)


_MAGIC: dict[Any, tuple[bool, bool]] = {}


def _magic_args(check: Any) -> tuple[bool, bool]:
    """Whether doit would pass `task` (as the first parameter) and `values` (as the second)."""
    if inspect.isfunction(check):
        key: Any = check
    elif inspect.ismethod(check):
        key = ("method", check.__func__)  # the same parameters whatever it is bound to
    elif inspect.isfunction(inspect.getattr_static(type(check), "__call__", None)):
        key = type(check)  # an instance of a Python class: one signature for all
    else:
        key = None
    if key is not None and key in _MAGIC:
        return _MAGIC[key]
    names = list(inspect.signature(check).parameters)
    found = (bool(names) and names[0] == "task", len(names) > 1 and names[1] == "values")
    if key is not None:
        _MAGIC[key] = found
    return found


def _check_true(check: Any, task: TaskDict, values: Mapping[str, Any]) -> bool | None:
    """One `uptodate` entry: True/False, None when it does not count; raises _Unsure."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(check, tuple):
        if not check or len(check) > 3:
            raise _Unsure
        func = check[0]
        args = list(check[1]) if len(check) > 1 else []
        kwargs = dict(check[2]) if len(check) > 2 else {}
    else:
        func = check
    if isinstance(func, str):
        raise _Unsure  # a shell command: doit's business
    if not callable(func):
        return None if func is None else bool(func)
    wants_task, wants_values = _magic_args(func)
    magic: list[Any] = []
    if wants_task:
        magic.append(_TaskView(task, values))
    if wants_values:
        magic.append(values)
    result = func(*magic, *args, **kwargs)
    return None if result is None else bool(result)


class _Unsure(Exception):
    pass


def _task_up_to_date(task: TaskDict, entry: Mapping[str, Any]) -> bool:
    values = entry.get("_values_:", {})
    results = [_check_true(check, task, values) for check in task.get("uptodate", [])]
    counted = [r for r in results if r is not None]
    if not all(counted):
        return False
    file_dep = task.get("file_dep", [])
    if not (file_dep or counted):
        return False  # doit: no dependencies, never up to date
    # os.path on str: a no-op build checks hundreds of files, Path objects cost more than stat.
    if not all(os.path.exists(target) for target in task.get("targets", [])):  # noqa: PTH110
        return False
    if entry.get("checker:") not in (None, _CHECKER) or "ignore:" in entry:
        raise _Unsure
    recorded = entry.get("deps:")
    if recorded and set(recorded) != set(file_dep):
        return False
    return all(_file_unchanged(dep, entry.get(dep)) for dep in file_dep)


def _file_unchanged(path: str, state: object) -> bool:
    if not isinstance(state, list) or len(state) != 3:
        return False
    try:
        stat = os.stat(path)  # noqa: PTH116
    except OSError:
        return False  # doit: a missing file dependency is an error; let doit report it
    mtime, size, md5 = state
    if stat.st_mtime == mtime:
        return True
    if stat.st_size != size:
        return False
    return bool(md5 == _md5(path))


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run_order(tasks: Sequence[TaskDict], selected: Sequence[str]) -> list[TaskDict] | None:
    """`selected` and what they need (task_dep, producers of file_dep), lower tasks first;
    None when the task list has a problem doit must report (unknown names, cycles, clashes)."""
    by_name: dict[str, TaskDict] = {}
    producers: dict[str, str] = {}
    for task in tasks:
        name = full_name(task)
        if name in by_name:
            return None
        by_name[name] = task
        for target in task.get("targets", []):
            if target in producers:
                return None
            producers[target] = name
    order: list[TaskDict] = []
    state: dict[str, str] = {}

    def visit(name: str) -> bool:
        if state.get(name) == "done":
            return True
        if state.get(name) == "visiting" or name not in by_name:
            return False
        state[name] = "visiting"
        task = by_name[name]
        needs = [*task.get("task_dep", [])]
        needs += [producers[f] for f in task.get("file_dep", []) if f in producers]
        if not all(visit(dep) for dep in needs if dep != name):
            return False
        state[name] = "done"
        order.append(task)
        return True

    return order if all(visit(name) for name in selected) else None


def all_up_to_date(
    tasks: Sequence[TaskDict], selected: Sequence[str], db: Mapping[str, Any]
) -> list[str] | None:
    """The names of the tasks a run of `selected` involves, in run order, when every one of them
    is up to date; None when any would run (or doit must decide)."""
    order = _run_order(tasks, selected)
    if order is None:
        return None
    try:
        for task in order:
            if not _task_up_to_date(task, db.get(full_name(task), {})):
                return None
    except _Unsure:
        return None
    return [full_name(task) for task in order]
