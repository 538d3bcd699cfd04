"""Fixtures that provide real, relocatable runtime archives packed from pyenv's CPythons.

``runtime_archive_dir`` is a folder holding ``cpython-X.Y.Z+local-<triple>-install_only.tar.gz``
(and its ``.sha256``) for pyenv's 3.11 and 3.12; ``runtime_versions`` maps ``"3.11"`` to the full
version in it (e.g. ``"3.11.7"``), so stacks can say ``python_implementation = "cpython@3.11.7"``.

Packing takes a few seconds per runtime, so packed archives are cached across sessions in
``$VENVSTACKS_TEST_RUNTIME_CACHE`` (default ``<repo>/.runtime-cache/``). A cache entry is keyed
by the full version, the interpreter binary's size and mtime, and the content of
``venvstacks/runtimes/{pack,probe,relocate,archives}.py``; it is created by renaming a finished temporary folder, and is used
only when its archive still matches its ``.sha256``. Anything else is repacked.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from venvstacks.runtimes import archives, pack, probe, relocate
from venvstacks.runtimes.archives import sha256_file
from venvstacks.runtimes.pack import pack_runtime

__all__ = [
    "RUNTIME_CACHE_ENV",
    "find_host_python",
    "packed_runtime_archive",
    "pyenv_versions_dir",
    "runtime_archive_dir",
    "runtime_cache_dir",
    "runtime_versions",
]

RUNTIME_CACHE_ENV = "VENVSTACKS_TEST_RUNTIME_CACHE"
_DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".runtime-cache"
_PACKED_SERIES = ("3.11", "3.12")


# ---------------------------------------------------------------------------------------------
# Finding pyenv's interpreters
# ---------------------------------------------------------------------------------------------


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        completed = subprocess.run(
            [pyenv, "root"], capture_output=True, text=True, check=False, timeout=30
        )
        if completed.returncode == 0 and completed.stdout.strip():
            return Path(completed.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def pyenv_versions_dir() -> Path | None:
    """pyenv's ``versions`` folder, or None when pyenv is not installed."""
    root = _pyenv_root()
    return root / "versions" if root is not None and (root / "versions").is_dir() else None


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def find_host_python(version: str) -> Path:
    """pyenv's interpreter ``bin/pythonX.Y`` for ``X.Y.Z``, or the newest ``X.Y.*`` for ``X.Y``.

    Raises LookupError when pyenv or that version is missing.
    """
    versions = pyenv_versions_dir()
    if versions is None:
        raise LookupError("pyenv is not installed (no `pyenv root`, no ~/.pyenv)")
    series = ".".join(version.split(".")[:2])
    pattern = re.compile(rf"{re.escape(series)}\.\d+")
    found = sorted(
        (p.name for p in versions.iterdir() if pattern.fullmatch(p.name)), key=_version_key
    )
    if version.count(".") == 2:
        found = [name for name in found if name == version]
    for name in reversed(found):
        interpreter = versions / name / "bin" / f"python{series}"
        if interpreter.is_file():
            return interpreter
    raise LookupError(f"pyenv has no CPython {version} in {versions}")


# ---------------------------------------------------------------------------------------------
# The cross-session cache of packed archives
# ---------------------------------------------------------------------------------------------


def runtime_cache_dir() -> Path:
    """Where packed test runtimes are cached between sessions."""
    return Path(os.environ.get(RUNTIME_CACHE_ENV) or _DEFAULT_CACHE)


def _cache_key(interpreter: Path) -> str:
    status = interpreter.resolve().stat()
    digest = hashlib.sha256()
    digest.update(f"{interpreter.resolve()}|{status.st_size}|{status.st_mtime_ns}|".encode())
    for module in (pack, probe, relocate, archives):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def _complete_archive(entry: Path) -> Path | None:
    """The archive in a cache entry if it is there, with a ``.sha256`` that it matches."""
    archives = sorted(entry.glob("cpython-*-install_only.tar.gz")) if entry.is_dir() else []
    if len(archives) != 1:
        return None
    checksum_file = archives[0].with_name(archives[0].name + ".sha256")
    if not checksum_file.is_file():
        return None
    expected = (checksum_file.read_text().split() or [""])[0]
    return archives[0] if sha256_file(archives[0]) == expected else None


@contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """Serialise packing between pytest-xdist workers (and concurrent sessions)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def packed_runtime_archive(version: str, cache: Path | None = None) -> Path:
    """A verified packed archive of pyenv's ``version``, packing it only when not cached."""
    interpreter = find_host_python(version)
    cache = runtime_cache_dir() if cache is None else cache
    full_version = interpreter.parents[1].name
    entry = cache / f"{full_version}-{_cache_key(interpreter)}"
    with _cache_lock(cache):
        archive = _complete_archive(entry)
        if archive is not None:
            return archive
        shutil.rmtree(entry, ignore_errors=True)  # stale or partial: never used
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache))
        try:
            pack_runtime(interpreter, scratch)
            scratch.rename(entry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    archive = _complete_archive(entry)
    assert archive is not None, f"packing {interpreter} left no complete archive in {entry}"
    return archive


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runtime_versions() -> dict[str, str]:
    """``{"3.11": "3.11.7", "3.12": "3.12.1"}``: the runtimes in ``runtime_archive_dir``."""
    versions = {}
    for series in _PACKED_SERIES:
        try:
            versions[series] = find_host_python(series).parents[1].name
        except LookupError as exc:
            pytest.skip(f"no host runtime to pack: {exc}")
    return versions


@pytest.fixture(scope="session")
def runtime_archive_dir(
    tmp_path_factory: pytest.TempPathFactory, runtime_versions: dict[str, str]
) -> Path:
    """A runtime archive folder with packed archives (and .sha256) of every `runtime_versions`.

    The files are copies, so a test may damage them without harming the cache, but it should
    copy them elsewhere first since other tests share this folder.
    """
    folder = tmp_path_factory.mktemp("runtime-archives")
    for version in runtime_versions.values():
        archive = packed_runtime_archive(version)
        for source in (archive, archive.with_name(archive.name + ".sha256")):
            shutil.copy2(source, folder / source.name)
    return folder
