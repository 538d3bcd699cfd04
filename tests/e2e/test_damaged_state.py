"""Damaged state is detected, never reported as up to date, and the next build repairs it.

Environments in `_build/` are damaged by hand (files deleted, edited, added, chmod-ed, the
runtime's interpreter truncated through its hard link), and the task database is replaced by
garbage: `status` must say what is wrong, `build` must repair it, and the apps must run again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow

SITE = "lib/python3.11/site-packages"


def _states(stack: StackProject) -> dict[str, tuple[str, list[str]]]:
    data = json.loads(stack.run("status", str(stack.spec), "--json").stdout)
    return {item["task"]: (item["state"], item["why"]) for item in data}


def _check_apps(stack: StackProject) -> None:
    assert len(stack.run_app("app-a", "app_a").splitlines()) == 6
    assert stack.run_app("app-b", "launch_b").split()[0] == "app-b"


def _stale(states: dict[str, tuple[str, list[str]]]) -> dict[str, list[str]]:
    return {task: why for task, (state, why) in states.items() if state == "stale"}


def test_damaged_environments_are_reported_and_rebuilt(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    build = stack.build_dir
    (build / "app-a" / "bin" / "python").unlink()
    frame_init = build / "framework-frame" / SITE / "vs_frame" / "__init__.py"
    frame_init.write_text(frame_init.read_text() + "raise SystemExit('damaged')\n")
    (build / "framework-frame2" / SITE / "zz_damage.pth").write_text("import sys\n")
    (build / "app-b" / SITE / "sitecustomize.py").write_text("")

    stale = _stale(_states(stack))
    assert stale == {
        "install:app-a": ["environment changed: bin/python missing"],
        "install:framework-frame": [
            f"environment changed: {SITE}/vs_frame/__init__.py modified"
        ],
        "install:framework-frame2": [f"environment changed: {SITE}/zz_damage.pth added"],
        "install:app-b": [f"environment changed: {SITE}/sitecustomize.py modified"],
    }

    repaired = stack.ran_tasks(stack.build())
    assert sorted(repaired) == sorted(
        f"{op}:{env}"
        for op in ("install", "link")
        for env in ("app-a", "framework-frame", "framework-frame2", "app-b")
    )
    _check_apps(stack)
    assert not (build / "framework-frame2" / SITE / "zz_damage.pth").exists()
    assert stack.ran_tasks(stack.build()) == []
    assert _stale(_states(stack)) == {}


def test_damaged_runtime_interpreter_is_unpacked_again(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    # The runtime layer shares its files with the unpacked interpreter (hard links): damage
    # through one is damage to both, and both must be repaired.
    python = stack.build_dir / "cpython-3.11" / "bin" / "python3.11"
    python.chmod(0o644)
    stale = _stale(_states(stack))
    assert stale == {
        "runtime:cpython-3.11": ["unpacked interpreter changed: bin/python3.11 mode changed"],
        "install:cpython-3.11": ["environment changed: bin/python3.11 mode changed"],
    }
    stack.build()
    _check_apps(stack)

    with open(python, "r+b") as handle:  # truncated in place, as a full disk or bad copy would
        handle.truncate(100)
    with pytest.raises(subprocess.CalledProcessError):
        stack.run_app("app-a", "app_a")
    ran = stack.ran_tasks(stack.build())
    assert {"runtime:cpython-3.11", "install:cpython-3.11", "link:cpython-3.11"} <= set(ran)
    assert not any(name.startswith("lock:") for name in ran)
    _check_apps(stack)
    assert stack.ran_tasks(stack.build()) == []


def test_running_the_apps_does_not_make_them_stale(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for layer, module in (("app-a", "app_a"), ("app-b", "launch_b")):
        subprocess.run(
            [str(stack.python(layer)), "-m", module], check=True, env=env, capture_output=True
        )
    assert any(stack.build_dir.rglob("__pycache__"))
    assert stack.ran_tasks(stack.build()) == []


@pytest.mark.parametrize(
    "content",
    [b"[1, 2]", b'{"link:app-a": 42}', b'{"install:app-a": {"deps:": 7}}', b'{"lock:a', b"\xff\x00" * 64],
    ids=["list", "number-entry", "bad-deps", "truncated", "binary"],
)
def test_damaged_task_database_is_started_afresh(
    basic_stack: StackProject, content: bytes
) -> None:
    stack = basic_stack
    stack.build()
    db = stack.build_dir / ".venvstacks" / "tasks.db"
    db.write_bytes(content)

    status = stack.run("status", str(stack.spec))
    assert status.returncode == 0
    warnings = [line for line in status.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(db) in warnings[0] and "starting afresh" in warnings[0]
    assert "Traceback" not in status.stderr

    rebuilt = stack.build()
    assert "Traceback" not in rebuilt.stderr
    assert sum("starting afresh" in line for line in rebuilt.stderr.splitlines()) == 1
    _check_apps(stack)
    assert isinstance(json.loads(db.read_text()), dict)
    assert stack.ran_tasks(stack.build()) == []
    assert {state for state, _ in _states(stack).values()} == {"up-to-date"}


def test_damaged_task_database_under_plain_doit(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    stack.run("dodo", str(stack.spec), *stack.source_options())
    db = stack.build_dir / ".venvstacks" / "tasks.db"
    db.write_bytes(b'{"link:app-a": 42}')
    doit = Path(sys.executable).parent / "doit"
    result = subprocess.run(
        [str(doit)], cwd=stack.root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting afresh" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    _check_apps(stack)
    assert stack.ran_tasks(stack.build()) == []
