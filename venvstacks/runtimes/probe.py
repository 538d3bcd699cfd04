"""Probing an installed host CPython: what it is, where its parts are, and whether it can be packed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from venvstacks.errors import RuntimeProvisionError

__all__ = ["HostPython", "clean_subprocess_env", "inside", "probe_python"]

_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?")
_ENV_DROP_PREFIXES = ("PIP_", "PYTHON", "UV_")
_ENV_DROP = frozenset(
    {"VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYENV_VERSION"}
)
_PROBE_SCRIPT = """\
import json, os, platform, sys, sysconfig
var = sysconfig.get_config_var
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "major_minor": "%d.%d" % sys.version_info[:2],
    "platform": sys.platform,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "executable": os.path.realpath(sys.executable),
    "stdlib": sysconfig.get_path("stdlib"),
    "platstdlib": sysconfig.get_path("platstdlib"),
    "include": sysconfig.get_path("include"),
    "libdir": var("LIBDIR") or "",
    "shared": bool(var("Py_ENABLE_SHARED")),
    "machine": platform.machine(),
    "libc": platform.libc_ver()[0],
}))
"""


@dataclass(frozen=True)
class HostPython:
    """What a probe of an installed interpreter found out about it."""

    executable: Path
    """The real interpreter binary (symlinks resolved), inside ``prefix/bin``."""
    prefix: Path
    version: str
    """``X.Y.Z`` (possibly with a pre-release suffix)."""
    major_minor: str
    stdlib: Path
    platstdlib: Path
    include: Path
    libdir: Path
    shared: bool
    """True for ``--enable-shared`` builds (the binary loads ``libpythonX.Y.so``)."""
    machine: str


def clean_subprocess_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without PIP_*/PYTHON*/UV_*, venv or loader hints."""
    source = os.environ if base is None else base
    return {
        key: value
        for key, value in source.items()
        if key not in _ENV_DROP and not key.startswith(_ENV_DROP_PREFIXES)
    }


def inside(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _interpreter_path(python: Path) -> Path:
    """The interpreter to probe, given either an executable or an installation prefix."""
    if not python.exists():
        raise RuntimeProvisionError(None, f"no Python found at {python}")
    if python.is_dir():
        for name in ("python3", "python"):
            candidate = python / "bin" / name
            if candidate.is_file():
                return candidate
        msg = f"{python} is not a Python installation prefix (no bin/python3 in it)"
        raise RuntimeProvisionError(None, msg)
    return python


def _is_venv(executable: Path) -> bool:
    return any((folder / "pyvenv.cfg").exists() for folder in executable.parents[:2])


def _run_probe(interpreter: Path) -> dict[str, object]:
    try:
        completed = subprocess.run(
            [str(interpreter), "-I", "-c", _PROBE_SCRIPT],
            capture_output=True,
            text=True,
            env=clean_subprocess_env(),
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise RuntimeProvisionError(None, f"cannot run {interpreter}: {exc.strerror}") from None
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeProvisionError(None, f"{interpreter} is not a working Python ({last})")
    try:
        data: dict[str, object] = json.loads(completed.stdout)
    except ValueError:
        raise RuntimeProvisionError(None, f"{interpreter} is not a working Python") from None
    return data


def _host_python_from(interpreter: Path, data: Mapping[str, object]) -> HostPython:
    """Check what the probe reported and turn it into a `HostPython` (raises on refusal)."""
    text = {key: str(value) for key, value in data.items()}
    if text["implementation"] != "cpython":
        msg = f"{interpreter} is {text['implementation']}, not CPython; only CPython can be packed"
        raise RuntimeProvisionError(None, msg)
    if text["prefix"] != text["base_prefix"] or _is_venv(interpreter):
        msg = (
            f"{interpreter} belongs to a virtual environment, not a base installation; "
            f"pass its base interpreter (under {text['base_prefix']})"
        )
        raise RuntimeProvisionError(None, msg)
    if text["platform"] != "linux" or text["libc"] != "glibc":
        msg = f"{interpreter} is not a glibc Linux build; only those can be packed for now"
        raise RuntimeProvisionError(None, msg)
    if not _VERSION_RE.fullmatch(text["version"]):
        msg = (
            f"{interpreter} reports an unusual version {text['version']!r}; cannot name its archive"
        )
        raise RuntimeProvisionError(None, msg)
    prefix, executable = Path(text["prefix"]), Path(text["executable"])
    stdlib, platstdlib = Path(text["stdlib"]), Path(text["platstdlib"])
    for needed, what in ((executable.parent, "interpreter"), (stdlib, "standard library")):
        if not inside(str(needed), str(prefix)):
            msg = f"{interpreter}: its {what} ({needed}) is outside its prefix {prefix}"
            raise RuntimeProvisionError(None, msg)
    return HostPython(
        executable=executable,
        prefix=prefix,
        version=text["version"],
        major_minor=text["major_minor"],
        stdlib=stdlib,
        platstdlib=platstdlib,
        include=Path(text["include"]),
        libdir=Path(text["libdir"]),
        shared=bool(data["shared"]),
        machine=text["machine"],
    )


def probe_python(python: Path) -> HostPython:
    """Run ``python`` (an executable or a prefix) and describe it, refusing unpackable ones."""
    interpreter = _interpreter_path(python)
    return _host_python_from(interpreter, _run_probe(interpreter))
