"""A full disk while installing or linking: one line naming the layer and the path; then repair.

The build dir is a small tmpfs (mounting needs root: the test is skipped with the reason when
the mount fails). The stack is built with room to spare, then the tmpfs is shrunk to a few MB
more than it holds and a layer with a 48 MB wheel (install) or a 48 MB launch module (link) is
added. After the tmpfs is grown again, the next build repairs everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fixtures_stacks import StackProject
from fixtures_tmpfs import small_tmpfs
from fixtures_wheels import make_wheel

pytestmark = pytest.mark.slow

BIG_MB = 48
SPEC = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[applications]]
name = "small"
runtime = "cpython-3.11"
launch_module = "app_small.py"
requirements = ["vs-app-b"]
"""

BIG_WHEEL_APP = """
[[applications]]
name = "wheel"
runtime = "cpython-3.11"
launch_module = "app_wheel.py"
requirements = ["vs-big"]
"""

BIG_MODULE_APP = """
[[applications]]
name = "module"
runtime = "cpython-3.11"
launch_module = "launch_module"
requirements = ["vs-base"]
"""


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs_build_dir(stack_project: StackProject) -> Iterator[Path]:
    with small_tmpfs(stack_project.build_dir, "600m") as build_dir:
        yield build_dir


def _resize(build_dir: Path, megabytes: int) -> None:
    result = _mount(["-o", f"remount,size={megabytes}m", str(build_dir)])
    assert result.returncode == 0, result.stderr


def _used_mb(build_dir: Path) -> int:
    usage = shutil.disk_usage(build_dir)
    return (usage.total - usage.free) >> 20


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_out_of_space_names_the_layer_and_the_path_and_the_next_build_repairs(
    stack_project: StackProject,
    runtime_versions: Mapping[str, str],
    tmpfs_build_dir: Path,
    tmp_path: Path,
) -> None:
    stack = stack_project
    big_wheels = tmp_path / "big-wheels"
    make_wheel(big_wheels, "vs-big", "1.0", files={"vs_big/blob.bin": os.urandom(BIG_MB << 20)})
    wheels = ["--local-wheels", str(big_wheels)]
    stack.write("venvstacks.toml", SPEC.format(py311=runtime_versions["3.11"]))
    stack.write("app_small.py", "import vs_app_b\nprint('small', vs_app_b.__version__)\n")
    stack.write("app_wheel.py", "import vs_big\nprint('wheel', vs_big.__version__)\n")
    stack.write("launch_module/__init__.py", "")
    stack.write("launch_module/__main__.py", "print('module')\n")
    (stack.root / "launch_module" / "data.bin").write_bytes(os.urandom(BIG_MB << 20))
    stack.build(*wheels)
    assert stack.run_app("app-small", "app_small").split() == ["small", "1.0"]

    # Installing: uv runs out of space copying the wheel's 48 MB into the new environment.
    stack.spec.write_text(stack.spec.read_text() + BIG_WHEEL_APP)
    _resize(tmpfs_build_dir, _used_mb(tmpfs_build_dir) + 12)
    failed = stack.build(*wheels, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    error = _errors(failed)[-1]
    assert error.startswith("error: layer app-wheel: out of disk space installing"), error
    assert str(tmpfs_build_dir / ".app-wheel.new") in error, error
    # uv's own words come after the cause; only its first line is kept, which may not name errno.
    assert "out of disk space" in error, error
    assert not (tmpfs_build_dir / ".app-wheel.new").exists()
    assert stack.run_app("app-small", "app_small").split() == ["small", "1.0"]

    # Linking: the launch module's 48 MB do not fit.
    stack.spec.write_text(stack.spec.read_text().replace(BIG_WHEEL_APP, "") + BIG_MODULE_APP)
    _resize(tmpfs_build_dir, _used_mb(tmpfs_build_dir) + 12)
    failed = stack.build(*wheels, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    error = _errors(failed)[-1]
    assert error.startswith("error: layer app-module: out of disk space linking"), error
    assert str(tmpfs_build_dir / "app-module") in error, error

    # Space freed: the next build repairs both.
    stack.spec.write_text(stack.spec.read_text() + BIG_WHEEL_APP)
    _resize(tmpfs_build_dir, 600)
    stack.build(*wheels)
    assert stack.run_app("app-wheel", "app_wheel").split() == ["wheel", "1.0"]
    assert stack.run_app("app-module", "launch_module").split() == ["module"]
    assert stack.run_app("app-small", "app_small").split() == ["small", "1.0"]
    assert stack.ran_tasks(stack.build(*wheels)) == []
