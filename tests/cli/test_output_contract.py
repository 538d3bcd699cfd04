"""The output contract, through the installed CLI: with `--json` (or `--report -`) standard output
is exactly one JSON document, for every command; reports say per layer what ran.

The stack has a layer that does not target this platform (`app-winonly`), so counts of built
layers are checked against what was really built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow

SPEC = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64", "win_amd64"]

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[applications]]
name = "hello"
frameworks = ["web"]
launch_module = "hello.py"
requirements = ["vs-app-b"]

[[applications]]
name = "winonly"
runtime = "cpython-3.11"
launch_module = "hello.py"
requirements = ["vs-app-b"]
platforms = ["win_amd64"]
"""
BUILT_HERE = ["cpython-3.11", "framework-web", "app-hello"]


def one_document(project: StackProject, *args: str, code: int = 0) -> Any:
    """Run the CLI; stdout must be one JSON document that `python -m json.tool` accepts too."""
    result = project.run(*args, check=False)
    assert result.returncode == code, f"{args}: exit {result.returncode}\n{result.stderr}"
    data = json.loads(result.stdout)  # one document, nothing before or after
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=result.stdout, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert tool.returncode == 0, f"{args}: {tool.stderr}"
    return data


@pytest.fixture
def stack(stack_project: StackProject, runtime_versions: Mapping[str, str]) -> StackProject:
    stack_project.write("venvstacks.toml", SPEC.format(py311=runtime_versions["3.11"]))
    stack_project.write("hello.py", "print('hello')\n")
    return stack_project


def test_every_command_keeps_stdout_to_one_json_document(stack: StackProject, tmp_path: Path) -> None:
    spec = str(stack.spec)
    src = stack.source_options()
    # Read-only views, before anything exists.
    assert one_document(stack, "show", spec, "--json")["spec_name"].endswith("venvstacks.toml")
    assert isinstance(one_document(stack, "status", spec, "--json"), list)
    stale = one_document(stack, "status", spec, "--json", "--check", code=1)
    assert {t["state"] for t in stale} == {"stale"}
    # lock: --json is the selection (nothing runs); --report - is the result.
    selection = one_document(stack, "lock", spec, *src, "--json")
    assert [l["name"] for l in selection["applications"]] == ["app-hello", "app-winonly"]
    assert not (stack.root / "requirements").exists()
    report = one_document(stack, "lock", spec, *src, "--report", "-")
    assert report["command"] == "lock"
    assert {name: layer["lock"] for name, layer in report["layers"].items()} == {
        "cpython-3.11": "ran", "framework-web": "ran", "app-hello": "ran", "app-winonly": "ran",
    }  # fmt: skip
    # build --json --show: the selection on stdout, then the build runs (its lines on stderr).
    shown = stack.run("build", spec, *src, "--json", "--show")
    assert json.loads(shown.stdout)["spec_name"]
    assert "Built 3 layer(s)" in shown.stderr
    report = one_document(stack, "build", spec, *src, "--report", "-")
    assert report["command"] == "build" and report["selected"][:3] == BUILT_HERE
    assert {n: (l["lock"], l["env"]) for n, l in report["layers"].items() if "env" in l} == {
        name: ("up-to-date", "up-to-date") for name in BUILT_HERE
    }
    assert "env" not in report["layers"].get("app-winonly", {})
    # --report FILE leaves stdout to the human lines.
    to_file = tmp_path / "build-report.json"
    human = stack.run("build", spec, *src, "--report", str(to_file))
    assert human.stdout.startswith("Built 3 layer(s)")  # not 4: app-winonly is not for here
    assert json.loads(to_file.read_text())["tasks"]["ran"] == []
    usage = stack.run("build", spec, *src, "--json", "--report", "-", check=False)
    assert usage.returncode == 2 and usage.stdout == ""
    # status is current now.
    assert {t["state"] for t in one_document(stack, "status", spec, "--json", "--check")} == {
        "up-to-date"
    }
    # publish and local-export.
    out = tmp_path / "artifacts"
    assert one_document(stack, "publish", spec, "--output-dir", str(out), "--json")["runtimes"]
    dry = one_document(stack, "publish", spec, "--output-dir", str(out), "--dry-run", "--report", "-")
    assert dry["dry_run"] and set(dry["layers"]) == set(BUILT_HERE)
    shown = stack.run("publish", spec, "--output-dir", str(out), "--dry-run", "--json", "--show")
    assert json.loads(shown.stdout)["spec_name"]
    report = one_document(stack, "publish", spec, "--output-dir", str(out), "--report", "-")
    assert {n: l["publish"] for n, l in report["layers"].items()} == dict.fromkeys(BUILT_HERE, "ran")
    assert Path(report["layers"]["app-hello"]["archive"]) == out / "app-hello.tar.xz"
    again = one_document(stack, "publish", spec, "--output-dir", str(out), "--report", "-")
    assert {l["publish"] for l in again["layers"].values()} == {"up-to-date"}
    plain = stack.run("publish", spec, "--output-dir", str(out))
    assert "{" not in plain.stdout  # no manifest dump on a plain publish
    export = tmp_path / "export"
    assert one_document(stack, "local-export", spec, "--output-dir", str(export), "--json")
    report = one_document(stack, "local-export", spec, "--output-dir", str(export), "--report", "-")
    assert Path(report["layers"]["app-hello"]["export"]) == export / "app-hello"
    # deploy, verify, runtime list: --json is the result.
    target = tmp_path / "deployed"
    deployed = one_document(stack, "deploy", str(out), str(target), "--json")
    assert deployed["layers"] == {name: {"deploy": "ran"} for name in BUILT_HERE}
    assert one_document(stack, "verify", str(target), "--json")["clean"] is True
    listed = one_document(
        stack, "runtime", "list", "--runtime-archives", str(stack.runtime_archives), "--json"
    )
    assert listed and all(item["path"].endswith(".tar.gz") for item in listed)


def test_status_check_lists_the_stale_tasks(stack: StackProject) -> None:
    result = stack.run("status", str(stack.spec), "--check", check=False)
    assert result.returncode == 1
    assert "stale: lock:app-hello: not locked yet" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
