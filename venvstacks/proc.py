"""Running subprocesses (uv, Python): one call site, a scrubbed environment, one error type.

Builds must not depend on the machine's pip or uv configuration nor on the caller's Python
environment variables, so every subprocess gets a cleaned copy of the environment: no PIP_*,
no UV_* except the few a user is expected to set (credentials, cache, exclude-newer), no
PYTHON* variables, no VIRTUAL_ENV; uv never downloads a Python and reads no user or system
configuration (only the settings venvstacks writes into each layer's resolve project).

Every subprocess runs in a process group of its own, so that an interrupted command stops it
and whatever it started at once (`stop_subprocesses`), and no new one starts afterwards. File
descriptors registered with `inherited_fd` (the build-dir lock) stay open in the subprocesses:
one that outlives a killed venvstacks keeps the build dir locked until it ends.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol

__all__ = [
    "ProcessFailed",
    "Runner",
    "allow_subprocesses",
    "clean_environment",
    "inherited_fd",
    "run_checked",
    "stop_subprocesses",
    "uv_command",
]

_log = logging.getLogger(__name__)

# uv settings a user may legitimately pass through the environment. Index credentials are kept
# (UV_INDEX_<NAME>_USERNAME/_PASSWORD), but not UV_INDEX_URL or UV_INDEX_STRATEGY: those would
# change what a layer resolves to behind the stack's own index settings.
_UV_KEEP_PREFIXES = ("UV_HTTP_", "UV_CACHE_DIR", "UV_EXCLUDE_NEWER", "UV_NO_CACHE")
_UV_INDEX_CREDENTIAL = re.compile(r"UV_INDEX_.+_(USERNAME|PASSWORD)")
_NO_CONFIG_DIR = "/nonexistent/venvstacks-no-user-config"
_UV_KEEP = frozenset(
    {"UV_KEYRING_PROVIDER", "UV_NATIVE_TLS", "UV_OFFLINE", "UV_CONCURRENT_DOWNLOADS"}
)


class ProcessFailed(Exception):
    """A subprocess exited non-zero; carries its output for the caller to turn into a StackError."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(f"{Path(argv[0]).name} exited with status {returncode}")


class Runner(Protocol):
    """How operations run a subprocess (a fake can stand in for pure-logic tests)."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str: ...


def _keep(name: str) -> bool:
    if name.startswith(("PIP_", "PYTHON", "CONDA_")) or name in ("VIRTUAL_ENV", "PYENV_VERSION"):
        return False
    if name.startswith("UV_"):
        return (
            name in _UV_KEEP
            or name.startswith(_UV_KEEP_PREFIXES)
            or _UV_INDEX_CREDENTIAL.fullmatch(name) is not None
        )
    return True


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every subprocess gets (see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if _keep(k)}
    env.update(
        {
            "PYTHONNOUSERSITE": "1",
            "PYTHONSAFEPATH": "1",
            "PYTHONUTF8": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            # uv reads the resolve project's own [tool.uv], but no user uv.toml and none under
            # XDG_CONFIG_DIRS. (uv still falls back to /etc/uv/uv.toml when that file exists.)
            "XDG_CONFIG_HOME": _NO_CONFIG_DIR,
            "XDG_CONFIG_DIRS": _NO_CONFIG_DIR,
            "UV_NO_PROGRESS": "1",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INPUT": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


_RUNNING: set[subprocess.Popen[str]] = set()
_INHERITED: set[int] = set()
_STARTING = threading.Lock()
_STOPPED = [False]  # set by stop_subprocesses: no subprocess starts any more


@contextmanager
def inherited_fd(fd: int) -> Iterator[None]:
    """Keep `fd` open in every subprocess started while inside this block."""
    with _STARTING:
        _INHERITED.add(fd)
    try:
        yield
    finally:
        with _STARTING:
            _INHERITED.discard(fd)


def stop_subprocesses() -> None:
    """Kill every running subprocess (with its process group) and refuse to start new ones.

    For Ctrl-C: called from a signal handler too, so it takes no lock (the set is copied in one
    step under the GIL) and only sends signals.
    """
    _STOPPED[0] = True
    for process in list(_RUNNING):
        _kill_group(process.pid)
    _kill_other_children()


def allow_subprocesses() -> None:
    """Undo `stop_subprocesses` (for a new command in the same process, as tests run them)."""
    _STOPPED[0] = False


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            os.kill(pid, signal.SIGTERM)


def _kill_other_children() -> None:
    """Children started without `run_checked` (a postinstall, a probe): kill them too (Linux)."""
    me = os.getpid()
    try:
        pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _start(argv: Sequence[str], cwd: Path | None, env: Mapping[str, str]) -> subprocess.Popen[str]:
    with _STARTING:
        if _STOPPED[0]:
            raise ProcessFailed(argv, -signal.SIGINT, "interrupted: not started")
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            pass_fds=tuple(sorted(_INHERITED)),
            process_group=0 if hasattr(os, "killpg") else None,
        )
        _RUNNING.add(process)
    return process


def run_checked(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a command with a clean environment; return its combined output or raise ProcessFailed."""
    args = [str(a) for a in argv]
    _log.debug("running: %s", " ".join(args))
    process = _start(args, cwd, clean_environment(env))
    try:
        output, _ = process.communicate()
    except BaseException:
        # Interrupted (Ctrl-C) or failed while waiting: nothing of the command may live on.
        _kill_group(process.pid)
        process.wait()
        raise
    finally:
        with _STARTING:
            _RUNNING.discard(process)
    if process.returncode != 0:
        raise ProcessFailed(argv, process.returncode, output)
    return output


_UV_LOCK = threading.Lock()


@functools.cache
def _find_uv() -> tuple[str, ...]:
    try:
        from uv import find_uv_bin

        return (find_uv_bin(),)
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return (found,)
    return (sys.executable, "-m", "uv")


def uv_command() -> list[str]:
    """How to invoke uv: the binary installed with venvstacks, else one on PATH.

    Found once, under a lock: `find_uv_bin` reads sysconfig, which is not thread-safe on
    Python 3.11 when two tasks ask at once.
    """
    with _UV_LOCK:
        return list(_find_uv())


def tail(output: str, lines: int = 15) -> str:
    """The last lines of a tool's output, for error messages."""
    kept = [line for line in output.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
