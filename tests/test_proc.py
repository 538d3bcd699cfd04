"""The one subprocess call site: a scrubbed environment, output on failure, finding uv."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from venvstacks.proc import ProcessFailed, clean_environment, run_checked, tail, uv_command

# (variable, kept?) for a caller environment holding every one of them.
CALLER_ENV = [
    ("PATH", True),
    ("HOME", True),
    ("LANG", True),
    ("PIP_INDEX_URL", False),
    ("PIP_FIND_LINKS", False),
    ("PIP_REQUIRE_VIRTUALENV", False),
    ("PYTHONPATH", False),
    ("PYTHONHOME", False),
    ("PYTHONSTARTUP", False),
    ("VIRTUAL_ENV", False),
    ("CONDA_PREFIX", False),
    ("PYENV_VERSION", False),
    ("UV_PYTHON", False),
    ("UV_INDEX", False),
    ("UV_INDEX_URL", False),
    ("UV_DEFAULT_INDEX", False),
    ("UV_EXTRA_INDEX_URL", False),
    ("UV_INDEX_STRATEGY", False),
    ("UV_FIND_LINKS", False),
    ("UV_CONSTRAINT", False),
    ("UV_CONFIG_FILE", False),
    ("UV_PRERELEASE", False),
    ("UV_INDEX_PRIVATE_USERNAME", True),
    ("UV_INDEX_PRIVATE_PASSWORD", True),
    ("UV_INDEX_MY_MIRROR_PASSWORD", True),
    ("UV_HTTP_TIMEOUT", True),
    ("UV_CACHE_DIR", True),
    ("UV_NO_CACHE", True),
    ("UV_EXCLUDE_NEWER", True),
    ("UV_KEYRING_PROVIDER", True),
    ("UV_NATIVE_TLS", True),
    ("UV_OFFLINE", True),
    ("UV_CONCURRENT_DOWNLOADS", True),
]

# Set by venvstacks whatever the caller had.
FORCED = {
    "PYTHONNOUSERSITE": "1",
    "PYTHONSAFEPATH": "1",
    "PYTHONUTF8": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "UV_PYTHON_DOWNLOADS": "never",
    "UV_NO_PROGRESS": "1",
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_NO_INPUT": "1",
}


@pytest.fixture
def caller_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _kept in CALLER_ENV:
        monkeypatch.setenv(name, f"caller-{name}")
    for name in FORCED:
        monkeypatch.setenv(name, f"caller-{name}")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/me/.config")
    monkeypatch.setenv("XDG_CONFIG_DIRS", "/etc/xdg")


@pytest.mark.parametrize(("name", "kept"), CALLER_ENV)
@pytest.mark.usefixtures("caller_env")
def test_clean_environment_keeps_or_drops(name: str, kept: bool) -> None:
    env = clean_environment()
    if kept:
        assert env[name] == f"caller-{name}"
    else:
        assert name not in env


@pytest.mark.usefixtures("caller_env")
def test_clean_environment_forces_its_settings() -> None:
    env = clean_environment()
    for name, value in FORCED.items():
        assert env[name] == value
    assert not env["XDG_CONFIG_HOME"].startswith("/home/me")
    assert env["XDG_CONFIG_DIRS"] == env["XDG_CONFIG_HOME"]
    assert not Path(env["XDG_CONFIG_HOME"]).exists()


@pytest.mark.usefixtures("caller_env")
def test_clean_environment_extra_wins() -> None:
    env = clean_environment({"UV_PYTHON_DOWNLOADS": "automatic", "EXTRA": "x", "UV_INDEX": "i"})
    assert env["UV_PYTHON_DOWNLOADS"] == "automatic"
    assert env["EXTRA"] == "x"
    assert env["UV_INDEX"] == "i"  # what venvstacks passes on purpose is never filtered


def test_clean_environment_does_not_touch_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "x")
    before = dict(os.environ)
    clean_environment({"A": "b"})
    assert dict(os.environ) == before


def test_run_checked_returns_combined_output() -> None:
    code = "import sys; print('to stdout'); sys.stdout.flush(); sys.stderr.write('to stderr\\n')"
    output = run_checked([sys.executable, "-c", code])
    assert output == "to stdout\nto stderr\n"


def test_run_checked_passes_a_clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://example.invalid")
    monkeypatch.setenv("VIRTUAL_ENV", "/some/venv")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    env = json.loads(run_checked([sys.executable, "-c", code], env={"GIVEN": "yes"}))
    assert "PIP_INDEX_URL" not in env
    assert "VIRTUAL_ENV" not in env
    assert env["GIVEN"] == "yes"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_run_checked_uses_cwd_and_no_stdin(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(repr(sys.stdin.read()))"
    output = run_checked([sys.executable, "-c", code], cwd=tmp_path)
    assert output.splitlines() == [str(tmp_path), "''"]


def test_run_checked_accepts_path_arguments(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    assert run_checked([Path(sys.executable), script]) == "ran\n"  # type: ignore[list-item]


def test_run_checked_raises_process_failed_with_output() -> None:
    code = "import sys; print('partial work'); sys.stderr.write('it broke\\n'); sys.exit(3)"
    argv = [sys.executable, "-c", code]
    with pytest.raises(ProcessFailed) as caught:
        run_checked(argv)
    failure = caught.value
    assert failure.returncode == 3
    assert failure.argv == argv
    assert "partial work" in failure.output
    assert "it broke" in failure.output
    assert str(failure) == f"{Path(sys.executable).name} exited with status 3"


def test_run_checked_decodes_bad_bytes_without_failing() -> None:
    code = "import sys; sys.stdout.buffer.write(b'bad \\xff byte\\n')"
    assert run_checked([sys.executable, "-c", code]) == "bad \ufffd byte\n"


def test_uv_command_finds_a_working_uv() -> None:
    command = uv_command()
    assert Path(command[0]).is_file()
    assert os.access(command[0], os.X_OK)
    assert run_checked([*command, "--version"]).startswith("uv ")


def test_uv_command_prefers_the_bundled_binary() -> None:
    from uv import find_uv_bin

    assert uv_command() == [find_uv_bin()]


TAILS = [
    ("", 15, ""),
    ("one\n", 15, "one"),
    ("a\n\n  \nb\nc\n", 2, "b\nc"),
    ("\n".join(str(n) for n in range(30)), 3, "27\n28\n29"),
]


@pytest.mark.parametrize(("output", "lines", "expected"), TAILS)
def test_tail(output: str, lines: int, expected: str) -> None:
    assert tail(output, lines) == expected
