"""Putting files into and out of the cache: reflinks, hard links or copies, and relocation.

Files are placed by reflink where the filesystem can (a copy-on-write clone: nothing shared),
else by hard link (same device), else by copy. A hard-linked file is shared between the cache and
every environment restored from it, so files that venvstacks or Python rewrite after installing
(`pyvenv.cfg`, `sitecustomize.py`, the layer config, `bin/python*`) are always copied, and every
other write venvstacks makes into an environment replaces files rather than writing through them.

Restoring into another build folder rewrites the absolute paths recorded in the entry's manifest
(files found holding one when the entry was stored, and absolute symlinks under them). A binary
file holding such a path cannot be rewritten safely: such an entry is only restored where it was
built.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from venvstacks.cache.manifest import ManifestEntry, Relocation

__all__ = ["RestoreFailed", "copy_file", "place_file", "restore_tree"]

_FICLONE = 0x40049409  # Linux ioctl: clone a file's extents (btrfs, XFS, bcachefs, ...)
_NO_REFLINK: set[tuple[int, int]] = set()
_LINK_FAILURES = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


class RestoreFailed(Exception):
    """An entry could not be restored (pruned meanwhile, damaged, or not relocatable)."""


def _reflink(src: Path, dst: Path) -> bool:
    """Clone `src` to a new file `dst` if the filesystem supports it; False otherwise."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    devices = (src.stat().st_dev, dst.parent.stat().st_dev)
    if devices in _NO_REFLINK:
        return False
    with src.open("rb") as source, dst.open("xb") as target:
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
        except OSError:
            _NO_REFLINK.add(devices)
            failed = True
        else:
            failed = False
    if failed:
        dst.unlink()
        return False
    shutil.copystat(src, dst)
    return True


def copy_file(src: Path, dst: Path) -> None:
    """A file of its own at `dst` with `src`'s content, mode and times (reflinked if possible)."""
    if not _reflink(src, dst):
        shutil.copy2(src, dst)


def place_file(src: Path, dst: Path) -> None:
    """`src` at `dst` as cheaply as possible: reflink, else hard link, else copy."""
    if _reflink(src, dst):
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in _LINK_FAILURES:
            raise
        shutil.copy2(src, dst)


def _copy_checked(src: Path, dst: Path, entry: ManifestEntry, relocation: Relocation) -> None:
    """Copy one file, checking its hash against the manifest and rewriting recorded paths."""
    data = src.read_bytes()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != entry.sha256:
        raise RestoreFailed(f"{entry.path} does not match its recorded hash")
    if entry.relocate:
        data = relocation.apply_bytes(data)
    dst.write_bytes(data)
    dst.chmod(entry.mode)
    os.utime(dst, ns=(entry.mtime_ns, entry.mtime_ns))


def restore_tree(
    tree: Path,
    entries: Sequence[ManifestEntry],
    dest: Path,
    relocation: Relocation,
    always_copy: Callable[[str], bool] = lambda path: False,
) -> None:
    """Recreate the cached `tree` at `dest` (which must not exist) as `entries` describe it."""
    moved = not relocation.identity
    if moved and any(e.relocate and e.binary for e in entries):
        raise RestoreFailed("a binary file holds the path it was built at")
    try:
        dest.mkdir(parents=True)
        for entry in entries:
            target = dest / entry.path
            if entry.kind == "d":
                target.mkdir()
            elif entry.kind == "l":
                target.symlink_to(relocation.apply_link(entry.target))
            elif entry.relocate or always_copy(entry.path):
                _copy_checked(tree / entry.path, target, entry, relocation)
            else:
                place_file(tree / entry.path, target)
        for entry in reversed(entries):
            if entry.kind == "d":
                (dest / entry.path).chmod(entry.mode)
    except OSError as exc:
        raise RestoreFailed(str(exc)) from exc
