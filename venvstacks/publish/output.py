"""The publish output folder: crash-consistent archive commits, the merged stack manifest, sweeping.

What a reader of the output folder may rely on at every instant, whatever was killed when:
every archive named by the stack manifest (``__venvstacks__/venvstacks[-<platform>].json``) or by
a layer's ``env_metadata/*.json`` exists with exactly the size and sha256 recorded there. It holds
because nothing named by metadata is ever changed in place:

1. a new archive is written to a locked ``.<name>.XXXX.partial`` file, flushed to disk;
2. if its final name is free (or holds the same bytes), it is renamed there; otherwise (the old
   archive of the same name is still named by metadata) it is renamed to a *transitional* name
   ``<stem>~<16 hex of its sha256><suffix>``, the layer's metadata and the manifest are switched
   to that name, and only then is the final name replaced (a hard link, renamed over it);
3. the layer's metadata, then the manifest, are rewritten (temporary file, fsync, rename) to name
   the final archive; the transitional file is removed last.

A kill leaves either the old state, or the transitional name in the metadata (still consistent);
the next publish finishes the switch and removes what no metadata names. Metadata and manifest
writes happen under an exclusive lock on the ``__venvstacks__`` folder, so parallel tasks (and
other processes publishing into the same folder) never interleave.

The stack manifest merges: it lists every layer of the stack that has current metadata in the
folder, not only the layers published by the last run (0.8.0 listed only those).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks.plan.layers import StackPlan
from venvstacks.plan.names import EnvName
from venvstacks.publish.crashpoints import crash_point
from venvstacks.publish.files import sweep_partials
from venvstacks.publish.formats import sha256_file

__all__ = [
    "CATEGORIES",
    "LayerOutput",
    "StatKey",
    "archive_intact",
    "commit_archive",
    "metadata_lock",
    "publish_metadata",
    "read_json",
    "render_manifest",
    "sweep_output",
    "transitional_name",
    "write_json",
]

_log = logging.getLogger(__name__)
CATEGORIES = ("runtimes", "frameworks", "applications")
_THREAD_LOCK = threading.RLock()
_TRANSITIONAL = re.compile(r"~[0-9a-f]{16}(?=\.)")
StatKey = tuple[int, int, int, int]
"""(size, mtime_ns, ctime_ns, inode) of a file: any write or rename changes it."""


def stat_key(path: Path) -> StatKey:
    info = path.stat()
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, ValueError):
        return False


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if _holds(path, text):  # a no-op publish: no write, no fsync
        return
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).chmod(0o644)
        Path(temp).replace(path)
    finally:
        Path(temp).unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextmanager
def metadata_lock(meta_dir: Path) -> Iterator[None]:
    """Exclusive use of a ``__venvstacks__`` folder (threads of this process and other processes)."""
    meta_dir.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK:
        try:
            import fcntl
        except ImportError:  # Windows: publishing needs a POSIX build host anyway
            yield
            return
        fd = os.open(meta_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def archive_intact(
    path: Path, size: object, sha256: object, known: Sequence[Any] | None = None
) -> StatKey | None:
    """The file's stat key when it holds exactly `size` bytes with this sha256, else None.

    ``known`` is a stat key recorded with its sha256 (``[*key, sha256]``) when the file was last
    hashed: when the file's stat key is unchanged, its content is, and it is not read again.
    """
    if not isinstance(size, int) or not isinstance(sha256, str):
        return None
    try:
        key = stat_key(path)
    except OSError:
        return None
    if key[0] != size:
        return None
    if known is not None and list(known) == [*key, sha256]:
        return key
    try:
        actual = sha256_file(path)
    except OSError:
        return None
    return key if actual == sha256 else None


def transitional_name(final: str, suffix: str, sha256: str) -> str:
    """``app-x~0123456789abcdef.tar.xz`` for ``app-x.tar.xz``: the name used during a switch."""
    return f"{final.removesuffix(suffix)}~{sha256[:16]}{suffix}"


def _archive_hash(meta: Mapping[str, Any]) -> str | None:
    hashes = meta.get("archive_hashes")
    value = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    return value if isinstance(value, str) else None


def _entry_present(output_dir: Path, meta: Mapping[str, Any], export: bool) -> bool:
    """A cheap check that what the layer's metadata names is there (size, for an archive)."""
    if export:
        return (output_dir / str(meta.get("install_target", ""))).is_dir()
    name = meta.get("archive_name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return False
    try:
        return (output_dir / name).stat().st_size == meta.get("archive_size")
    except OSError:
        return False


def render_manifest(
    plan: StackPlan,
    output_dir: Path,
    metadata_path: Callable[[EnvName], Path],
    export: bool,
    required: Sequence[EnvName] = (),
) -> dict[str, Any]:
    """The stack manifest from the layers' current metadata: every layer of the stack present.

    ``metadata_path(env)`` names a layer's metadata file. Layers in ``required`` must be present
    (a KeyError names the first missing one); others are listed when their metadata is valid and
    what it names is there.
    """
    layers: dict[str, list[Any]] = {category: [] for category in CATEGORIES}
    wanted = set(required)
    for layer in plan.enabled:
        env = layer.env_name
        meta = read_json(metadata_path(env))
        if meta is None or not _entry_present(output_dir, meta, export):
            if env in wanted:
                raise KeyError(env)
            continue
        layers[layer.kind.category].append(meta)
    return {"layers": layers}


@dataclass(frozen=True)
class LayerOutput:
    """One layer's place in an output folder: where its metadata and the manifest go."""

    plan: StackPlan
    env: EnvName
    output_dir: Path
    metadata_path: Callable[[EnvName], Path]
    manifest_path: Path
    export: bool = False

    @property
    def meta_dir(self) -> Path:
        return self.manifest_path.parent

    def write(self, meta: Mapping[str, Any]) -> None:
        """The layer's metadata, then the re-rendered manifest (call holding `metadata_lock`)."""
        write_json(self.metadata_path(self.env), meta)
        crash_point("layer-metadata-written")
        manifest = render_manifest(self.plan, self.output_dir, self.metadata_path, self.export)
        write_json(self.manifest_path, manifest)


def commit_archive(
    layer: LayerOutput,
    partial: Path,
    sha256: str,
    final: Path,
    suffix: str,
    result: Mapping[str, Any],
) -> None:
    """Put a written archive (``partial``, or an existing transitional file) in place as ``final``.

    ``result`` is the layer's new metadata naming ``final``. See the module docs for the order.
    """
    output_dir = final.parent
    meta_dir = layer.meta_dir
    with metadata_lock(meta_dir):
        crash_point("commit-locked")
        referenced = _referenced(meta_dir)
        if final.exists() and archive_intact(final, result["archive_size"], sha256) is not None:
            pass  # the same bytes are already there: keep that file
        elif partial.name in referenced:
            # Finishing a switch: the transitional file stays until no metadata names it.
            _replace_with_copy_of(partial, final)
            crash_point("final-replaced")
        elif final.name not in referenced:
            partial.replace(final)
            crash_point("archive-renamed")
        else:
            step = output_dir / transitional_name(final.name, suffix, sha256)
            if partial != step:
                partial.replace(step)
            _fsync_dir(output_dir)
            crash_point("transitional-renamed")
            layer.write({**result, "archive_name": step.name})
            crash_point("transitional-published")
            _replace_with_copy_of(step, final)
            crash_point("final-replaced")
        _fsync_dir(output_dir)
        layer.write(result)
        crash_point("final-published")
        _remove_unreferenced_transitional(meta_dir, output_dir)


def _replace_with_copy_of(source: Path, final: Path) -> None:
    """Make ``final`` hold ``source``'s bytes in one rename (a hard link where possible)."""
    fd, temp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    temp_path = Path(temp)
    try:
        temp_path.unlink()
        try:
            os.link(source, temp_path)
        except OSError:
            import shutil

            shutil.copyfile(source, temp_path)
            with temp_path.open("rb+") as handle:
                os.fsync(handle.fileno())
        temp_path.replace(final)
    finally:
        temp_path.unlink(missing_ok=True)


def publish_metadata(layer: LayerOutput, meta: Mapping[str, Any]) -> None:
    """Write one layer's metadata, then the manifest, under the folder's lock (no archive change)."""
    with metadata_lock(layer.meta_dir):
        layer.write(meta)


def _referenced(meta_dir: Path) -> set[str]:
    """Every archive name that any metadata file in ``meta_dir`` names."""
    names: set[str] = set()
    files = [*meta_dir.glob("*.json"), *meta_dir.glob("*/*.json")]
    for path in files:
        data = read_json(path)
        if data is None:
            continue
        entries = [data]
        layers = data.get("layers")
        if isinstance(layers, Mapping):
            entries = [m for c in layers.values() if isinstance(c, list) for m in c]
        for meta in entries:
            if isinstance(meta, Mapping) and isinstance(meta.get("archive_name"), str):
                names.add(meta["archive_name"])
    return names


def _remove_unreferenced_transitional(meta_dir: Path, output_dir: Path) -> list[Path]:
    referenced = _referenced(meta_dir)
    removed = []
    for path in output_dir.iterdir():
        if _TRANSITIONAL.search(path.name) and path.name not in referenced and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def sweep_output(output_dir: Path, meta_dir: Path) -> list[Path]:
    """Remove what killed publishes left: unlocked partial archives, transitional archives no
    metadata names, and temporary metadata files. Safe while others publish into the folder."""
    if not output_dir.is_dir():
        return []
    removed = sweep_partials(output_dir)
    if meta_dir.is_dir():
        with metadata_lock(meta_dir):
            removed += _remove_unreferenced_transitional(meta_dir, output_dir)
            for folder in (meta_dir, *[p for p in meta_dir.iterdir() if p.is_dir()]):
                for temp in folder.glob(".*.tmp"):
                    temp.unlink(missing_ok=True)
                    removed.append(temp)
    for path in removed:
        _log.info("removed %s, left by an interrupted publish", path)
    return removed
