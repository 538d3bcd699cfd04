"""End to end: locks naming local wheels (`--local-wheels`) survive the spec folder being copied
to another depth; a local wheel that cannot be found is one line naming the layer, the lock file
and the paths tried."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
from fixtures_stacks import StackProject, write_basic_stack

pytestmark = pytest.mark.slow


def _wheel_paths(lock: Path) -> list[str]:
    packages = tomllib.loads(lock.read_text())["packages"]
    return [w["path"] for p in packages for w in p.get("wheels", []) if "path" in w]


def _copy(project: StackProject, dest: Path) -> StackProject:
    shutil.copytree(project.root, dest, ignore=shutil.ignore_patterns("_build"))
    return StackProject(dest, project.runtime_archives, project.wheelhouse, project.env)


def test_locked_local_wheels_survive_copying_the_spec_folder(
    stack_project: StackProject, runtime_versions: dict[str, str], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"  # outside the spec folder, as /opt/wheels is for specs/pytorch
    shutil.copytree(stack_project.wheelhouse, wheels)
    project = StackProject(stack_project.root, stack_project.runtime_archives, wheels)
    write_basic_stack(project, runtime_versions)
    project.lock()
    lock = project.root / "requirements" / "framework-frame" / "pylock.framework-frame.toml"
    recorded = _wheel_paths(lock)
    assert recorded and all(not Path(p).is_absolute() for p in recorded), recorded
    # As 0.8.0: POSIX paths relative to the lock file's folder.
    for path in recorded:
        assert (lock.parent / path).resolve() == (wheels / Path(path).name).resolve(), path
    locks = project.lock_files()

    # The spec folder copied two levels deeper: the recorded paths now lead nowhere.
    deeper = _copy(project, tmp_path / "one" / "two" / "stack")
    assert not any(
        (deeper.root / "requirements" / "framework-frame" / p).exists() for p in recorded
    )
    built = deeper.run("build", str(deeper.spec), *deeper.source_options())  # no relock
    assert "Built 5 layer(s)" in built.stdout, built.stderr
    assert deeper.lock_files() == locks  # the locks are valid as they are: nothing rewritten
    assert deeper.run_app("app-a", "app_a").startswith("vs_app_a")
    status = deeper.run("status", str(deeper.spec), "--check")
    assert "up to date" in status.stdout

    # Without a --local-wheels folder holding the wheel: one line, naming what was tried.
    shallow = _copy(project, tmp_path / "x" / "stack")  # another depth: the paths lead nowhere
    result = shallow.run(
        "build", str(shallow.spec), "--runtime-archives", str(project.runtime_archives),
        "--no-index", "--no-layer-cache", check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    shallow_lock = shallow.root / "requirements" / "cpython-3.11" / "pylock.cpython-3_11.toml"
    assert "layer cpython-3.11" in line and str(shallow_lock) in line, line
    tried = os.path.normpath(shallow_lock.parent / _wheel_paths(shallow_lock)[0])
    assert f"tried {tried}" in line, line
    assert "--local-wheels" in line, line

    # A --local-wheels folder holding a different file of that name is not used.
    other = tmp_path / "other-wheels"
    other.mkdir()
    name = Path(_wheel_paths(shallow_lock)[0]).name
    shutil.copy(wheels / name, other / name)
    with (other / name).open("ab") as f:
        f.write(b"\0")
    result = shallow.run(
        "build", str(shallow.spec), "--runtime-archives", str(project.runtime_archives),
        "--no-index", "--no-layer-cache", "--local-wheels", str(other), check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{other / name} (sha256 differs from the lock)" in result.stderr, result.stderr
