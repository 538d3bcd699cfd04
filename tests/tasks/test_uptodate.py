"""The no-op check without doit: it agrees with doit's own `get_status`, and a no-op build through
the installed CLI loads neither doit nor the libraries only changes need."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doit.tools import config_changed
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack

from venvstacks.tasks.engine import TaskDict, run_tasks, task_states
from venvstacks.tasks.taskdb import load_task_db
from venvstacks.tasks.uptodate import ConfigChanged, all_up_to_date


def _copy(src: Path, dst: Path) -> None:
    dst.write_text(src.read_text().upper())


def _chain(tmp_path: Path, *, config: object = None) -> list[TaskDict]:
    src, mid, out = (tmp_path / n for n in ("in.txt", "mid.txt", "out.txt"))
    if not src.exists():
        src.write_text("hello")
    one: TaskDict = {
        "basename": "copy",
        "name": "one",
        "actions": [(_copy, [src, mid])],
        "file_dep": [str(src)],
        "targets": [str(mid)],
    }
    if config is not None:
        one["uptodate"] = [config]
    two: TaskDict = {
        "basename": "copy",
        "name": "two",
        "actions": [(_copy, [mid, out])],
        "file_dep": [str(mid)],
        "targets": [str(out)],
    }
    return [one, two]


def _agrees_with_doit(tasks: list[TaskDict], db: Path) -> bool | None:
    """Our answer, checked against doit's: up to date exactly when doit says every task is."""
    ours = all_up_to_date(tasks, ["copy:two"], load_task_db(db))
    doit_says = all(state.status == "up-to-date" for state in task_states(tasks, db))
    assert (ours is not None) == doit_says
    return ours is not None


def test_fresh_run_then_no_op(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    tasks = _chain(tmp_path)
    assert _agrees_with_doit(tasks, db) is False
    run_tasks(tasks, ["copy:two"], db)
    assert _agrees_with_doit(tasks, db) is True
    assert all_up_to_date(tasks, ["copy:two"], load_task_db(db)) == ["copy:one", "copy:two"]


def test_same_bytes_new_mtime_is_up_to_date_and_new_bytes_are_not(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    tasks = _chain(tmp_path)
    run_tasks(tasks, ["copy:two"], db)
    src = tmp_path / "in.txt"
    time.sleep(0.01)
    src.write_text("hello")  # same bytes, new mtime: doit compares the MD5
    assert _agrees_with_doit(tasks, db) is True
    stat = src.stat()
    src.write_text("HELLO")  # same size, new content, another mtime: the MD5 tells
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert _agrees_with_doit(tasks, db) is False


def test_missing_target_or_input_is_not_up_to_date(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    tasks = _chain(tmp_path)
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "out.txt").unlink()
    assert _agrees_with_doit(tasks, db) is False
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "in.txt").unlink()
    assert all_up_to_date(tasks, ["copy:two"], load_task_db(db)) is None


@pytest.mark.parametrize("kind", ["ours", "doit's"])
def test_config_changed_is_compatible_with_doits(tmp_path: Path, kind: str) -> None:
    """A DB written with doit's `config_changed` is read by `ConfigChanged`, and back."""
    db = tmp_path / "tasks.db"
    first = config_changed("v1") if kind == "doit's" else ConfigChanged("v1")
    run_tasks(_chain(tmp_path, config=first), ["copy:two"], db)
    for check in (ConfigChanged("v1"), config_changed("v1")):
        assert _agrees_with_doit(_chain(tmp_path, config=check), db) is True
    for check in (ConfigChanged("v2"), config_changed("v2")):
        assert _agrees_with_doit(_chain(tmp_path, config=check), db) is False


def test_uptodate_callables_get_doits_magic_arguments(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    seen: list[object] = []

    def check(task: object, values: dict[str, object], extra: str) -> bool:
        seen.append((getattr(task, "name", None), dict(values), extra))
        return True

    tasks = _chain(tmp_path, config=(check, ["x"]))
    run_tasks(tasks, ["copy:two"], db)
    seen.clear()
    assert all_up_to_date(tasks, ["copy:two"], load_task_db(db)) is not None
    assert seen == [("copy:one", {}, "x")]


def test_problems_of_the_task_list_are_left_to_doit(tmp_path: Path) -> None:
    tasks = _chain(tmp_path)
    assert all_up_to_date(tasks, ["copy:none"], {}) is None
    tasks[0]["task_dep"] = ["copy:two"]  # a cycle
    assert all_up_to_date(tasks, ["copy:two"], {}) is None


_NOT_FOR_A_NO_OP = ("doit", "tomlkit", "pathspec", "urllib.request", "ssl", "rich")


def test_a_no_op_build_loads_neither_doit_nor_what_only_changes_need(
    stack_project: StackProject, runtime_versions: dict[str, str]
) -> None:
    write_basic_stack(stack_project, runtime_versions)
    stack_project.build("--publish")
    env = {**os.environ, **stack_project.env}
    env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
    argv = [sys.executable, "-X", "importtime", *VENVSTACKS[1:], "build", str(stack_project.spec)]
    result = subprocess.run(
        [*argv, "--publish", *stack_project.source_options()],
        cwd=stack_project.root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0 task(s) ran" in result.stdout
    loaded = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    heavy = sorted(
        m for m in loaded if m.split(".")[0] in _NOT_FOR_A_NO_OP or m in _NOT_FOR_A_NO_OP
    )
    assert not heavy, f"a no-op build imported {heavy}"
