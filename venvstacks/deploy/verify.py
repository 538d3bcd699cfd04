"""What `verify` compares: a deployed layer's files against the manifest recorded at deploy time.

For every published entry of a layer the record holds ``<sha256> <mode>`` for a regular file
(content and permission bits, so a lost executable bit is seen) and ``-><target>`` for a symlink
(its target, never followed). Files written by post-install (``pyvenv.cfg``, the layer's
``sitecustomize.py``) and ``__pycache__`` folders are not part of it. Records written before modes
were kept (a bare ``<sha256>``) are compared on content only.

The record also keeps each entry's ``lstat`` (size, mtime, mode) as it was left by the deploy:
a plain `deploy` compares those (no file is read) to notice a layer edited, truncated, chmodded
or thinned since, and deploys it again; `verify` and ``deploy --repair`` compare contents.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from venvstacks.errors import DeployError

__all__ = [
    "LayerDifferences",
    "compare",
    "file_manifest",
    "file_stats",
    "first_changed",
    "layer_site_dir",
    "read_recorded",
]

LAYER_CONFIG = Path("share/venv/metadata/venvstacks_layer.json")
_POSTINSTALL_OUTPUTS = ("pyvenv.cfg",)


@dataclass(frozen=True)
class LayerDifferences:
    """Files of one deployed layer that differ from what was published.

    ``changed`` covers content, permission bits and symlink targets; ``details`` says which
    for the paths where it is not the content (``mode 0644, published 0755``).
    """

    target: str
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    added: tuple[str, ...]
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.added)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.changed) + len(self.added)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _published_files(layer_dir: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(layer_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            yield Path(folder) / name
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                yield Path(folder) / name


def _entry(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"->{path.readlink()}"
    if not stat.S_ISREG(info.st_mode):
        return f"special {stat.S_IFMT(info.st_mode):o}"
    return f"{_file_digest(path)} {stat.S_IMODE(info.st_mode):04o}"


def file_manifest(layer_dir: Path, site_dir: str | None) -> dict[str, str]:
    """Every published entry of a deployed layer (see the module docs for the values)."""
    skip = {*_POSTINSTALL_OUTPUTS}
    if site_dir:
        skip.add(f"{site_dir}/sitecustomize.py")
    result: dict[str, str] = {}
    for path in _published_files(layer_dir):
        rel = path.relative_to(layer_dir).as_posix()
        if rel not in skip:
            result[rel] = _entry(path)
    return result


def _stat_entry(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_mode]


def file_stats(layer_dir: Path, names: Iterable[str]) -> dict[str, list[int]]:
    """``[size, mtime_ns, mode]`` of each named entry (symlinks not followed)."""
    return {name: _stat_entry((layer_dir / name).lstat()) for name in names}


def first_changed(layer_dir: Path, stats: Mapping[str, object]) -> str | None:
    """The first entry whose ``lstat`` differs from ``stats`` (or is gone); None if none."""
    base = os.fspath(layer_dir) + os.sep  # os.lstat on joined strings: a third of the cost
    for name, expected in stats.items():
        try:
            info = os.lstat(base + name)
        except OSError:
            return name
        if _stat_entry(info) != expected:
            return name
    return None


def layer_site_dir(layer_dir: Path) -> str | None:
    try:
        config = json.loads((layer_dir / LAYER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    site = config.get("site_dir") if isinstance(config, dict) else None
    return site if isinstance(site, str) else None


def read_recorded(record: Path, target: str) -> dict[str, str]:
    """The file manifest recorded when ``target`` was deployed."""
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DeployError(f"{record}: no file manifest for {target} (redeploy it)") from None
    if not isinstance(files, dict):
        raise DeployError(f"{record}: no file manifest for {target} (redeploy it)")
    return {str(k): str(v) for k, v in files.items()}


def _difference(recorded: str, current: str) -> str | None:
    """None when equal; else what differs, or '' when it is the content (or the kind)."""
    if recorded == current:
        return None
    old_sha, _, old_mode = recorded.partition(" ")
    new_sha, _, new_mode = current.partition(" ")
    if recorded.startswith("->") and current.startswith("->"):
        return f"symlink to {current[2:]}, published {recorded[2:]}"
    if recorded.startswith("->") or current.startswith("->") or old_sha != new_sha:
        return ""
    if not old_mode:  # an old record without modes: the content is all it can tell
        return None
    return f"mode {new_mode}, published {old_mode}"


def compare(target: str, recorded: Mapping[str, str], layer_dir: Path) -> LayerDifferences:
    """The differences between a layer folder and its recorded manifest."""
    current = file_manifest(layer_dir, layer_site_dir(layer_dir)) if layer_dir.is_dir() else {}
    if "postinstall.py" not in recorded:
        current.pop("postinstall.py", None)
    changed, details = [], {}
    for path in sorted(set(recorded) & set(current)):
        why = _difference(recorded[path], current[path])
        if why is not None:
            changed.append(path)
            if why:
                details[path] = why
    return LayerDifferences(
        target,
        tuple(sorted(set(recorded) - set(current))),
        tuple(changed),
        tuple(sorted(set(current) - set(recorded))),
        details,
    )
