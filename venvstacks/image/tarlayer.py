"""Deterministic image layer tarballs, and reading layers back as streams of tar members.

A layer holds one folder tree under a path prefix: every entry is owned by root (uid/gid 0, no
user or group names), has the clamp time as its mtime (or less), the mode 0o755 (folders,
executables) or 0o644 (other files), and entries are sorted by name, in PAX format. The tar
stream is hashed (the layer's `diff_id`) and compressed (gzip with a zero mtime and no file name,
or zstd), and the compressed bytes are hashed (the blob digest) in one pass, with bounded memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from venvstacks.image.media import LAYER_GZIP, LAYER_TAR, LAYER_ZSTD, Descriptor

__all__ = ["LAYER_FORMATS", "LayerBlob", "open_layer_stream", "write_layer"]

LAYER_FORMATS = {"gzip": LAYER_GZIP, "zstd": LAYER_ZSTD}
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its blob file, descriptor and uncompressed digest (`diff_id`)."""

    path: Path
    descriptor: Descriptor
    diff_id: str


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through to `sink`."""

    def __init__(self, sink: IO[bytes] | None) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@contextlib.contextmanager
def _compressor(layer_format: str, sink: Any, level: int | None) -> Iterator[Any]:
    if layer_format == "gzip":
        # No file name and a zero mtime in the gzip header: only the content counts.
        with gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=sink,
            mtime=0,
            compresslevel=GZIP_LEVEL if level is None else level,
        ) as gz:
            yield gz
    elif layer_format == "zstd":
        with _zstd_writer(sink, ZSTD_LEVEL if level is None else level) as zst:
            yield zst
    else:
        raise ValueError(f"unknown layer format {layer_format!r}")


def _zstd_writer(sink: Any, level: int) -> Any:
    # Multi-threaded mode even for one worker: the bytes do not depend on the worker count.
    threads = max(1, min(4, os.cpu_count() or 1))
    if sys.version_info >= (3, 14):
        from compression import zstd

        options = {zstd.CompressionParameter.nb_workers: threads}
        return zstd.ZstdFile(sink, "w", level=level, options=options)
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, threads=threads)
    return compressor.stream_writer(sink, closefd=False)


def _tarinfo(name: str, path: Path, clamp_mtime: int) -> tuple[tarfile.TarInfo, bool]:
    """The normalised tar header of one entry; True when it has file content."""
    status = path.lstat()
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = min(int(status.st_mtime), clamp_mtime)
    if stat.S_ISDIR(status.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, False
    if stat.S_ISLNK(status.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = path.readlink().as_posix()
        return info, False
    if stat.S_ISREG(status.st_mode):
        info.mode = 0o755 if status.st_mode & 0o111 else 0o644
        info.size = status.st_size
        return info, True
    raise ValueError(f"cannot put special file {path} in an image layer")


def _entries(root: Path, relative: PurePosixPath) -> Iterator[tuple[str, Path]]:
    """Every path under `root/relative` (itself first), as (layer name, path), sorted by name."""
    names: list[tuple[str, Path]] = [(relative.as_posix(), root / relative)]
    base = root / relative
    for folder, dirs, files in os.walk(base):
        rel = PurePosixPath(relative, Path(folder).relative_to(base).as_posix())
        for name in [*dirs, *files]:
            names.append(((rel / name).as_posix(), Path(folder) / name))
    names.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    yield from names


def write_layer(
    root: Path,
    parents: Sequence[PurePosixPath],
    tree: PurePosixPath,
    dest_dir: Path,
    *,
    layer_format: str,
    clamp_mtime: int,
    level: int | None = None,
) -> LayerBlob:
    """Write the layer holding `root/tree` (and the folders `parents`) into `dest_dir`.

    `parents` are written first as plain root-owned folders (e.g. `opt`, `opt/venvstacks`), so
    the layer unpacks on any base. The blob is a temporary file in `dest_dir`, named by nothing
    yet: the caller moves it into a store under its digest.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".layer-", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            compressed = _HashingWriter(out)
            with _compressor(layer_format, compressed, level) as stream:
                plain = _HashingWriter(stream)
                _write_tar(root, parents, tree, plain, clamp_mtime)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    descriptor = Descriptor(LAYER_FORMATS[layer_format], compressed.digest, compressed.size)
    return LayerBlob(Path(tmp), descriptor, plain.digest)


def _write_tar(
    root: Path,
    parents: Sequence[PurePosixPath],
    tree: PurePosixPath,
    stream: Any,
    clamp_mtime: int,
) -> None:
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for parent in parents:
            info = tarfile.TarInfo(parent.as_posix())
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, clamp_mtime
            info.uname = info.gname = ""
            tar.addfile(info)
        for name, path in _entries(root, tree):
            info, has_content = _tarinfo(name, path, clamp_mtime)
            if has_content:
                with path.open("rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)


@contextlib.contextmanager
def open_layer_stream(blob: IO[bytes], media_type: str) -> Iterator[tarfile.TarFile]:
    """A layer blob as a streaming tar reader (iterate it once, in order)."""
    if media_type.endswith(("+gzip", ".tar.gzip")):
        raw: Any = gzip.GzipFile(fileobj=blob, mode="rb")
    elif media_type.endswith("zstd"):
        raw = _zstd_reader(blob)
    elif media_type in (LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar"):
        raw = blob
    else:
        raise ValueError(f"unsupported layer media type {media_type}")
    with raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        yield tar


def _zstd_reader(raw: IO[bytes]) -> Any:
    if sys.version_info >= (3, 14):
        from compression import zstd

        return zstd.ZstdFile(raw, "r")
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
