"""What a cache entry holds: one record per file, folder and symlink, with sizes, times and hashes.

A manifest is written when an entry is stored and checked before it is restored. The check is
cheap (one `lstat` per entry): a file whose size or modification time differs from the manifest
was truncated or written in place, and the entry is not used. The sha256 of every file is
recorded too, and verified whenever a file is copied rather than linked.

While hashing, every file is also searched for the absolute paths the entry was built at (the
build folder and the spec folder), so that restoring it elsewhere can rewrite exactly those files.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ManifestEntry",
    "Relocation",
    "scan_tree",
    "verify_tree",
]

_CHUNK = 1 << 20
# Bytecode caches are derived, hold source paths, and are rewritten by whoever imports the code.
SKIPPED_NAMES = frozenset({"__pycache__"})


@dataclass(frozen=True)
class ManifestEntry:
    """One item of a cached tree. `kind` is "d" (folder), "f" (file) or "l" (symlink)."""

    path: str  # relative, with "/" separators
    kind: str
    mode: int = 0
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    target: str = ""  # symlinks only
    relocate: bool = False  # the file holds an absolute path of where it was built
    binary: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"p": self.path, "t": self.kind}
        if self.kind == "l":
            data["l"] = self.target
            return data
        data["m"] = self.mode
        if self.kind == "f":
            data.update(s=self.size, n=self.mtime_ns, h=self.sha256)
            if self.relocate:
                data["r"] = 2 if self.binary else 1
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManifestEntry:
        kind = str(data["t"])
        if kind not in ("d", "f", "l"):
            raise ValueError(f"unknown entry type {kind!r}")
        relocate = int(data.get("r", 0))
        return cls(
            path=_safe_relative(str(data["p"])),
            kind=kind,
            mode=int(data.get("m", 0)),
            size=int(data.get("s", 0)),
            mtime_ns=int(data.get("n", 0)),
            sha256=str(data.get("h", "")),
            target=str(data.get("l", "")),
            relocate=relocate > 0,
            binary=relocate == 2,
        )


def _safe_relative(path: str) -> str:
    """Refuse manifest paths that would restore outside the destination."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe path in manifest: {path!r}")
    return path


def _walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every item under `top` as (relative path, lstat), parents before children, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = top / rel if rel else top
        names = sorted((p.name for p in folder.iterdir()), reverse=True)
        for name in names:
            if name in SKIPPED_NAMES:
                continue
            child = f"{rel}/{name}" if rel else name
            info = os.lstat(top / child)
            if stat.S_ISDIR(info.st_mode):
                stack.append(child)
            yield child, info


def _hash_and_search(path: Path, needles: Sequence[bytes]) -> tuple[str, bool, bool]:
    """sha256 of a file, whether it contains one of `needles`, and whether it looks binary."""
    hasher = hashlib.sha256()
    pattern = re.compile(b"|".join(re.escape(n) for n in needles)) if needles else None
    overlap = max((len(n) for n in needles), default=1) - 1
    found = binary = False
    tail = b""
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
            binary = binary or b"\0" in chunk
            if pattern is not None and not found:
                window = tail + chunk
                found = pattern.search(window) is not None
                tail = window[-overlap:] if overlap else b""
    return f"sha256:{hasher.hexdigest()}", found, binary


def scan_tree(top: Path, needles: Sequence[str] = ()) -> list[ManifestEntry]:
    """Describe every folder, file and symlink under `top` (bytecode caches left out)."""
    encoded = [n.encode() for n in needles if n]
    entries: list[ManifestEntry] = []
    for rel, info in _walk(top):
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            entries.append(ManifestEntry(rel, "d", mode))
        elif stat.S_ISLNK(info.st_mode):
            entries.append(ManifestEntry(rel, "l", target=str((top / rel).readlink())))
        elif stat.S_ISREG(info.st_mode):
            digest, found, binary = _hash_and_search(top / rel, encoded)
            entries.append(
                ManifestEntry(
                    rel,
                    "f",
                    mode,
                    info.st_size,
                    info.st_mtime_ns,
                    digest,
                    relocate=found,
                    binary=found and binary,
                )
            )
        # Sockets, fifos and devices have no place in an environment: they are not cached.
    return entries


def verify_tree(top: Path, entries: Sequence[ManifestEntry]) -> str | None:
    """None if `top` still holds what `entries` describe; else the first difference found."""
    for entry in entries:
        try:
            info = os.lstat(top / entry.path)
        except OSError:
            return f"{entry.path} is missing"
        if entry.kind == "d" and not stat.S_ISDIR(info.st_mode):
            return f"{entry.path} is not a folder"
        if entry.kind == "l" and (
            not stat.S_ISLNK(info.st_mode) or str((top / entry.path).readlink()) != entry.target
        ):
            return f"{entry.path} is not the recorded symlink"
        if entry.kind == "f":
            if not stat.S_ISREG(info.st_mode):
                return f"{entry.path} is not a file"
            if info.st_size != entry.size:
                return f"{entry.path} changed size ({info.st_size}, recorded {entry.size})"
            if info.st_mtime_ns != entry.mtime_ns:
                return f"{entry.path} was modified after it was cached"
            if stat.S_IMODE(info.st_mode) != entry.mode:
                # A hard-linked copy shares its mode: a chmod in a build dir reaches the cache.
                return f"{entry.path} changed mode after it was cached"
    return None


@dataclass(frozen=True)
class Relocation:
    """Absolute paths an entry was built at, and what they become where it is restored."""

    mapping: tuple[tuple[str, str], ...]  # (old, new), any order

    @classmethod
    def between(cls, old: Sequence[str], new: Sequence[str]) -> Relocation:
        pairs = {o: n for o, n in zip(old, new, strict=True) if o}
        return cls(tuple(sorted(pairs.items(), key=lambda p: -len(p[0]))))

    @property
    def identity(self) -> bool:
        return all(old == new for old, new in self.mapping)

    def _pattern(self) -> re.Pattern[bytes] | None:
        moved = [old for old, new in self.mapping if old != new]
        if not moved:
            return None
        # Longest first, so that a build folder inside the spec folder maps as a whole.
        return re.compile(b"|".join(re.escape(m.encode()) for m in moved))

    def apply_bytes(self, data: bytes) -> bytes:
        pattern = self._pattern()
        if pattern is None:
            return data
        table = {old.encode(): new.encode() for old, new in self.mapping}
        return pattern.sub(lambda m: table[m.group(0)], data)

    def apply_link(self, target: str) -> str:
        """A symlink target: absolute targets under an old path move with it."""
        if not target.startswith("/"):
            return target
        for old, new in self.mapping:
            if target == old or target.startswith(old.rstrip("/") + "/"):
                return new + target[len(old) :]
        return target
