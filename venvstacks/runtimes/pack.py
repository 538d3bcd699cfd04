"""Packing an installed host CPython into a relocatable, python-build-standalone-style archive.

Linux only for now. The result is an ``install_only`` archive named
``cpython-X.Y.Z+local-<triple>-install_only.tar.gz`` whose single top folder is ``python/``
(``python/bin/python3``, ``python/lib/pythonX.Y/...``), plus ``<archive>.sha256`` in the
``sha256sum`` format.

The steps live in their own modules: `venvstacks.runtimes.probe` (what the interpreter is and
whether it can be packed), `venvstacks.runtimes.relocate` (staging, RUNPATHs, shebangs, smoke
check) and `venvstacks.runtimes.archives` (the reproducible archive and its checksum file).
The packed runtime still needs the host distribution's system libraries (libssl, libsqlite3,
libffi, ...): it is relocatable, not portable. Repacking the same installation gives
byte-identical output whatever the file times on disk.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from venvstacks.errors import RuntimeProvisionError
from venvstacks.runtimes.archives import (
    archive_name,
    write_checksum_file,
    write_reproducible_tar_gz,
)
from venvstacks.runtimes.probe import probe_python
from venvstacks.runtimes.relocate import find_patchelf, make_relocatable, smoke_check, stage_runtime

__all__ = ["PackResult", "pack_runtime"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackResult:
    """A packed runtime archive and where it came from."""

    archive: Path
    checksum_file: Path
    sha256: str
    version: str
    source_prefix: Path
    size: int


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
