"""End to end: a layer name that names nothing is one line (or one JSON document) from every
command that takes layer names, naming the spec or folder, the name, the closest name and the
layers that exist; nothing is written before the error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow

LAYERS = "layers: cpython-3.11, frame, frame2, a, b"


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _json_error(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 1, result
    document = json.loads(result.stdout)
    assert set(document) == {"error"}
    error = document["error"]
    assert isinstance(error, dict)
    assert error["message"] in result.stderr
    return error


def _state(project: StackProject) -> list[str]:
    return sorted(str(p.relative_to(project.root)) for p in project.root.rglob("*"))


def test_unknown_names_from_the_spec_commands(basic_stack: StackProject) -> None:
    project = basic_stack
    spec = str(project.spec)
    src = project.source_options()
    before = _state(project)
    for args in (
        ["build", spec, *src, "--lock-if-needed", "--include", "frme2"],
        ["lock", spec, *src, "--include", "frme2"],
        ["show", spec, "--include", "frme2"],
        ["graph", spec, "--include", "frme2"],
        ["status", spec, "--include", "frme2"],
        ["publish", spec, "--include", "frme2"],
        ["local-export", spec, "--include", "frme2"],
        ["lock", spec, *src, "--reset-lock", "frme2"],
        ["lock", spec, *src, "--reset-lock", "frme2", "--show-only"],
        ["build", spec, *src, "--lock-if-needed", "--reset-lock", "frme2"],
    ):
        line = _one_line(project.run(*args, check=False), spec, "'frme2'", "'frame2'", LAYERS)
        option = "--reset-lock" if "--reset-lock" in args else "--include"
        assert f"{option} 'frme2' matches no layer (did you mean 'frame2'?)" in line, line
    assert _state(project) == before  # no build dir, no tasks.db, no lock files

    # A pattern matching nothing, two names at once, names that are close to nothing.
    _one_line(project.run("build", spec, *src, "--include", "zz*", check=False), "'zz*'", LAYERS)
    line = _one_line(
        project.run("status", spec, "--include", "nosuch", "--include", "B", check=False)
    )
    assert "'nosuch', 'B' match no layer ('B': did you mean 'b'?)" in line, line
    # --allow-missing: the same text as a warning, and the command goes on.
    shown = project.run("show", spec, "--include", "nosuch", "--include", "a", "--allow-missing")
    assert "warning: " in shown.stderr and "'nosuch' matches no layer" in shown.stderr
    assert _state(project) == before

    # --json: the error is the one JSON document on stdout.
    error = _json_error(
        project.run("build", spec, *src, "--include", "frme2", "--json", check=False)
    )
    assert error["type"] == "SelectionError"
    assert error["unmatched"] == ["frme2"] and error["suggestions"] == {"frme2": "frame2"}
    assert error["source"] == spec and error["layers"] == [
        "cpython-3.11",
        "frame",
        "frame2",
        "a",
        "b",
    ]
    for args in (["status", spec, "--json"], ["show", spec, "--json"], ["lock", spec, "--json"]):
        assert (
            _json_error(project.run(*args, "--include", "x", check=False))["option"] == "--include"
        )
    report = project.run("lock", spec, *src, "--report", "-", "--reset-lock", "x", check=False)
    assert _json_error(report)["option"] == "--reset-lock"
    assert _state(project) == before


def test_unknown_names_in_published_and_deployed_folders(
    basic_stack: StackProject, tmp_path: Path
) -> None:
    project = basic_stack
    project.build()
    out = tmp_path / "out"
    publish = project.run("publish", str(project.spec), "--output-dir", str(out), "--include", "bb",
                          check=False)  # fmt: skip
    _one_line(publish, str(project.spec), "'bb'", "did you mean 'b'?")
    assert not out.exists()
    project.run("publish", str(project.spec), "--output-dir", str(out))

    target = tmp_path / "deployed"
    manifest = out / "__venvstacks__" / "venvstacks.json"
    deploy = project.run("deploy", str(out), str(target), "--include", "app-bb", check=False)
    line = _one_line(deploy, str(manifest), "--include 'app-bb'", "did you mean 'app-b'?")
    assert "published layers: cpython-3.11, frame, frame2, a, b" in line, line
    assert not target.exists()
    error = _json_error(
        project.run("deploy", str(out), str(target), "--include", "zz", "--json", check=False)
    )
    assert error["source"] == str(manifest) and error["unmatched"] == ["zz"]
    assert not target.exists()

    project.run("deploy", str(out), str(target))
    record = target / ".venvstacks-deploy" / "deployment.json"
    line = _one_line(
        project.run("run", str(target), "aa", check=False),
        str(record), "APP 'aa' matches no deployed application", "did you mean 'a'?",
        "deployed applications: a, b",
    )  # fmt: skip
    line = _one_line(project.run("run", str(target), "frame", check=False), "'frame'")
    assert "'frame' is deployed as a framework, not an application" in line, line
