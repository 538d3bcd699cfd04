"""`venvstacks completion SHELL`: click's completion scripts, and that they complete for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from venvstacks.cli.completion import COMPLETE_VAR, SHELLS

VENVSTACKS = shutil.which("venvstacks", path=str(Path(sys.executable).parent))


def _venvstacks(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert VENVSTACKS is not None, "the venvstacks script is installed next to this Python"
    return subprocess.run(
        [VENVSTACKS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_script_is_generated(shell: str) -> None:
    result = _venvstacks("completion", shell)
    assert result.returncode == 0, result.stderr
    assert COMPLETE_VAR in result.stdout
    assert f"{shell}_complete" in result.stdout  # what the script asks venvstacks for
    assert "venvstacks" in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_loads_in_bash() -> None:
    script = _venvstacks("completion", "bash").stdout
    result = subprocess.run(
        ["bash", "--norc", "-c", f"{script}\ncomplete -p venvstacks"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "venvstacks" in result.stdout


def test_the_installed_command_completes_commands_and_options() -> None:
    """What the bash script runs when the user presses TAB after `venvstacks gr` / `graph --f`."""
    words = _venvstacks(env={COMPLETE_VAR: "bash_complete", "COMP_WORDS": "venvstacks gr",
                             "COMP_CWORD": "1"})  # fmt: skip
    assert words.stdout.splitlines() == ["plain,graph"]
    options = _venvstacks(env={COMPLETE_VAR: "bash_complete", "COMP_WORDS": "venvstacks graph --fo",
                               "COMP_CWORD": "2"})  # fmt: skip
    assert "plain,--format" in options.stdout.splitlines()


def test_unknown_shell_is_a_usage_error() -> None:
    result = _venvstacks("completion", "powershell")
    assert result.returncode == 2
