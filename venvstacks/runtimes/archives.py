"""Runtime archive files: names, sha256 checksum files, reproducible writing, archive folders.

The writing side is used by `venvstacks.runtimes.pack`; the reading side (scanning folders for
python-build-standalone ``install_only`` archives and verifying them) by `venvstacks.runtimes.resolve`.

Reproducibility of written archives: entries are sorted, owned by uid/gid 0 with empty owner
names, modes are normalised (0755 for directories and executables, 0644 otherwise), every mtime
is `ARCHIVE_MTIME`, and the gzip header carries no file name and mtime 0.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.runtimes.request import (
    HOST_PACKED_WARNING,
    ArchiveCandidate,
    RuntimeSource,
    parse_archive_name,
    platform_triple,
)

__all__ = [
    "ARCHIVE_MTIME",
    "archive_name",
    "linux_triple",
    "read_checksum_file",
    "scan_archive_dirs",
    "sha256_file",
    "source_from_archive",
    "walk_tree",
    "write_checksum_file",
    "write_reproducible_tar_gz",
]

_log = logging.getLogger(__name__)

ARCHIVE_MTIME = 1577836800
"""Every entry's mtime in packed archives: 2020-01-01T00:00:00Z."""

_GZIP_LEVEL = 6
_LINUX_TRIPLES = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------------------------
# Names and checksums
# ---------------------------------------------------------------------------------------------


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


def sha256_file(path: Path) -> str:
    """The hex sha256 digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_checksum_text(text: str) -> str | None:
    token = (text.split() or [""])[0].lower()
    return token if _SHA256_RE.fullmatch(token) else None


def read_checksum_file(archive: Path) -> str | None:
    """The digest in ``<archive>.sha256`` (``sha256sum`` format), None when there is no such file."""
    checksum_file = archive.with_name(archive.name + ".sha256")
    if not checksum_file.is_file():
        return None
    digest = _parse_checksum_text(checksum_file.read_text(encoding="utf-8", errors="replace"))
    if digest is None:
        raise RuntimeProvisionError(None, f"{checksum_file} does not hold a sha256 digest")
    return digest


def _atomic_output(target: Path) -> tuple[IO[bytes], Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    return handle, Path(handle.name)


def _commit_output(temporary: Path, target: Path) -> None:
    temporary.chmod(0o644)
    temporary.replace(target)


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
# Writing a reproducible tar.gz
# ---------------------------------------------------------------------------------------------


def walk_tree(root: Path) -> Iterator[Path]:
    """Every path below ``root`` (symlinked folders are not followed)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(folder) / name


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
    entries = sorted(walk_tree(root), key=lambda p: p.relative_to(root).parts)
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_entry(root, root.name))
        for path in entries:
            info = _tar_entry(path, f"{root.name}/{path.relative_to(root).as_posix()}")
            if info.isreg():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)


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


# ---------------------------------------------------------------------------------------------
# Archive folders
# ---------------------------------------------------------------------------------------------


def scan_archive_dirs(
    archive_dirs: Iterable[Path], platform: TargetPlatform | None = None
) -> list[ArchiveCandidate]:
    """Every ``install_only`` archive for ``platform`` in the folders, in folder then name order.

    Missing folders are skipped (with a debug log); ``platform=None`` lists every platform.
    """
    wanted = None if platform is None else platform_triple(platform)
    found = []
    for folder in archive_dirs:
        if not folder.is_dir():
            _log.debug("runtime archive folder %s does not exist", folder)
            continue
        for path in sorted(folder.iterdir()):
            parsed = parse_archive_name(path.name)
            if parsed is None or not path.is_file():
                continue
            version, triple, tag = parsed
            if wanted is None or triple == wanted:
                found.append(ArchiveCandidate(path, version, triple, tag))
    return found


def _verified_digest(archive: Path) -> str:
    """The archive's sha256, checked against its ``.sha256`` file when there is one."""
    actual = sha256_file(archive)
    expected = read_checksum_file(archive)
    if expected is None:
        _log.info("no %s.sha256 beside the archive: using it unverified", archive.name)
    elif expected != actual:
        msg = f"{archive} does not match its .sha256 file (expected {expected}, got {actual})"
        raise RuntimeProvisionError(None, msg)
    return actual


def source_from_archive(candidate: ArchiveCandidate) -> RuntimeSource:
    host_packed = candidate.host_packed
    return RuntimeSource(
        archive=candidate.path,
        sha256=_verified_digest(candidate.path),
        kind="archive",
        description=f"archive {candidate.path}",
        version=candidate.version,
        portable=not host_packed,
        warning=HOST_PACKED_WARNING if host_packed else None,
    )
