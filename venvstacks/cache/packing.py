"""A cache entry's tree as one blob for the remote cache: a deterministic, zstd-compressed tar,
and its verified unpacking (every member checked against the entry's manifest while it streams).

Packing follows the manifest: its items in its order, owner 0, times 0 (the manifest holds the
real modification times, set again when unpacking), so one entry always packs to the same
bytes. Unpacking accepts only what the manifest describes: an unknown, repeated or out-of-order
member, another type, size or symlink target, a file whose sha256 differs, an item under
anything but a folder, or a missing item fails it, and the caller throws the folder away.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from venvstacks.cache.manifest import ManifestEntry

__all__ = ["TREE_MEDIA_TYPE", "UNPACK_ERRORS", "PackError", "pack_tree", "unpack_tree"]

TREE_MEDIA_TYPE = "application/vnd.venvstacks.cache.tree.v1.tar+zstd"
ZSTD_LEVEL = 3
_CHUNK = 1 << 20


class PackError(ValueError):
    """A tree does not match its manifest (while packing or unpacking)."""


def _zstd_errors() -> tuple[type[BaseException], ...]:
    if sys.version_info >= (3, 14):
        from compression import zstd

        return (zstd.ZstdError,)
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        return ()
    return (zstandard.ZstdError,)


UNPACK_ERRORS: tuple[type[BaseException], ...] = (
    PackError,
    tarfile.TarError,
    EOFError,
    OSError,
    *_zstd_errors(),
)
"""What packing or unpacking a damaged, truncated or mismatching tree may raise."""


class _HashingWriter:
    """A sink that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.hasher.hexdigest()}"


class _HashingReader:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        self.size += len(data)
        return data

    @property
    def digest(self) -> str:
        return f"sha256:{self.hasher.hexdigest()}"


@contextlib.contextmanager
def _compressing(sink: Any) -> Iterator[Any]:
    if sys.version_info >= (3, 14):
        from compression import zstd

        options = {zstd.CompressionParameter.nb_workers: min(os.cpu_count() or 1, 4)}
        with zstd.ZstdFile(sink, "w", level=ZSTD_LEVEL, options=options) as out:
            yield out
        return
    import zstandard

    threads = min(os.cpu_count() or 1, 4)  # multi-threaded mode: the same bytes for any count
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads, write_checksum=True)
    with compressor.stream_writer(sink, closefd=False) as out:
        yield out


@contextlib.contextmanager
def _decompressing(raw: IO[bytes]) -> Iterator[Any]:
    if sys.version_info >= (3, 14):
        from compression import zstd

        with zstd.ZstdFile(raw, "r") as stream:
            yield stream
        return
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(raw, closefd=False) as stream:
        yield stream


def _info(entry: ManifestEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "d":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "l":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


def pack_tree(tree: Path, entries: Sequence[ManifestEntry], dest: Path) -> tuple[str, int]:
    """Write `tree` as `entries` describe it to the new file `dest`: its (digest, size).

    Each file is hashed as it is read; one that no longer matches the manifest raises PackError.
    """
    with dest.open("xb") as raw:
        sink = _HashingWriter(raw)
        with (
            _compressing(sink) as compressed,
            tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for entry in entries:
                info = _info(entry)
                if entry.kind != "f":
                    tar.addfile(info)
                    continue
                with (tree / entry.path).open("rb") as source:
                    reader = _HashingReader(source)
                    tar.addfile(info, reader)
                if reader.digest != entry.sha256 or reader.size != entry.size:
                    raise PackError(f"{entry.path} changed since it was cached")
        raw.flush()
    return sink.digest, sink.size


def check_layout(entries: Sequence[ManifestEntry]) -> None:
    """Every item's parent is the top or a folder listed before it (nothing under a symlink)."""
    kinds: dict[str, str] = {}
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        if parent and kinds.get(parent) != "d":
            raise PackError(f"{entry.path} is not inside a folder listed before it")
        if entry.path in kinds:
            raise PackError(f"{entry.path} is listed twice")
        kinds[entry.path] = entry.kind


def _write_member(stream: IO[bytes], target: Path, entry: ManifestEntry) -> None:
    hasher = hashlib.sha256()
    size = 0
    with target.open("xb") as out:
        while block := stream.read(_CHUNK):
            hasher.update(block)
            size += len(block)
            out.write(block)
    if size != entry.size or f"sha256:{hasher.hexdigest()}" != entry.sha256:
        raise PackError(f"{entry.path} does not match its recorded size and sha256")
    target.chmod(entry.mode)
    os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))


def _check_member(member: tarfile.TarInfo, entry: ManifestEntry) -> None:
    if entry.kind == "d" and not member.isdir():
        raise PackError(f"{entry.path} should be a folder")
    if entry.kind == "l" and (not member.issym() or member.linkname != entry.target):
        raise PackError(f"{entry.path} should be a symlink to {entry.target}")
    if entry.kind == "f" and (not member.isreg() or member.size != entry.size):
        raise PackError(f"{entry.path} should be a file of {entry.size} bytes")


def unpack_tree(blob: Path, entries: Sequence[ManifestEntry], dest: Path) -> None:
    """Recreate at `dest` (which must not exist) the tree `blob` holds, exactly as `entries`
    describe it (modes and modification times included); PackError on any difference."""
    check_layout(entries)
    expected = {entry.path: entry for entry in entries}
    seen: set[str] = set()
    dest.mkdir()
    with (
        blob.open("rb") as raw,
        _decompressing(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            entry = expected.get(member.name)
            if entry is None or member.name in seen:
                raise PackError(f"unexpected member {member.name!r}")
            parent = member.name.rpartition("/")[0]
            if parent and parent not in seen:
                raise PackError(f"{member.name} comes before its folder")
            seen.add(member.name)
            _check_member(member, entry)
            target = dest / entry.path
            if entry.kind == "d":
                target.mkdir(mode=0o700)
            elif entry.kind == "l":
                target.symlink_to(entry.target)
            else:
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - a regular member always has a body
                    raise PackError(f"{entry.path} has no content")
                _write_member(source, target, entry)
    missing = [path for path in expected if path not in seen]
    if missing:
        raise PackError(f"{len(missing)} item(s) missing, first {missing[0]}")
    for entry in reversed(entries):
        if entry.kind == "d":
            (dest / entry.path).chmod(entry.mode | 0o700)
