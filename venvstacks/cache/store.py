"""The layer cache on disk: content-addressed entries, atomic inserts, checked look-ups, LRU pruning.

    <cache dir>/v1/entries/<kind>/<64 hex>/manifest.json   what the entry holds (written last)
                                          /tree/...         the files themselves
                                          /used             touched on every hit (LRU order)
    <cache dir>/v1/tmp/                                     entries being written
    <cache dir>/v1/trash/                                   entries being deleted

An entry is written under `tmp/` and renamed into place whole, so readers never see half an
entry; when two builds store the same digest at once, the first rename wins and the other copy is
dropped. An entry found damaged on look-up (a file truncated, written in place or missing) is
moved to `trash/` and reported as a miss. Pruning renames its victims to `trash/` before deleting
them, so a build restoring from a pruned entry fails that restore cleanly and builds instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from venvstacks.cache.manifest import ManifestEntry, scan_tree, verify_tree
from venvstacks.cache.restore import copy_file, place_file
from venvstacks.errors import StackError
from venvstacks.paths import CACHE_DIR_ENV, default_cache_dir

if TYPE_CHECKING:
    from venvstacks.cache.remote import RemoteCache

__all__ = [
    "CACHE_DIR_ENV",
    "CacheEntry",
    "CacheError",
    "LayerCache",
    "PruneResult",
    "default_cache_dir",
]

_log = logging.getLogger(__name__)
STORE_VERSION = "v1"
MANIFEST_FORMAT = "venvstacks-cache-entry-1"
KINDS = ("lock", "env")
_STALE_TMP_SECONDS = 24 * 3600


class CacheError(StackError):
    """The layer cache cannot be used as asked (bad digest, unwritable folder, bad size)."""


def _hex(digest: str) -> str:
    value = digest.removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise CacheError(f"not a sha256 digest: {digest!r}")
    return value


@dataclass(frozen=True)
class CacheEntry:
    """One stored result: where it is, what it holds, and what it was built from."""

    kind: str
    digest: str
    folder: Path
    manifest: Mapping[str, Any]

    @property
    def tree(self) -> Path:
        return self.folder / "tree"

    @property
    def layer(self) -> str:
        return str(self.manifest.get("layer", "?"))

    @property
    def size(self) -> int:
        return int(self.manifest.get("size", 0))

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def last_used(self) -> float:
        try:
            return (self.folder / "used").stat().st_mtime
        except OSError:
            return 0.0

    @property
    def entries(self) -> list[ManifestEntry]:
        return [ManifestEntry.from_json(item) for item in self.manifest.get("entries", [])]

    @property
    def origin(self) -> dict[str, list[str]]:
        data = self.manifest.get("origin", {})
        return {str(k): [str(p) for p in v] for k, v in data.items()}


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    kept: int
    freed: int
    remaining: int


class LayerCache:
    """A content-addressed store of lock results and built environments."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # A `cache.remote.RemoteCache` that local misses fall back to (`build --remote-cache`).
        self.remote: RemoteCache | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> LayerCache:
        return cls(default_cache_dir(environ))

    @property
    def base(self) -> Path:
        return self.root / STORE_VERSION

    def _folder(self, kind: str, digest: str) -> Path:
        if kind not in KINDS:
            raise CacheError(f"unknown cache entry kind {kind!r}")
        return self.base / "entries" / kind / _hex(digest)

    # --- reading -----------------------------------------------------------------------------

    def _load(self, kind: str, folder: Path) -> CacheEntry | None:
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            return None
        return CacheEntry(kind, f"sha256:{folder.name}", folder, manifest)

    def lookup(self, kind: str, digest: str) -> CacheEntry | None:
        """The verified entry for `digest`, marked as used; None on a miss or a damaged entry."""
        folder = self._folder(kind, digest)
        entry = self._load(kind, folder)
        if entry is None:
            if folder.exists():
                self._discard(folder, "its manifest is missing or unreadable")
            return None
        try:
            problem = verify_tree(entry.tree, entry.entries)
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            self._discard(folder, problem)
            return None
        self.touch(entry)
        return entry

    def has(self, kind: str, digest: str) -> bool:
        """Whether an entry for `digest` is stored (not verified: one `stat`)."""
        return (self._folder(kind, digest) / "manifest.json").is_file()

    def touch(self, entry: CacheEntry) -> None:
        with contextlib.suppress(OSError):
            (entry.folder / "used").touch()

    def entries(self, kind: str | None = None) -> list[CacheEntry]:
        """Every complete entry, least recently used first."""
        found: list[CacheEntry] = []
        for each in (kind,) if kind else KINDS:
            top = self.base / "entries" / each
            if not top.is_dir():
                continue
            for folder in top.iterdir():
                entry = self._load(each, folder)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: (e.last_used, e.digest))

    def find(self, prefix: str) -> CacheEntry:
        """The entry whose digest starts with `prefix` (with or without `sha256:`)."""
        wanted = prefix.removeprefix("sha256:").lower()
        if len(wanted) < 4:
            raise CacheError(f"digest prefix {prefix!r} is too short (give at least 4 hex digits)")
        matches = [e for e in self.entries() if e.digest.removeprefix("sha256:").startswith(wanted)]
        if not matches:
            raise CacheError(f"no cache entry matches {prefix!r} in {self.root}")
        if len({e.digest for e in matches}) > 1:
            raise CacheError(f"{prefix!r} matches {len(matches)} cache entries; give more digits")
        return matches[0]

    # --- writing -----------------------------------------------------------------------------

    def insert(
        self,
        kind: str,
        digest: str,
        source: Path,
        *,
        layer: str,
        inputs: Mapping[str, Any],
        origin: Mapping[str, Sequence[str]] | None = None,
        always_copy: Callable[[str], bool] = lambda path: False,
    ) -> CacheEntry | None:
        """Store a copy of the tree `source` under `digest`; return the entry now in the cache.

        Files are reflinked, hard-linked or copied (`always_copy(path)`: copied, never linked);
        `origin` names the absolute paths the tree was built at, searched for in its files.
        Returns None if the cache cannot be written (the build goes on without it).
        """
        final = self._folder(kind, digest)
        if final.is_dir() and (final / "manifest.json").is_file():
            return self._load(kind, final)
        origin = {k: list(v) for k, v in (origin or {}).items()}
        needles = sorted({p for paths in origin.values() for p in paths})
        try:
            with self._temporary(kind) as tmp:
                entries = scan_tree(source, needles)
                _copy_tree(source, tmp / "tree", entries, always_copy)
                # Files are scanned before they are placed: check that they did not change since.
                problem = verify_tree(tmp / "tree", entries)
                if problem is not None:
                    _log.info("not caching %s: %s", layer, problem)
                    return None
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "kind": kind,
                    "digest": f"sha256:{_hex(digest)}",
                    "layer": layer,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "inputs": dict(inputs),
                    "origin": origin,
                    "size": sum(e.size for e in entries),
                    "files": sum(1 for e in entries if e.kind == "f"),
                    "entries": [e.to_json() for e in entries],
                }
                self._commit(tmp, final, manifest)
        except OSError as exc:
            _log.warning(
                "warning: could not store %s in the layer cache %s: %s", layer, self.root, exc
            )
            return None
        return self._load(kind, final)

    def adopt(
        self, kind: str, digest: str, fill: Callable[[Path], Mapping[str, Any]]
    ) -> CacheEntry:
        """Store an entry made elsewhere (the remote cache): `fill(folder)` writes its files
        under `folder / "tree"` and returns its manifest, which must describe exactly them.

        The entry appears whole or not at all; what `fill` raises propagates (nothing is kept),
        and a tree that does not match its manifest raises `CacheError`.
        """
        final = self._folder(kind, digest)
        with self._temporary(kind) as tmp:
            manifest = dict(fill(tmp))
            if (
                manifest.get("format") != MANIFEST_FORMAT
                or manifest.get("kind") != kind
                or manifest.get("digest") != f"sha256:{_hex(digest)}"
            ):
                raise CacheError(f"the {kind} entry for {digest} describes something else")
            try:
                entries = [ManifestEntry.from_json(e) for e in manifest.get("entries", [])]
            except (KeyError, TypeError, ValueError) as exc:
                raise CacheError(
                    f"the {kind} entry for {digest} has a bad manifest: {exc}"
                ) from None
            problem = verify_tree(tmp / "tree", entries)
            if problem is not None:
                raise CacheError(
                    f"the {kind} entry for {digest} does not match its manifest: {problem}"
                )
            # Sizes count what is on disk here, whatever the manifest said (pruning uses them).
            manifest["size"] = sum(e.size for e in entries)
            manifest["files"] = sum(1 for e in entries if e.kind == "f")
            self._commit(tmp, final, manifest)
        entry = self._load(kind, final)
        if entry is None:
            raise CacheError(f"the {kind} entry for {digest} could not be stored in {self.root}")
        return entry

    def _commit(self, tmp: Path, final: Path, manifest: Mapping[str, Any]) -> None:
        """Write the manifest last, then rename the finished entry into place (first one wins)."""
        (tmp / "used").touch()
        _write_json(tmp / "manifest.json", manifest)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            _log.debug("%s was stored by another build meanwhile", final.name)

    @contextlib.contextmanager
    def _temporary(self, kind: str) -> Iterator[Path]:
        tmp_root = self.base / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{uuid.uuid4().hex}"
        lock = (tmp_root / f"{name}.lock").open("w")
        try:
            _flock(lock, exclusive=True, wait=True)
            tmp = tmp_root / name
            tmp.mkdir()
            try:
                yield tmp
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            with contextlib.suppress(OSError):
                (tmp_root / f"{name}.lock").unlink()
            lock.close()

    def _discard(self, folder: Path, reason: str) -> None:
        _log.warning("warning: layer cache entry %s is damaged (%s); it is removed", folder, reason)
        self._remove(folder)

    def _remove(self, folder: Path) -> bool:
        trash = self.base / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        doomed = trash / f"{folder.name}-{uuid.uuid4().hex[:8]}"
        try:
            folder.rename(doomed)
        except OSError:
            return False  # already gone: another build or prune removed it
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # --- pruning -----------------------------------------------------------------------------

    def prune(
        self, max_size: int | None = None, older_than_days: float | None = None
    ) -> PruneResult:
        """Remove least recently used entries until at most `max_size` bytes remain, and/or
        entries not used for `older_than_days`. Safe while builds use the cache."""
        if max_size is None and older_than_days is None:
            raise CacheError("say what to prune: --max-size SIZE and/or --older-than DAYS")
        self.base.mkdir(parents=True, exist_ok=True)
        with (self.base / "prune.lock").open("w") as lock:
            _flock(lock, exclusive=True, wait=True)
            self._sweep_leftovers()
            entries = self.entries()
            doomed, remaining = _choose_victims(entries, max_size, older_than_days, time.time())
            removed = tuple(e for e in doomed if self._remove(e.folder))
        total = sum(e.size for e in remaining)
        return PruneResult(removed, len(remaining), sum(e.size for e in removed), total)

    def _sweep_leftovers(self) -> None:
        """Delete what killed inserts and deletions left behind (never an insert in progress)."""
        trash = self.base / "trash"
        if trash.is_dir():
            for folder in trash.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
        tmp_root = self.base / "tmp"
        if not tmp_root.is_dir():
            return
        for folder in tmp_root.iterdir():
            if not folder.is_dir():
                continue
            lock_path = tmp_root / f"{folder.name}.lock"
            if lock_path.exists():
                with lock_path.open("a") as handle:
                    if not _flock(handle, exclusive=True, wait=False):
                        continue  # an insert is writing it
                    shutil.rmtree(folder, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
            elif time.time() - folder.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)

    def usage(self) -> tuple[int, int]:
        """(entry count, total bytes)."""
        entries = self.entries()
        return len(entries), sum(e.size for e in entries)


