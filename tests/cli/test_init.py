"""`venvstacks init`: starter stacks that show, lock and build at once, and never overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from fixtures_stacks import StackProject

from venvstacks.cli.init import TEMPLATES, template_files, write_template
from venvstacks.errors import StackError
from venvstacks.plan.layers import plan_stack
from venvstacks.spec.stack import load_stack_spec

ROOT = Path(__file__).resolve().parents[2]
VENVSTACKS = [sys.executable, "-m", "venvstacks"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VENVSTACKS, *args], capture_output=True, text=True, cwd=cwd, check=False
    )


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_loads_and_plans(tmp_path: Path, template: str) -> None:
    written = write_template(template, tmp_path / "stack")
    assert tmp_path / "stack" / "venvstacks.toml" in written
    plan = plan_stack(load_stack_spec(tmp_path / "stack" / "venvstacks.toml"))
    assert plan.enabled
    assert (tmp_path / "stack" / ".gitignore").read_text().splitlines()[1:] == [
        "_build/",
        "_artifacts/",
    ]


def test_starter_has_a_runtime_one_framework_and_one_app() -> None:
    files = template_files("starter")
    assert set(files) == {PurePosixPath(p) for p in ("venvstacks.toml", "hello.py", ".gitignore")}
    text = files[PurePosixPath("venvstacks.toml")].decode()
    assert text.count("[[runtimes]]") == text.count("[[frameworks]]") == 1
    assert text.count("[[applications]]") == 1
    assert text.startswith("# ")  # commented for a newcomer


@pytest.mark.parametrize("template", ["scientific", "pytorch"])
def test_templates_follow_their_example_in_specs(tmp_path: Path, template: str) -> None:
    """The layers, their references and launch modules are those of specs/<template>."""
    write_template(template, tmp_path)

    def shape(spec_path: Path) -> list[tuple[object, ...]]:
        spec = load_stack_spec(spec_path)
        return [
            (layer.kind, layer.name, layer.runtime, tuple(layer.frameworks), layer.launch_module
             and layer.launch_module.name, layer.platforms)
            for layer in spec.layers
        ]  # fmt: skip

    assert shape(tmp_path / "venvstacks.toml") == shape(
        ROOT / "specs" / template / "venvstacks.toml"
    )


def test_init_refuses_to_overwrite_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text("# mine\n")
    result = _run("init", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {tmp_path / 'venvstacks.toml'} already exists; "
        "venvstacks init does not overwrite files\n"
    )
    assert (tmp_path / "venvstacks.toml").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["venvstacks.toml"]  # nothing else


def test_init_keeps_an_existing_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n")
    write_template("starter", tmp_path)
    assert (tmp_path / ".gitignore").read_text() == "*.log\n"


def test_unknown_template_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("init", "--template", "nope", str(tmp_path))
    assert result.returncode == 2
    with pytest.raises(StackError, match="no template 'nope'"):
        template_files("nope")


@pytest.mark.slow
def test_init_output_shows_locks_builds_and_runs(stack_project: StackProject) -> None:
    """The starter as written: `show` and `lock` accept it at once, and it builds and runs."""
    folder = stack_project.root / "new"
    result = stack_project.run("init", "new")
    assert result.stdout.splitlines() == [
        "wrote new/hello.py", "wrote new/venvstacks.toml", "wrote new/.gitignore"
    ]  # fmt: skip
    stack_project.root = folder
    shown = stack_project.run("show", "venvstacks.toml").stdout
    assert "app-hello" in shown and "framework-shared" in shown
    stack_project.lock()
    stack_project.build()
    out = stack_project.run_app("app-hello", "hello")
    assert out.splitlines()[1] == (
        "layers, searched in this order: app-hello, framework-shared, cpython-3.11"
    )
