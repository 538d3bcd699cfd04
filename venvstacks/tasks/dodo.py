"""Support for generated dodo files: a stack's tasks as doit task creators, and the template.

A generated dodo file calls `stack_namespace`, which returns `task_<operation>` creators (one
sub-task per layer, so names are `lock:app-x` as in `venvstacks build`) and a `DOIT_CONFIG` that
points doit at the stack's own dependency file, JSON backend and content-hash checker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from venvstacks import __version__
from venvstacks.envs import build as envbuild
from venvstacks.errors import StackError
from venvstacks.lock import resolve as locking
from venvstacks.plan.layers import plan_stack
from venvstacks.plan.layout import BuildLayout
from venvstacks.runtimes.request import archive_dirs_from
from venvstacks.spec.indexes import parse_timestamp
from venvstacks.spec.stack import load_stack_spec
from venvstacks.tasks.engine import TaskDict, build_dir_lock, repair_task_db
from venvstacks.tasks.stack import OPERATIONS, StackTasks

__all__ = ["render_dodo", "stack_namespace"]

TEMPLATE_NAME = "dodo.py"


def _creator(
    operation: str, tasks: list[TaskDict], lock_file: str | None
) -> Callable[[], Iterator[dict[str, Any]]]:
    chosen = [t for t in tasks if t["basename"] == operation]
    first = [(take_build_dir_lock, [lock_file])] if lock_file else []

    def creator() -> Iterator[dict[str, Any]]:
        for task in chosen:
            entry: dict[str, Any] = {k: v for k, v in task.items() if k != "basename"}
            entry["actions"] = [*first, *task.get("actions", [])]
            yield entry

    creator.__name__ = f"task_{operation}"
    creator.__doc__ = f"{operation} tasks, one per layer"
    return creator


def stack_namespace(
    *,
    spec_path: Path,
    build_dir: str | None = None,
    runtime_archives: Sequence[str] = (),
    runtime_fallback: str = "none",
    local_wheels: Sequence[str] = (),
    use_index: bool = True,
    base_dir: Path | None = None,
    hold_lock: bool = True,
) -> dict[str, Any]:
    """doit's view of a stack: `task_*` creators and `DOIT_CONFIG`."""
    base = base_dir or Path.cwd()
    spec = load_stack_spec(spec_path)
    plan = plan_stack(spec)
    layout = BuildLayout.for_spec(
        spec.path, build_dir if build_dir is not None else spec.settings.build_dir
    )
    # The same sources as `venvstacks build`: archive folders from the generated file, then
    # $VENVSTACKS_RUNTIME_ARCHIVES, then [tool.venvstacks]; exclude-newer from $UV_EXCLUDE_NEWER
    # or the spec (it also clamps the recorded lock time, so both tools write the same locks).
    archive_dirs = archive_dirs_from(
        [base / p for p in runtime_archives], os.environ, spec.settings.runtime_archives
    )
    stack = StackTasks(
        plan,
        layout,
        lock_options=locking.LockOptions(
            use_index=use_index,
            local_wheels=tuple(base / p for p in local_wheels),
            exclude_newer=_exclude_newer(spec.uv.exclude_newer),
        ),
        runtime_options=envbuild.RuntimeOptions(
            archive_dirs=archive_dirs,
            fallback=runtime_fallback,
            base_url=os.environ.get("VENVSTACKS_PBS_BASE_URL"),
        ),
    )
    tasks = stack.all_tasks()
    # doit opens the database with its own JSON backend, which fails on a damaged one: replace
    # a damaged database by an empty one first, as `venvstacks build` starts it afresh.
    repair_task_db(layout.task_db)
    namespace: dict[str, Any] = {
        f"task_{op}": _creator(op, tasks, str(layout.lock_file) if hold_lock else None)
        for op in OPERATIONS
        if any(t["basename"] == op for t in tasks)
    }
    namespace["DOIT_CONFIG"] = {
        "dep_file": str(layout.task_db),
        "backend": "json",
        "check_file_uptodate": "md5",
        "default_tasks": sorted({f"link:{t['name']}" for t in tasks if t["basename"] == "link"}),
        "verbosity": 1,
        # Worker threads, not processes: the work is in subprocesses anyway, and separate
        # worker processes would each wait for the build-dir lock that another one holds.
        "par_type": "thread",
    }
    return namespace


_HELD_LOCKS: list[AbstractContextManager[None]] = []
_HOLDING = threading.Lock()


def take_build_dir_lock(lock_file: str) -> None:
    """First action of every task in a generated dodo file: hold the build dir, as `build` does.

    doit has no hook around a whole run, so the first task that runs takes the lock and the
    process keeps it until it exits; `doit list` and `doit info` run no action and take nothing.
    """
    with _HOLDING:
        if not _HELD_LOCKS:
            lock = build_dir_lock(Path(lock_file))
            lock.__enter__()
            _HELD_LOCKS.append(lock)


def _exclude_newer(from_spec: datetime | None) -> datetime | None:
    text = os.environ.get("UV_EXCLUDE_NEWER")
    if not text:
        return from_spec
    problems: list[str] = []
    value = parse_timestamp(text, "UV_EXCLUDE_NEWER", problems)
    if problems:
        raise StackError(problems[0])
    return value


def _template_text() -> str:
    packaged = resources.files("venvstacks").joinpath("dodo_templates", TEMPLATE_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # An editable install runs from the source tree, where the template sits beside the package.
    source = Path(__file__).resolve().parents[2] / "dodo_templates" / TEMPLATE_NAME
    return source.read_text(encoding="utf-8")


def render_dodo(
    *,
    spec_path: Path,
    dodo_dir: Path,
    build_dir: str | None,
    runtime_archives: Sequence[Path],
    runtime_fallback: str,
    local_wheels: Sequence[Path],
    use_index: bool,
) -> str:
    """The text of a dodo file in `dodo_dir` for the stack at `spec_path`."""

    def rel(path: Path) -> str:
        import os

        return os.path.relpath(path.absolute(), dodo_dir.absolute())

    return _template_text().format(
        spec_display=spec_path.name,
        version=__version__,
        spec_path=rel(spec_path),
        build_dir=build_dir,
        runtime_archives=[rel(p) for p in runtime_archives],
        runtime_fallback=runtime_fallback,
        local_wheels=[rel(p) for p in local_wheels],
        use_index=use_index,
    )
