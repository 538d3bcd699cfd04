"""What a published archive is, without the code that writes or reads one: the formats, their
compression level ranges, file name suffixes, and the size and SHA-256 of a written archive.

Kept apart from `archive` so that deciding whether anything must be archived (every no-op build)
does not import tarfile, zipfile, zstandard and the xz writer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["LEVEL_RANGES", "ArchiveFormat", "ArchiveInfo", "archive_suffix", "sha256_file"]

LEVEL_RANGES = {"tar.xz": (0, 9), "tar.gz": (1, 9), "tar.zst": (1, 22), "zip": (0, 9)}
"""The compression levels each format accepts (inclusive)."""


class ArchiveFormat(StrEnum):
    """Supported archive formats; the value is the file suffix without its leading dot."""

    TAR_XZ = "tar.xz"
    TAR_GZ = "tar.gz"
    TAR_ZST = "tar.zst"
    ZIP = "zip"


def archive_suffix(fmt: ArchiveFormat) -> str:
    """The file name suffix for ``fmt``, such as ``.tar.xz``."""
    return f".{fmt.value}"


@dataclass(frozen=True)
class ArchiveInfo:
    """A written archive: where it is, its size in bytes and its SHA-256 (hex, no prefix)."""

    path: Path
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's content, as lowercase hex."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
