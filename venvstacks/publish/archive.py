"""Reproducible archives of one layer folder (tar.xz, tar.gz, tar.zst, zip), and reading them back.

The same folder content always gives the same archive bytes, whatever the source's mtimes,
ownership, umask noise or hard links, and whatever the thread count: entries are sorted (a folder
before its content), owned by uid/gid 0 ("root"), every mtime is the clamp time, permissions are
0o755 (folders, executables, symlinks) or 0o644, symlinks stay relative symlinks and hard links
become regular files. ``__pycache__`` folders and ``*.pyc`` files are never archived.

xz is compressed in parallel: the tar stream is cut into fixed-size chunks, each compressed on its
own into one xz block, and the blocks are joined into a single xz stream with a combined index, so
the result reads like any other ``.tar.xz`` (including in streaming readers).
"""

from __future__ import annotations

import calendar
import gzip
import lzma
import os
import stat
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from venvstacks.errors import DeployError, PublishError
from venvstacks.publish.files import describe_os_error, partial_file
from venvstacks.publish.formats import (
    LEVEL_RANGES,
    ArchiveFormat,
    ArchiveInfo,
    archive_suffix,
    sha256_file,
)
from venvstacks.publish.xz import ParallelXzWriter, host_machine_code_filter

__all__ = [
    "ARCHIVE_READ_ERRORS",
    "LEVEL_RANGES",
    "ArchiveFormat",
    "ArchiveInfo",
    "ArchiveMember",
    "ProgressCallback",
    "archive_suffix",
    "detect_format",
    "exclude_paths",
    "file_info",
    "open_archive",
    "read_archive_members",
    "sha256_file",
    "write_archive",
    "write_archive_to",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` over the file content being archived."""

ExcludeCallback = Callable[[PurePosixPath], bool]
"""Called with a path relative to the archived folder; True leaves it (and its content) out."""

MemberKind = Literal["dir", "file", "symlink", "hardlink", "device", "fifo", "sparse", "other"]

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
ZIP_LEVEL = 6
_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
_READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ArchiveMember:
    """One entry of an archive, as stored (names never end with ``/``)."""

    name: str
    kind: MemberKind
    mode: int
    mtime: int
    uid: int
    gid: int
    uname: str
    gname: str
    size: int
    linkname: str


# ---------------------------------------------------------------------------------------------
# What goes into an archive
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    arcname: str
    kind: Literal["dir", "file", "symlink"]
    source: Path
    mode: int
    size: int = 0
    linkname: str = ""


def exclude_paths(*paths: str | PurePosixPath) -> ExcludeCallback:
    """An ``exclude`` callback that leaves out exactly these relative paths (and their content)."""
    excluded = frozenset(PurePosixPath(path) for path in paths)
    return lambda relative: relative in excluded


def _always_skipped(name: str, is_dir: bool) -> bool:
    return name == "__pycache__" if is_dir else name.endswith(".pyc")


def _symlink_target(path: Path, source_dir: Path, root_name: str) -> str:
    """The symlink's target as a relative POSIX path (absolute links inside the folder rewritten)."""
    target = path.readlink()
    if not target.is_absolute():
        return target.as_posix()
    normalised = Path(os.path.normpath(target))
    link_dir = path.parent.relative_to(source_dir)
    # Lexical first (no symlink resolution), then with the folder's own symlinks resolved.
    for base in (Path(os.path.abspath(source_dir)), source_dir.resolve()):  # noqa: PTH100
        if normalised.is_relative_to(base):
            return Path(os.path.relpath(normalised, base / link_dir)).as_posix()
    raise PublishError(root_name, f"symlink {path} points outside the layer: {target}")


def _entry_for(path: Path, arcname: str, source_dir: Path, root_name: str) -> _Entry:
    status = path.lstat()
    if stat.S_ISDIR(status.st_mode):
        return _Entry(arcname, "dir", path, 0o755)
    if stat.S_ISLNK(status.st_mode):
        return _Entry(
            arcname, "symlink", path, 0o755, 0, _symlink_target(path, source_dir, root_name)
        )
    if stat.S_ISREG(status.st_mode):
        mode = 0o755 if status.st_mode & 0o111 else 0o644
        return _Entry(arcname, "file", path, mode, status.st_size)
    raise PublishError(root_name, f"cannot archive special file {path}")


def _collect_entries(
    source_dir: Path, root_name: str, exclude: ExcludeCallback | None
) -> list[_Entry]:
    """Every entry to archive, depth first, names sorted at each level, folders before content."""
    entries = [_Entry(root_name, "dir", source_dir, 0o755)]

    def walk(folder: Path, relative: PurePosixPath) -> None:
        with os.scandir(folder) as scan:
            children = sorted((item.name, item.is_dir(follow_symlinks=False)) for item in scan)
        for name, is_dir in children:
            child_relative = relative / name
            if _always_skipped(name, is_dir) or (exclude is not None and exclude(child_relative)):
                continue
            entry = _entry_for(
                folder / name, f"{root_name}/{child_relative}", source_dir, root_name
            )
            entries.append(entry)
            if entry.kind == "dir":
                walk(folder / name, child_relative)

    walk(source_dir, PurePosixPath())
    return entries


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _zstd_writer(sink: IO[bytes], threads: int, level: int = ZSTD_LEVEL) -> Any:
    """A zstd compressing file object; multi-threaded mode even for one thread (same bytes)."""
    if sys.version_info >= (3, 14):
        from compression import zstd

        options = {
            zstd.CompressionParameter.nb_workers: threads,
            zstd.CompressionParameter.checksum_flag: 1,
        }
        return zstd.ZstdFile(sink, "w", level=level, options=options)
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    return compressor.stream_writer(sink, closefd=False)


@contextmanager
def _compressing(
    fmt: ArchiveFormat, sink: IO[bytes], threads: int, level: int | None = None
) -> Iterator[Any]:
    """A file object that compresses what is written to it into ``sink`` (finished on exit)."""
    if fmt is ArchiveFormat.TAR_XZ:
        writer = ParallelXzWriter(sink, threads, level, host_machine_code_filter())
        try:
            yield writer
            writer.finish()
        finally:
            writer.shutdown()
    elif fmt is ArchiveFormat.TAR_GZ:
        # No file name and a zero mtime in the gzip header: only the content counts.
        with gzip.GzipFile(
            filename="",
            mode="wb",
            compresslevel=GZIP_LEVEL if level is None else level,
            fileobj=sink,
            mtime=0,
        ) as gz:
            yield gz
    elif fmt is ArchiveFormat.TAR_ZST:
        with _zstd_writer(sink, threads, ZSTD_LEVEL if level is None else level) as zst:
            yield zst
    else:
        raise ValueError(f"{fmt} is not a tar format")


def _tarinfo(entry: _Entry, clamp_mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.arcname)
    info.mtime = clamp_mtime
    info.mode = entry.mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.size = entry.size
    return info


def _write_tar(
    entries: list[_Entry], stream: Any, clamp_mtime: int, progress: ProgressCallback | None
) -> None:
    total = sum(entry.size for entry in entries)
    done = 0
    if progress is not None:
        progress(done, total)
    with tarfile.TarFile(
        fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8"
    ) as tar:
        for entry in entries:
            info = _tarinfo(entry, clamp_mtime)
            if entry.kind != "file":
                tar.addfile(info)
                continue
            with entry.source.open("rb") as content:
                tar.addfile(info, content)
            done += entry.size
            if progress is not None:
                progress(done, total)


def _zipinfo(entry: _Entry, clamp_mtime: int) -> zipfile.ZipInfo:
    date_time = time.gmtime(max(clamp_mtime, _ZIP_EPOCH))[:6]
    file_type = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG}[entry.kind]
    name = entry.arcname + "/" if entry.kind == "dir" else entry.arcname
    info = zipfile.ZipInfo(name, date_time)
    info.create_system = 3  # Unix, so that modes and symlinks survive on every build host
    info.external_attr = (file_type | entry.mode) << 16 | (0x10 if entry.kind == "dir" else 0)
    info.compress_type = zipfile.ZIP_DEFLATED if entry.kind == "file" else zipfile.ZIP_STORED
    return info


def _write_zip(
    entries: list[_Entry],
    sink: IO[bytes],
    clamp_mtime: int,
    progress: ProgressCallback | None,
    level: int = ZIP_LEVEL,
) -> None:
    total = sum(entry.size for entry in entries)
    done = 0
    if progress is not None:
        progress(done, total)
    with zipfile.ZipFile(sink, "w", compresslevel=level) as archive:
        for entry in entries:
            info = _zipinfo(entry, clamp_mtime)
            if entry.kind != "file":
                archive.writestr(info, entry.linkname.encode("utf-8"))
                continue
            info.file_size = entry.size
            with entry.source.open("rb") as content, archive.open(info, "w") as member:
                while block := content.read(_READ_SIZE):
                    member.write(block)
            done += entry.size
            if progress is not None:
                progress(done, total)


def _check_request(source_dir: Path, root_name: str, clamp_mtime: int) -> None:
    if not root_name or "/" in root_name or "\\" in root_name or root_name in (".", ".."):
        raise PublishError(root_name, f"invalid archive root folder name {root_name!r}")
    if not source_dir.is_dir():
        raise PublishError(root_name, f"cannot archive {source_dir}: not a folder")
    if clamp_mtime < 0:
        raise PublishError(root_name, f"invalid archive clamp time {clamp_mtime}")


def write_archive_to(
    source_dir: Path,
    root_name: str,
    sink: IO[bytes],
    *,
    fmt: ArchiveFormat = ArchiveFormat.TAR_XZ,
    clamp_mtime: int,
    threads: int = 0,
    progress: ProgressCallback | None = None,
    exclude: ExcludeCallback | None = None,
    level: int | None = None,
) -> None:
    """Write the archive of ``source_dir`` (see `write_archive`) into an open binary file."""
    _check_request(source_dir, root_name, clamp_mtime)
    threads = threads if threads > 0 else (os.cpu_count() or 1)
    entries = _collect_entries(source_dir, root_name, exclude)
    if fmt is ArchiveFormat.ZIP:
        _write_zip(entries, sink, clamp_mtime, progress, ZIP_LEVEL if level is None else level)
    else:
        with _compressing(fmt, sink, threads, level) as stream:
            _write_tar(entries, stream, clamp_mtime, progress)
    sink.flush()
    os.fsync(sink.fileno())


def file_info(path: Path) -> ArchiveInfo:
    """The size and SHA-256 of a file."""
    return ArchiveInfo(path, path.stat().st_size, sha256_file(path))


def write_archive(
    source_dir: Path,
    root_name: str,
    dest: Path,
    *,
    fmt: ArchiveFormat = ArchiveFormat.TAR_XZ,
    clamp_mtime: int,
    threads: int = 0,
    progress: ProgressCallback | None = None,
    exclude: ExcludeCallback | None = None,
    level: int | None = None,
) -> ArchiveInfo:
    """Archive the content of ``source_dir`` under ``<root_name>/`` as ``dest``, reproducibly.

    ``clamp_mtime`` (whole seconds since the epoch, normally the layer's lock time) becomes the
    mtime of every entry. ``threads`` is the compression thread count (0: one per CPU); it never
    changes the output. ``exclude`` leaves out matching paths relative to ``source_dir``.
    The archive is written beside ``dest`` and renamed into place, so ``dest`` never holds a
    partial archive. ``level`` is the compression level (None: the format's default, see
    `LEVEL_RANGES`). Raises PublishError (layer ``root_name``) when the folder cannot be archived.
    """
    _check_request(source_dir, root_name, clamp_mtime)
    try:
        with partial_file(dest) as (temp_path, sink):
            write_archive_to(
                source_dir, root_name, sink, fmt=fmt, clamp_mtime=clamp_mtime,
                threads=threads, progress=progress, exclude=exclude, level=level,
            )  # fmt: skip
            temp_path.chmod(0o644)
            info = file_info(temp_path)
            temp_path.replace(dest)
    except OSError as exc:
        raise PublishError(
            root_name, f"cannot write archive {dest}: {describe_os_error(exc)}"
        ) from exc
    return ArchiveInfo(dest, info.size, info.sha256)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

_MAGIC = (
    (b"\xfd7zXZ\x00", ArchiveFormat.TAR_XZ),
    (b"\x1f\x8b", ArchiveFormat.TAR_GZ),
    (b"\x28\xb5\x2f\xfd", ArchiveFormat.TAR_ZST),
    (b"PK\x03\x04", ArchiveFormat.ZIP),
    (b"PK\x05\x06", ArchiveFormat.ZIP),  # an empty zip
)


def _zstd_errors() -> tuple[type[BaseException], ...]:
    if sys.version_info >= (3, 14):
        from compression import zstd

        return (zstd.ZstdError,)
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


ARCHIVE_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    lzma.LZMAError,
    zlib.error,
    EOFError,
    OSError,
    *_zstd_errors(),
)
"""What reading a damaged or truncated archive may raise."""


def detect_format(path: Path) -> ArchiveFormat:
    """The format of the archive at ``path``, from its leading bytes (not its name)."""
    with path.open("rb") as stream:
        head = stream.read(8)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    raise DeployError(f"{path}: not a tar.xz, tar.gz, tar.zst or zip archive")


def _zstd_reader(raw: IO[bytes]) -> Any:
    if sys.version_info >= (3, 14):
        from compression import zstd

        return zstd.ZstdFile(raw, "r")
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)


@contextmanager
def open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a tar archive of any supported compression for reading, as a context manager.

    tar.xz and tar.gz open with random access; tar.zst opens as a stream, so iterate it once, in
    order (``for member in tar`` and ``tar.extractall`` work for every format). A zip archive
    raises DeployError: read it with :func:`read_archive_members` or :mod:`zipfile`.
    """
    fmt = detect_format(path)
    if fmt is ArchiveFormat.ZIP:
        raise DeployError(f"{path}: a zip archive is not a tar archive")
    if fmt is not ArchiveFormat.TAR_ZST:
        mode: Literal["r:xz", "r:gz"] = "r:xz" if fmt is ArchiveFormat.TAR_XZ else "r:gz"
        with tarfile.open(path, mode) as tar:
            yield tar
        return
    with (
        path.open("rb") as raw,
        _zstd_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        yield tar


def _tar_kind(info: tarfile.TarInfo) -> MemberKind:
    if info.issparse():
        return "sparse"
    if info.isdir():
        return "dir"
    if info.isreg():
        return "file"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        return "device"
    return "fifo" if info.isfifo() else "other"


def _tar_member(info: tarfile.TarInfo) -> ArchiveMember:
    return ArchiveMember(
        name=info.name.rstrip("/"),
        kind=_tar_kind(info),
        mode=info.mode,
        mtime=int(info.mtime),
        uid=info.uid,
        gid=info.gid,
        uname=info.uname,
        gname=info.gname,
        size=info.size,
        linkname=info.linkname,
    )


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> ArchiveMember:
    mode = info.external_attr >> 16
    kind: MemberKind = "file"
    linkname = ""
    if info.is_dir():
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
        linkname = archive.read(info).decode("utf-8")
    elif mode and not stat.S_ISREG(mode):
        kind = "other"
    return ArchiveMember(
        name=info.filename.rstrip("/"),
        kind=kind,
        mode=stat.S_IMODE(mode),
        mtime=calendar.timegm((*info.date_time, 0, 0, 0)),  # written as UTC wall-clock time
        uid=0,
        gid=0,
        uname="",
        gname="",
        size=info.file_size,
        linkname=linkname,
    )


def read_archive_members(path: Path) -> list[ArchiveMember]:
    """Every entry of the archive at ``path``, in stored order (any supported format)."""
    if detect_format(path) is ArchiveFormat.ZIP:
        with zipfile.ZipFile(path) as archive:
            return [_zip_member(archive, info) for info in archive.infolist()]
    with open_archive(path) as tar:
        return [_tar_member(info) for info in tar]
