"""End to end: every command that names layers takes spec names (`frame2`) and build names.

`--include` (show, status, lock, build, publish, deploy), `--reset-lock`, and `run` accept both;
a spec naming a framework by its build name gets a one-line error with the spec name to use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


def _shown(project: StackProject, *args: str) -> list[str]:
    data = json.loads(project.run("show", str(project.spec), "--json", *args).stdout)
    return [l["name"] for cat in ("runtimes", "frameworks", "applications") for l in data[cat]]


def test_spec_and_build_names_on_the_command_line(
    basic_stack: StackProject, tmp_path: Path
) -> None:
    project = basic_stack
    assert _shown(project, "--include", "frame2") == _shown(
        project, "--include", "framework-frame2"
    )
    assert "framework-frame2" in _shown(project, "--include", "frame2")

    status = json.loads(project.run("status", str(project.spec), "--include", "a", "--json").stdout)
    assert {t["task"] for t in status} >= {"lock:app-a", "install:app-a"}
    assert not any(t["task"].endswith(":app-b") for t in status)

    project.build()
    relock = project.run("-v", "lock", str(project.spec), *project.source_options(),
                         "--include", "frame2", "--reset-lock", "frame2")  # fmt: skip
    assert "lock:framework-frame2" in project.ran_tasks(relock)
    missing = project.run("lock", str(project.spec), "--reset-lock", "nope", check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr

    out = tmp_path / "out"
    project.run("publish", str(project.spec), "--output-dir", str(out))
    target = tmp_path / "deployed"
    project.run("deploy", str(out), str(target), "--include", "b")
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "app-b@1", "cpython-3.11",
    ]  # fmt: skip
    for name in ("b", "app-b", "app-b@1"):
        ran = project.run("run", str(target), name)
        assert ran.stdout.startswith("app-b 1.0"), ran.stdout


def test_framework_referenced_by_build_name(basic_stack: StackProject) -> None:
    project = basic_stack
    project.edit_spec('frameworks = ["frame"]', 'frameworks = ["framework-frame"]')
    result = project.run("show", str(project.spec), check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(project.spec) in result.stderr
    assert "'frame'" in result.stderr and "framework-frame" in result.stderr
