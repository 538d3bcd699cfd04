"""End to end: lock and build a real stack with real uv, then run its apps."""

from __future__ import annotations

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


def test_build_runs_every_app_from_its_layers(basic_stack: StackProject) -> None:
    basic_stack.build("-j", "2")
    out_a = basic_stack.run_app("app-a", "app_a")
    where = {line.split()[0]: line.split()[2] for line in out_a.splitlines()}
    build = basic_stack.build_dir
    assert where["vs_app_a"].startswith(str(build / "app-a" / "lib"))
    assert where["vs_frame2"].startswith(str(build / "framework-frame2" / "lib"))
    assert where["vs_frame"].startswith(str(build / "framework-frame" / "lib"))
    assert where["vs_base"].startswith(str(build / "cpython-3.11" / "lib"))
    out_b = basic_stack.run_app("app-b", "launch_b")
    assert out_b.split() == ["app-b", "1.0", where["vs_base"], "42"]


def test_sys_path_order_and_no_pip(basic_stack: StackProject) -> None:
    basic_stack.build()
    python = basic_stack.python("app-a")
    import subprocess

    code = "import sys, importlib.util; print('\\n'.join(sys.path)); print(importlib.util.find_spec('pip'))"
    lines = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.splitlines()
    assert lines[-1] == "None"
    site_dirs = [p for p in lines[:-1] if p.endswith("site-packages")]
    build = basic_stack.build_dir
    assert site_dirs == [
        str(build / env / "lib" / "python3.11" / "site-packages")
        for env in ("app-a", "framework-frame2", "framework-frame", "cpython-3.11")
    ]


def test_no_op_build_runs_no_task(basic_stack: StackProject) -> None:
    basic_stack.build()
    again = basic_stack.build()
    assert basic_stack.ran_tasks(again) == []
    assert "0 task(s) ran" in again.stdout


def test_locking_twice_changes_no_file(basic_stack: StackProject) -> None:
    basic_stack.lock()
    before = basic_stack.lock_files()
    basic_stack.lock("--reset-lock", "*")
    assert basic_stack.lock_files() == before
