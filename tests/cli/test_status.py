"""`venvstacks status` (and `graph --tasks --status`) on the real basic stack.

Before a build every task is stale; after it every task is up to date; an edit makes the tasks
that read the edited input stale, with the reason in words, and the tasks after them waiting.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow

RUNTIME, FRAME, FRAME2, APP_A, APP_B = (
    "cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b",
)
ENVS = (RUNTIME, FRAME, FRAME2, APP_A, APP_B)
ALL_TASKS = {
    f"runtime:{RUNTIME}",
    *(f"{op}:{env}" for env in ENVS for op in ("lock", "install", "link")),
}


def status(stack: StackProject, *args: str) -> dict[str, dict[str, Any]]:
    data = json.loads(stack.run("status", str(stack.spec), "--json", *args).stdout)
    return {item["task"]: item for item in data}


def states(stack: StackProject, *args: str) -> dict[str, str]:
    return {name: item["state"] for name, item in status(stack, *args).items()}


def graph_states(stack: StackProject) -> dict[str, tuple[str, list[str]]]:
    out = stack.run("graph", str(stack.spec), "--tasks", "--status", "--format", "json").stdout
    return {node["id"]: (node["state"], node["why"]) for node in json.loads(out)["nodes"]}


def assert_graph_agrees(stack: StackProject) -> None:
    from_status = {name: (item["state"], item["why"]) for name, item in status(stack).items()}
    assert graph_states(stack) == from_status


def test_status_before_any_build(basic_stack: StackProject) -> None:
    stack = basic_stack
    found = status(stack)
    assert set(found) == ALL_TASKS
    assert {item["state"] for item in found.values()} == {"stale"}
    assert found[f"runtime:{RUNTIME}"]["why"] == [
        f"not built yet: _build/.venvstacks/runtimes/{RUNTIME}.json"
    ]
    for env in ENVS:
        assert found[f"lock:{env}"]["why"] == ["not locked yet", "lock file missing"]
    assert found[f"install:{APP_A}"]["why"] == [
        f"not built yet: _build/.venvstacks/stamps/install.{APP_A}.json",
        f"missing inputs: requirements/{APP_A}/pylock.{APP_A}.toml",
    ]
    assert found[f"link:{APP_A}"]["needs"] == [
        f"install:{APP_A}",
        *(f"link:{env}" for env in (FRAME2, FRAME, RUNTIME)),
        f"runtime:{RUNTIME}",
    ]
    text = stack.run("status", str(stack.spec)).stdout
    assert text.splitlines()[-1] == "16 tasks: 16 stale, 0 waiting on them, 0 up to date"
    assert not stack.build_dir.exists(), "status runs and writes nothing"
    assert not (stack.root / "requirements").exists()
    assert_graph_agrees(stack)


def test_status_after_locking_only(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.lock()
    found = status(stack)
    for name, item in found.items():
        expected = "up-to-date" if name.startswith(("lock:", "runtime:")) else "stale"
        assert item["state"] == expected, name
    assert found[f"install:{APP_B}"]["why"] == [
        f"not built yet: _build/.venvstacks/stamps/install.{APP_B}.json"
    ]


def test_status_after_a_build_and_after_edits(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    found = status(stack)
    assert set(found) == ALL_TASKS
    assert {(item["state"], tuple(item["why"])) for item in found.values()} == {("up-to-date", ())}
    assert stack.run("status", str(stack.spec)).stdout.splitlines()[-1] == (
        "16 tasks: 0 stale, 0 waiting on them, 16 up to date"
    )
    assert_graph_agrees(stack)

    # status reads a copy of the task database: the database is unchanged afterwards.
    db = stack.build_dir / ".venvstacks" / "tasks.db"
    before = db.read_bytes()

    # An app requirement is edited: its lock is stale, its install and link wait for it.
    stack.edit_spec('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-util"]')
    found = status(stack)
    assert found[f"lock:{APP_A}"]["state"] == "stale"
    assert found[f"lock:{APP_A}"]["why"] == ["requirements changed"]
    assert found[f"install:{APP_A}"]["state"] == "waiting"
    assert found[f"install:{APP_A}"]["why"] == [f"after lock:{APP_A}"]
    assert found[f"link:{APP_A}"]["state"] == "waiting"
    changed = {name for name, item in found.items() if item["state"] != "up-to-date"}
    assert changed == {f"lock:{APP_A}", f"install:{APP_A}", f"link:{APP_A}"}
    text = stack.run("status", str(stack.spec)).stdout
    assert any(
        line.split()[:2] == [f"lock:{APP_A}", "stale"] and line.endswith("requirements changed")
        for line in text.splitlines()
    )
    assert_graph_agrees(stack)

    # A launch module is edited as well: the app's link task is stale, naming the file.
    (stack.root / "app_a.py").write_text((stack.root / "app_a.py").read_text() + "# edit\n")
    found = status(stack)
    assert found[f"link:{APP_A}"]["state"] == "stale"
    assert found[f"link:{APP_A}"]["why"] == ["changed: app_a.py"]

    # A versioned app's support module: its lock must bump the version.
    (stack.root / "helper_b.py").write_text("VALUE = 43\n")
    found = status(stack)
    assert found[f"lock:{APP_B}"]["why"] == ["launch/support modules or versioning changed"]
    assert found[f"link:{APP_B}"]["why"] == ["changed: helper_b.py"]
    assert found[f"install:{APP_B}"]["state"] == "waiting"

    # A framework's requirement: everything above it waits for its lock.
    stack.edit_spec('requirements = ["vs-frame"]', 'requirements = ["vs-frame", "vs-util"]')
    found = states(stack)
    assert found[f"lock:{FRAME}"] == "stale"
    assert found[f"lock:{FRAME2}"] == "waiting"
    assert found[f"install:{FRAME}"] == "waiting"
    assert found[f"link:{FRAME2}"] == "waiting"
    assert found[f"lock:{RUNTIME}"] == found[f"install:{RUNTIME}"] == "up-to-date"
    assert_graph_agrees(stack)

    assert db.read_bytes() == before

    # --include narrows the listing to a layer and what it needs.
    only_b = states(stack, "--include", APP_B)
    assert set(only_b) == {
        f"runtime:{RUNTIME}",
        *(f"{op}:{env}" for env in (RUNTIME, APP_B) for op in ("lock", "install", "link")),
    }

    # Build again: up to date everywhere.
    stack.build()
    assert set(states(stack).values()) == {"up-to-date"}


def test_status_when_an_environment_is_deleted(basic_stack: StackProject) -> None:
    stack = basic_stack
    stack.build()
    shutil.rmtree(stack.build_dir / APP_B)
    found = status(stack)
    assert found[f"install:{APP_B}"]["state"] == "stale"
    assert found[f"install:{APP_B}"]["why"] == [f"environment changed: {APP_B} missing"]
    assert found[f"link:{APP_B}"]["state"] == "stale"
    others = {n for n, item in found.items() if item["state"] != "up-to-date"}
    assert others == {f"install:{APP_B}", f"link:{APP_B}"}
    assert_graph_agrees(stack)
    assert stack.ran_tasks(stack.build()) == [f"install:{APP_B}", f"link:{APP_B}"]
    assert set(states(stack).values()) == {"up-to-date"}
