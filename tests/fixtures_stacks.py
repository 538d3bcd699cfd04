"""Fixtures for end-to-end stack tests: a stack folder, and the installed CLI run against it.

`stack_project` gives a `StackProject`: a spec folder under tmp_path whose commands run the real
`venvstacks` CLI in a subprocess, with runtimes from `runtime_archive_dir` (packed from this
machine's Pythons) and packages from the local `wheelhouse` (no index), so the tests are hermetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VENVSTACKS = [sys.executable, "-m", "venvstacks"]

BASIC_STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[frameworks]]
name = "frame2"
frameworks = ["frame"]
requirements = ["vs-frame2", "vs-native"]

[[applications]]
name = "a"
frameworks = ["frame2"]
launch_module = "app_a.py"
requirements = ["vs-app-a"]

[[applications]]
name = "b"
runtime = "cpython-3.11"
launch_module = "launch_b"
support_modules = ["helper_b.py"]
requirements = ["vs-app-b"]
versioned = true
"""

APP_A = """\
import sys
import vs_app_a, vs_util, vs_frame, vs_frame2, vs_native, vs_base
for module in (vs_app_a, vs_util, vs_frame, vs_frame2, vs_native, vs_base):
    print(module.__name__, module.__version__, module.where())
"""

APP_B_MAIN = """\
import vs_app_b, vs_base, helper_b
print("app-b", vs_app_b.__version__, vs_base.where(), helper_b.VALUE)
"""


@dataclass
class StackProject:
    """A stack spec folder and the commands a user would run on it."""

    root: Path
    runtime_archives: Path
    wheelhouse: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> Path:
        return self.root / "venvstacks.toml"

    @property
    def build_dir(self) -> Path:
        return self.root / "_build"

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def edit_spec(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text, f"{old!r} not in spec"
        self.spec.write_text(text.replace(old, new, 1))

    def run(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `venvstacks ARGS...` in the stack folder (or `cwd`)."""
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
        result = subprocess.run(
            [*VENVSTACKS, *args],
            cwd=self.root if cwd is None else cwd,
            env=full_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"venvstacks {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def source_options(self) -> list[str]:
        return [
            "--runtime-archives", str(self.runtime_archives),
            "--local-wheels", str(self.wheelhouse),
            "--no-index",
        ]

    def lock(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("lock", str(self.spec), *self.source_options(), *args, check=check)

    def build(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(
            "-v", "build", str(self.spec), "--lock-if-needed", *self.source_options(), *args,
            check=check,
        )

    def ran_tasks(self, result: subprocess.CompletedProcess[str]) -> list[str]:
        """Tasks a `-v` run executed, from its progress lines."""
        return [
            line.split()[1]
            for line in result.stderr.splitlines()
            if line.startswith(("  ok  ", "  FAILED "))
        ]

    def python(self, env_name: str) -> Path:
        return self.build_dir / env_name / "bin" / "python"

    def run_app(self, env_name: str, module: str) -> str:
        result = subprocess.run(
            [str(self.python(env_name)), "-m", module],
            capture_output=True, text=True, check=True, cwd="/",
        )
        return result.stdout

    def lock_files(self) -> dict[str, bytes]:
        folder = self.root / "requirements"
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    def lock_meta(self, env_name: str) -> dict[str, object]:
        from venvstacks.plan.names import EnvName, lock_file_stem

        stem = lock_file_stem(EnvName(env_name))
        path = self.root / "requirements" / env_name / f"pylock.{stem}.meta.json"
        data = json.loads(path.read_text())
        assert isinstance(data, dict)
        return data


def write_basic_stack(project: StackProject, versions: Mapping[str, str]) -> None:
    project.write("venvstacks.toml", BASIC_STACK.format(py311=versions["3.11"]))
    project.write("app_a.py", APP_A)
    project.write("launch_b/__init__.py", "")
    project.write("launch_b/__main__.py", APP_B_MAIN)
    project.write("helper_b.py", "VALUE = 42\n")


@pytest.fixture
def stack_project(
    tmp_path: Path, runtime_archive_dir: Path, wheelhouse: Path
) -> StackProject:
    """An empty stack folder wired to the packed runtimes and the local wheelhouse."""
    root = tmp_path / "stack"
    root.mkdir()
    return StackProject(root, runtime_archive_dir, wheelhouse)


@pytest.fixture
def basic_stack(stack_project: StackProject, runtime_versions: Mapping[str, str]) -> StackProject:
    """The basic stack: runtime with a package, two frameworks, two apps (one versioned)."""
    write_basic_stack(stack_project, runtime_versions)
    return stack_project


def task_names(operation: str, envs: Sequence[str]) -> list[str]:
    return [f"{operation}:{env}" for env in envs]
