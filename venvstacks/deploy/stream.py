"""Extracting a tar layer archive in one pass: hash, decompress, check and write as bytes arrive.

The archive file is read once. Every byte read goes through SHA-256 (and a byte count) on its way
to the decompressor: the system `xz`/`zstd`/`gzip` in a separate process when it is on PATH (so
decompression runs on another core, beside the tar parsing and writing), else Python's own. The
tar stream is read in order; each member is checked (`extract.check_member_in_stream`) before it
is written, the declared sizes are summed against the expansion limit and the free space as they
come, and the digest and size are compared with the published ones once the file has been read to
its end. The caller extracts into a scratch folder and renames it into place only when all of
that passed, so a rejected, damaged or substituted archive leaves nothing that looks deployed.
Memory stays bounded whatever the layer size: nothing is held beyond a pipe buffer and one block.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from venvstacks.errors import DeployError
from venvstacks.publish.archive import ArchiveFormat, _tar_member, _zstd_reader

__all__ = ["Digest", "StreamLimits", "stream_extract"]

_BLOCK = 1 << 20
_DRAIN_LIMIT = 1 << 20  # bytes read past the tar end marker to let the decompressor finish
_COMMANDS: dict[ArchiveFormat, tuple[str, ...]] = {
    ArchiveFormat.TAR_XZ: ("xz", "-dcq", "-T0"),
    ArchiveFormat.TAR_ZST: ("zstd", "-dcq"),
    ArchiveFormat.TAR_GZ: ("gzip", "-dc"),
}


@dataclass
class Digest:
    """The SHA-256 and size of everything read from the archive file."""

    sha256: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def update(self, block: bytes) -> None:
        self.sha256.update(block)
        self.size += len(block)


@dataclass(frozen=True)
class StreamLimits:
    """What a member may not exceed: the expansion limit and the free space (bytes)."""

    expansion: int
    free: int


class _HashingReader:
    """A read-only file object over the archive that hashes whatever is read through it."""

    def __init__(self, raw: IO[bytes], digest: Digest) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        block = self._raw.read(size if size is not None and size >= 0 else _BLOCK)
        self._digest.update(block)
        return block

    def readinto(self, buffer: Any) -> int:
        block = self.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)

    def finish(self) -> None:
        """Hash the rest of the file (after the tar end marker, or after an abort)."""
        while self.read(_BLOCK):
            pass

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


def decompressor_command(fmt: ArchiveFormat) -> list[str] | None:
    """The system decompressor for ``fmt`` when it is on PATH (None: use Python's)."""
    command = _COMMANDS.get(fmt)
    program = shutil.which(command[0]) if command else None
    return [program, *command[1:]] if command and program else None


@contextlib.contextmanager
def _external(archive: Path, command: list[str], digest: Digest) -> Iterator[IO[bytes]]:
    """The decompressed stream from ``command``, fed the archive (hashed) by a thread."""
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors: list[BaseException] = []
    aborted = threading.Event()

    def feed() -> None:
        stdin = proc.stdin
        assert stdin is not None
        try:
            with archive.open("rb") as raw:
                reader = _HashingReader(raw, digest)
                while not aborted.is_set() and (block := reader.read(_BLOCK)):
                    if stdin is not None:
                        try:
                            stdin.write(block)
                        except (BrokenPipeError, ValueError):
                            stdin = None  # the reader stopped: hash the rest only
        except OSError as exc:
            errors.append(exc)
        finally:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()  # type: ignore[union-attr]

    feeder = threading.Thread(target=feed, name=f"hash {archive.name}", daemon=True)
    feeder.start()
    finished = at_end = False
    try:
        yield proc.stdout
        at_end = len(proc.stdout.read(_DRAIN_LIMIT)) < _DRAIN_LIMIT
        finished = True
    finally:
        if not finished:
            aborted.set()
        if not at_end:  # refused, failed, or more bytes after the tar end than ever written
            with contextlib.suppress(OSError):
                proc.kill()
        proc.stdout.close()
        stderr = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        code = proc.wait()
        feeder.join()
    if errors:
        raise errors[0]
    if at_end and code != 0:
        raise DeployError(f"{archive}: cannot read archive: {stderr or f'{command[0]} failed'}")


def _decompressing(reader: _HashingReader, fmt: ArchiveFormat) -> Any:
    source: Any = reader
    if fmt is ArchiveFormat.TAR_XZ:
        return lzma.LZMAFile(source)
    if fmt is ArchiveFormat.TAR_GZ:
        return gzip.GzipFile(fileobj=source, mode="rb")
    return _zstd_reader(source)


@contextlib.contextmanager
def _internal(archive: Path, fmt: ArchiveFormat, digest: Digest) -> Iterator[IO[bytes]]:
    """The decompressed stream from Python's own decompressors, hashing as it reads."""
    with archive.open("rb") as raw:
        reader = _HashingReader(raw, digest)
        opened = _decompressing(reader, fmt)
        with opened as stream:
            yield stream
            stream.read(_DRAIN_LIMIT)
        reader.finish()


def stream_extract(
    archive: Path,
    fmt: ArchiveFormat,
    scratch: Path,
    check: Callable[[Any], None],
    extract_filter: Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None] | None,
    *,
    external: bool = True,
) -> Digest:
    """Extract the tar ``archive`` into ``scratch`` in one pass; the digest of the file read.

    ``check`` is called with each member (an ``ArchiveMember``) before it is written and raises
    to refuse it. Decompression and read errors propagate (``ARCHIVE_READ_ERRORS`` or a
    DeployError naming the archive).
    """
    digest = Digest()
    command = decompressor_command(fmt) if external else None
    opened = _external(archive, command, digest) if command else _internal(archive, fmt, digest)
    with opened as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.errorlevel = 2
        for info in tar:
            check(_tar_member(info))
            if extract_filter is None:
                tar.extract(info, scratch, set_attrs=True)  # checked just above
            else:
                tar.extract(info, scratch, set_attrs=True, filter=extract_filter)
    return digest
