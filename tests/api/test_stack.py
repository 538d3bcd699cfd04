"""`venvstacks.Stack` and the API types without building anything: loading, selection, preview,
status of a never-built stack, errors, report shapes and the lazy top-level exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import venvstacks
from venvstacks import (
    BuildOptions,
    ExportOptions,
    LockOptions,
    Outcome,
    ProgressEvent,
    PublishOptions,
    Stack,
)
from venvstacks.api._run import emitting, layer_outcomes
from venvstacks.api.results import BuildResult, LayerOutcome

SPEC = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.9"
requirements = []

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = []

[[frameworks]]
name = "data"
runtime = "cpython-3.11"
requirements = []

[[applications]]
name = "hello"
frameworks = ["web"]
launch_module = "hello.py"
requirements = []

[[applications]]
name = "report"
frameworks = ["data"]
launch_module = "hello.py"
requirements = []
"""
ALL = ("cpython-3.11", "framework-web", "framework-data", "app-hello", "app-report")


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    (tmp_path / "venvstacks.toml").write_text(SPEC)
    (tmp_path / "hello.py").write_text("print('hi')\n")
    return Stack.load(tmp_path / "venvstacks.toml")


def test_load_names_layers_by_build_name(stack: Stack, tmp_path: Path) -> None:
    assert set(stack.layer_names) == set(ALL)
    assert stack.layer_names[0] == "cpython-3.11"
    assert stack.build_dir == tmp_path / "_build"
    assert Stack.load(tmp_path / "venvstacks.toml", "elsewhere").build_dir == tmp_path / "elsewhere"


def test_select_follows_lower_and_derived_layers(stack: Stack) -> None:
    assert set(stack.select(["app-hello"])) == {"cpython-3.11", "framework-web", "app-hello"}
    assert set(stack.select(["framework-web"])) == {"cpython-3.11", "framework-web", "app-hello"}
    assert stack.select(["framework-web"], with_dependencies=False, with_derived=False) == (
        "framework-web",
    )
    with pytest.raises(venvstacks.GraphError, match="app-nope"):
        stack.select(["app-nope"])
    assert stack.select(["app-nope"], allow_missing=True) == ()


def test_preview_selects_as_each_operation_does(stack: Stack) -> None:
    def names(status: dict[str, list[dict[str, object]]]) -> set[object]:
        return {
            l["name"] for kind in ("runtimes", "frameworks", "applications") for l in status[kind]
        }

    assert names(stack.preview(LockOptions(include=("framework-web",)))) == {
        "cpython-3.11", "framework-web", "app-hello",
    }  # fmt: skip
    build = stack.preview(BuildOptions(include=("framework-web",)))
    assert names(build) == {"cpython-3.11", "framework-web"}
    assert build["frameworks"][0]["selected_operations"] == ["build"]
    published = stack.preview(PublishOptions(include=("framework-web",)))
    assert names(published) == {"framework-web"}
    assert published["frameworks"][0]["selected_operations"] == ["publish"]
    exported = stack.preview(ExportOptions(include=("framework-web",), with_derived=True))
    assert names(exported) == {"framework-web", "app-hello"}


def test_status_of_a_never_built_stack(stack: Stack) -> None:
    status = stack.status(["app-report"])
    assert not status.current
    assert {t.name.split(":")[1] for t in status.tasks} == {
        "cpython-3.11", "framework-data", "app-report",
    }  # fmt: skip
    assert "not locked yet" in {why for t in status.stale for why in t.why}
    assert json.loads(json.dumps(status.to_json()))[0].keys() == {"task", "state", "why", "needs"}


def test_build_refuses_unlocked_layers_before_running_anything(stack: Stack) -> None:
    with pytest.raises(venvstacks.StackError, match=r"layers without a valid lock: cpython-3\.11"):
        stack.build(BuildOptions(include=("app-hello",)))
    assert not stack.build_dir.exists()


def test_publish_refuses_unbuilt_layers(stack: Stack) -> None:
    with pytest.raises(venvstacks.StackError, match="not built or out of date"):
        stack.publish(PublishOptions(include=("app-hello",)))


def test_spec_errors_are_stack_errors(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text("[[runtimes]]\nname = 'x'\n")
    with pytest.raises(venvstacks.SpecError) as caught:
        Stack.load(tmp_path / "venvstacks.toml")
    assert isinstance(caught.value, venvstacks.StackError)
    assert "venvstacks.toml" in str(caught.value)


def test_progress_events_are_paired_even_when_the_run_fails() -> None:
    events: list[ProgressEvent] = []
    with pytest.raises(RuntimeError), emitting(events.append, ["lock:x"]) as emit:
        emit("start", "lock:x", None)
        emit("fail", "lock:x", 0.5)
        raise RuntimeError
    assert [e.kind for e in events] == ["begin", "start", "fail", "end"]
    assert events[0].tasks == ("lock:x",)


def test_layer_outcomes_and_report_shape(stack: Stack) -> None:
    ran = {
        "lock:framework-web": Outcome.UP_TO_DATE,
        "install:framework-web": Outcome.UP_TO_DATE,
        "link:framework-web": Outcome.RAN,
        "lock:app-hello": Outcome.RAN,
    }
    found = layer_outcomes(stack.layout, stack.plan.enabled, ran)
    assert list(found) == ["framework-web", "app-hello"]
    web, hello = found["framework-web"], found["app-hello"]
    assert (web.lock, web.env) == (Outcome.UP_TO_DATE, Outcome.RAN)
    assert (hello.lock, hello.env) == (Outcome.RAN, None)
    result = BuildResult("build", stack.build_dir, found, selected=("app-hello",))
    assert result.built == ("framework-web",)
    report = json.loads(json.dumps(result.to_json()))
    assert report["layers"]["framework-web"]["env"] == "ran"
    assert "env" not in report["layers"]["app-hello"]
    assert report["layers"]["app-hello"]["lock"] == "ran"
    assert LayerOutcome("x", "runtime").to_json() == {"kind": "runtime", "tasks": {}}


def test_outcome_values_are_the_report_strings() -> None:
    assert [str(o) for o in Outcome] == ["up-to-date", "ran", "cache-hit"]
    assert Outcome.RAN == "ran"


def test_top_level_exports_are_lazy_and_curated() -> None:
    code = (
        "import sys, venvstacks\n"
        "assert not [m for m in sys.modules if m.startswith(('venvstacks.api', 'doit', 'click'))]\n"
        "for name in venvstacks.__all__: getattr(venvstacks, name)\n"
        "assert 'click' not in sys.modules and 'rich' not in sys.modules\n"
        "assert venvstacks.Stack.__module__ == 'venvstacks.api.stack'\n"
        "try:\n    venvstacks.no_such_name\nexcept AttributeError: pass\nelse: raise SystemExit('bad')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(venvstacks.__all__) >= {"Stack", "StackError", "BuildOptions", "deploy_published"}
