"""Folder manifests: what a built environment held when its task finished, re-checked by `lstat`.

A manifest lists every entry under a folder with its kind and `lstat` facts: directories with
their mode, files with mode, size and modification time, symlinks with their target. Checking a
folder walks it again (`os.scandir`, one `lstat` per entry, no file is read) and compares a
digest of the listing with the recorded one; the full listing is read only to say what differs.

Left out, because running a layer's Python legitimately changes them: `__pycache__` folders, the
modification times of directories (a new `__pycache__` changes its parent's), link counts and
change times (hard links shared with other copies come and go). Dot entries at the top of the
folder (uv's `.lock`) are not part of a layer and are left out too.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["check_folder", "describe_changes", "record_folder", "scan_folder"]

_FORMAT = 1
_SKIPPED = "__pycache__"
_SHOWN = 3  # differences named in a message; the rest are counted


def scan_folder(root: Path) -> list[tuple[str, str]]:
    """(relative POSIX path, signature) of every entry under `root`, in a stable order.

    Signatures: `d<mode>` for a directory, `f<mode>:<size>:<mtime ns>` for a file,
    `l<target>` for a symlink, `o<mode>` for anything else. Raises OSError when `root` is not a
    readable directory.
    """
    listing: list[tuple[str, str]] = []
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            found = sorted(entries, key=_name)
        for entry in found:
            name = entry.name
            if name == _SKIPPED or (not prefix and name.startswith(".")):
                continue
            rel = prefix + name
            info = entry.stat(follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISREG(mode):
                listing.append((rel, f"f{mode & 0o7777:o}:{info.st_size}:{info.st_mtime_ns}"))
            elif stat.S_ISDIR(mode):
                listing.append((rel, f"d{mode & 0o7777:o}"))
                pending.append((rel + "/", entry.path))
            elif stat.S_ISLNK(mode):
                listing.append((rel, "l" + os.readlink(entry.path)))  # noqa: PTH115 (hot loop)
            else:
                listing.append((rel, f"o{mode:o}"))
    return listing


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _digest(listing: Iterable[tuple[str, str]]) -> str:
    text = "\n".join(f"{path}\0{signature}" for path, signature in listing)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def record_folder(root: Path, manifest: Path) -> str:
    """Write the manifest of `root` (atomically); return its digest."""
    listing = scan_folder(root)
    digest = _digest(listing)
    header = json.dumps({"format": _FORMAT, "digest": digest, "entries": len(listing)})
    body = json.dumps(listing, ensure_ascii=False, separators=(",", ":"))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{header}\n{body}\n", encoding="utf-8", errors="surrogateescape")
        tmp.replace(manifest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _read_header(manifest: Path) -> str | None:
    """The recorded digest, or None when there is no usable manifest."""
    try:
        with open(manifest, encoding="utf-8", errors="surrogateescape") as handle:
            header = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        return None
    digest = header.get("digest")
    return digest if isinstance(digest, str) else None


def _read_listing(manifest: Path) -> dict[str, str]:
    try:
        with open(manifest, encoding="utf-8", errors="surrogateescape") as handle:
            handle.readline()
            data = json.loads(handle.readline())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, list):
        return {}
    return {
        str(item[0]): str(item[1]) for item in data if isinstance(item, list) and len(item) == 2
    }


def check_folder(root: Path, manifest: Path) -> str | None:
    """None when `root` still matches its manifest, else what changed, in a few words."""
    recorded = _read_header(manifest)
    if recorded is None:
        return "not recorded" if not manifest.exists() else "its record is damaged"
    try:
        listing = scan_folder(root)
    except FileNotFoundError:
        return f"{root.name} missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if _digest(listing) == recorded:
        return None
    return describe_changes(_read_listing(manifest), dict(listing)) or "changed"


def _outermost(paths: Sequence[str]) -> list[str]:
    """Paths not inside another of `paths` (a removed folder is named, not its content)."""
    chosen: list[str] = []
    for path in sorted(paths):
        if chosen and path.startswith(chosen[-1] + "/"):
            continue
        chosen.append(path)
    return chosen


def _kind_change(before: str, after: str) -> str:
    if before[0] != after[0]:
        return "replaced"
    if before[0] == "l":
        return "link target changed"
    if before[0] == "f":
        old_mode, old_size, _ = before[1:].split(":")
        new_mode, new_size, _ = after[1:].split(":")
        if old_mode != new_mode and old_size == new_size:
            return "mode changed"
    if before[0] == "d":
        return "mode changed"
    return "modified"


def describe_changes(before: dict[str, str], after: dict[str, str]) -> str:
    """`bin/python missing, lib/x.py modified and 3 more` for two listings (path -> signature)."""
    missing = _outermost([p for p in before if p not in after])
    added = _outermost([p for p in after if p not in before])
    changed = sorted(p for p in before if p in after and before[p] != after[p])
    notes = (
        [f"{p} missing" for p in missing]
        + [f"{p} {_kind_change(before[p], after[p])}" for p in changed]
        + [f"{p} added" for p in added]
    )
    if not notes:
        return ""
    shown = ", ".join(notes[:_SHOWN])
    return shown if len(notes) <= _SHOWN else f"{shown} and {len(notes) - _SHOWN} more"
