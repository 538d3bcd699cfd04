"""The README's tour runs as written, in order, from a fresh clone of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def tour_commands(readme: str) -> list[str]:
    """The `$ ` lines of the tour's console block, without their trailing comments."""
    section = readme.split("## A 30-second tour", 1)[1]
    block = re.search(r"```console\n(.*?)```", section, re.DOTALL)
    assert block, "the tour has a console block"
    commands = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            commands.append(re.sub(r"\s+#.*$", "", line[2:]).strip())
    return commands


def test_tour_commands_are_parsed() -> None:
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert commands[0] == "source .venv/bin/activate"
    assert all(c.startswith("venvstacks ") for c in commands[1:])
    assert not any("/opt/" in c for c in commands), "the tour deploys to a folder the user owns"


@pytest.mark.slow
@pytest.mark.pypi
def test_readme_tour_runs_from_a_fresh_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: no fresh clone to make")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    # The set-up command made .venv; the clone gets this interpreter's environment in its place.
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '+ {c}' >&2\n{c}" for c in tour_commands(README.read_text(encoding="utf-8"))
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "traceback" not in result.stderr.lower()
    assert (clone / "_demo").is_dir()
