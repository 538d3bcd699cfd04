"""Host interpreters as a runtime fallback: finding a matching CPython and packing it once.

Only used with ``fallback="host"``: the packed archive is cached under ``<cache>/host-packed``
and marked not portable (it needs the host distribution's system libraries).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from packaging.version import Version

from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform, build_platform
from venvstacks.runtimes.archives import read_checksum_file, scan_archive_dirs, sha256_file
from venvstacks.runtimes.pack import pack_runtime
from venvstacks.runtimes.probe import probe_python
from venvstacks.runtimes.request import HOST_PACKED_WARNING, RuntimeRequest, RuntimeSource

__all__ = ["find_host_interpreter", "host_packed", "pyenv_root"]

_log = logging.getLogger(__name__)


def pyenv_root(env: Mapping[str, str] | None = None) -> Path | None:
    """pyenv's root folder: ``$PYENV_ROOT``, else ``~/.pyenv`` when it exists."""
    source = os.environ if env is None else env
    if source.get("PYENV_ROOT"):
        return Path(source["PYENV_ROOT"])
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _pyenv_interpreters(major_minor: str) -> list[tuple[str, Path]]:
    """``(version, interpreter)`` for every pyenv CPython ``major_minor.*``."""
    root = pyenv_root()
    if root is None or not (root / "versions").is_dir():
        return []
    found = []
    for folder in sorted((root / "versions").iterdir()):
        if re.fullmatch(rf"{re.escape(major_minor)}\.\d+", folder.name):
            interpreter = folder / "bin" / f"python{major_minor}"
            if interpreter.is_file():
                found.append((folder.name, interpreter))
    return found


def _system_interpreters(major_minor: str) -> list[tuple[str, Path]]:
    """``(version, interpreter)`` for ``pythonX.Y`` on PATH and in the usual system folders."""
    name = f"python{major_minor}"
    paths = [shutil.which(name)]
    paths += [f"/usr/local/bin/{name}", f"/usr/bin/{name}"]
    found = []
    for text in dict.fromkeys(p for p in paths if p):
        try:
            host = probe_python(Path(text))
        except RuntimeProvisionError as exc:
            _log.debug("not packing %s: %s", text, exc)
            continue
        found.append((host.version, Path(text)))
    return found


def find_host_interpreter(version: str) -> Path | None:
    """A host CPython for ``X.Y.Z`` (that release) or ``X.Y`` (the newest): pyenv first."""
    major_minor = ".".join(version.split(".")[:2])
    candidates = _pyenv_interpreters(major_minor)
    if not (version.count(".") == 2 and any(v == version for v, _ in candidates)):
        candidates += _system_interpreters(major_minor)
    if version.count(".") == 2:
        return next((path for v, path in candidates if v == version), None)
    versions = [(Version(v), -index, path) for index, (v, path) in enumerate(candidates)]
    finals = [item for item in versions if not item[0].is_prerelease]
    return max(finals, key=lambda item: item[:2])[2] if finals else None


def _cached_host_pack(
    folder: Path, platform: TargetPlatform, version: str
) -> tuple[Path, str] | None:
    """A complete, intact earlier pack of ``version`` in ``folder``, as (archive, sha256)."""
    for candidate in scan_archive_dirs([folder], platform):
        if candidate.version != version or not candidate.host_packed:
            continue
        expected = read_checksum_file(candidate.path)
        if expected is not None and sha256_file(candidate.path) == expected:
            return candidate.path, expected
        _log.info("ignoring the incomplete or damaged cached pack %s", candidate.path)
    return None


def host_packed(
    request: RuntimeRequest, platform: TargetPlatform, cache_dir: Path
) -> RuntimeSource:
    """A host CPython matching ``request``, packed into ``<cache_dir>/host-packed`` once."""
    if request.implementation != "cpython":
        raise RuntimeProvisionError(
            None, f"only CPython can be packed from the host, not {request}"
        )
    if platform != build_platform():
        msg = f"cannot pack a host Python for {platform}: this machine is {build_platform()}"
        raise RuntimeProvisionError(None, msg)
    interpreter = find_host_interpreter(request.version)
    if interpreter is None:
        raise RuntimeProvisionError(None, f"no host Python matching {request} was found")
    host = probe_python(interpreter)
    folder = cache_dir / "host-packed"
    cached = _cached_host_pack(folder, platform, host.version)
    if cached is not None:
        archive, digest = cached
    else:
        _log.info("packing %s into %s", host.prefix, folder)
        packed = pack_runtime(interpreter, folder)
        archive, digest = packed.archive, packed.sha256
    return RuntimeSource(
        archive=archive,
        sha256=digest,
        kind="host-packed",
        description=f"host-packed from {host.prefix}",
        version=host.version,
        portable=False,
        warning=HOST_PACKED_WARNING,
    )