def _choose_victims(
    entries: Sequence[CacheEntry], max_size: int | None, older_than_days: float | None, now: float
) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """(to remove, to keep), given entries least recently used first. Pure."""
    limit = now - older_than_days * 86400 if older_than_days is not None else None
    doomed = [e for e in entries if limit is not None and e.last_used < limit]
    remaining = [e for e in entries if not (limit is not None and e.last_used < limit)]
    total = sum(e.size for e in remaining)
    while max_size is not None and remaining and total > max_size:
        oldest = remaining.pop(0)
        doomed.append(oldest)
        total -= oldest.size
    return doomed, remaining


def _copy_tree(
    source: Path, dest: Path, entries: Sequence[ManifestEntry], always_copy: Callable[[str], bool]
) -> None:
    dest.mkdir()
    for entry in entries:
        target = dest / entry.path
        if entry.kind == "d":
            target.mkdir()
        elif entry.kind == "l":
            target.symlink_to(entry.target)
        elif always_copy(entry.path):
            copy_file(source / entry.path, target)
        else:
            place_file(source / entry.path, target)
    for entry in reversed(entries):
        if entry.kind == "d":
            (dest / entry.path).chmod(entry.mode | 0o700)


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"), sort_keys=True)
    Path(tmp).replace(path)


def _flock(handle: IO[str], *, exclusive: bool, wait: bool) -> bool:
    """Take an advisory lock on an open file; False if `wait` is False and it is held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no pruning locks, inserts stay atomic
        return True
    flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    if not wait:
        flags |= fcntl.LOCK_NB
    try:
        fcntl.flock(handle.fileno(), flags)
    except BlockingIOError:
        return False
    return True
