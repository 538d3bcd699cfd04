"""Content hashes in venvstacks' ``sha256:<hex>`` notation (strings, bytes and files).

``hash_strings`` and ``hash_bytes`` are pure; ``hash_file`` only reads the file it is given.
The ``sha256:`` prefix and the "concatenate with no separators" rule match the lock metadata
written by venvstacks 0.8.0, so existing ``pylock.*.meta.json`` files stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["HASH_ALGORITHM", "hash_bytes", "hash_file", "hash_strings"]

HASH_ALGORITHM = "sha256"
_CHUNK_SIZE = 1 << 20


def _format(digest: str) -> str:
    return f"{HASH_ALGORITHM}:{digest}"


def hash_strings(items: Iterable[str]) -> str:
    """Hash the UTF-8 encoding of ``items`` concatenated without separators.

    The caller decides the order (sort first when the order is not meaningful). Because there
    are no separators, ``["ab", "c"]`` and ``["a", "bc"]`` hash the same: callers build items
    that carry their own delimiters (``key=value``, ``name==version``).
    """
    hasher = hashlib.sha256()
    for item in items:
        hasher.update(item.encode("utf-8"))
    return _format(hasher.hexdigest())


def hash_bytes(data: bytes) -> str:
    """Hash a byte string."""
    return _format(hashlib.sha256(data).hexdigest())


def hash_file(path: Path | str) -> str:
    """Hash the content of the file at ``path`` (read in chunks, never all at once)."""
    hasher = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_SIZE), b""):
            hasher.update(chunk)
    return _format(hasher.hexdigest())
