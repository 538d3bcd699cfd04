"""The task vocabulary shared by the engine's parts: task dicts, run results, the running task.

Nothing here imports doit: a no-op build decides that every task is up to date without it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

__all__ = [
    "ProgressCallback",
    "RunResult",
    "TaskDict",
    "TaskState",
    "current_task",
    "doit_problem",
    "full_name",
    "set_current_task",
]


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


@dataclass
class RunResult:
    """What a run did: tasks executed, tasks skipped as up to date, failures with their reasons."""

    code: int = 0
    executed: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # what executed tasks returned


@dataclass(frozen=True)
class TaskState:
    """Whether a task would run, and why."""

    name: str
    status: str  # "up-to-date", "run" or "error"
    reasons: dict[str, Any]


ProgressCallback = Callable[[str, str, float | None], None]
"""Called with (event, task name, seconds) for events 'start', 'done', 'skip', 'fail'."""


_RUNNING = threading.local()


def current_task() -> str | None:
    """The task the calling thread is running (its actions), or None outside any task."""
    name = getattr(_RUNNING, "name", None)
    return name if isinstance(name, str) else None


def set_current_task(name: str | None) -> None:
    """The engine's note of the task the calling thread now works for (None: no task)."""
    _RUNNING.name = name


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
