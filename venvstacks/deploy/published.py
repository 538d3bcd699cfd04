"""What an artefacts folder offers for deployment: its layers' metadata, checked before use.

The stack manifest (``__venvstacks__/venvstacks.json``, or this platform's tagged one) lists the
layers to deploy. A layer that a listed layer needs but the manifest lacks (an older or 0.8.0
partial publish listed only the layers it published) is taken from its own
``env_metadata/<layer>.json`` when that file is there. Every entry is checked before any file is
opened: folder names must be plain names, ``archive_name`` must stay inside the artefacts folder,
and the size and sha256 must be well formed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from venvstacks.errors import DeployError, SelectionError
from venvstacks.plan.layout import METADATA_DIR, METADATA_ENV_DIR, METADATA_MANIFEST
from venvstacks.plan.names import UnmatchedNames, match_layer_names, spec_name_of
from venvstacks.plan.platforms import build_platform

__all__ = ["PublishedLayer", "load_published", "select_published", "unmatched_published"]

CATEGORIES = ("runtimes", "frameworks", "applications")
_SHA256 = re.compile(r"(sha256:)?[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class PublishedLayer:
    category: str
    meta: Mapping[str, Any]

    @property
    def target(self) -> str:
        return str(self.meta["install_target"])

    @property
    def lower(self) -> list[str]:
        """Install targets this layer needs: its runtime, then its frameworks."""
        if self.category == "runtimes":
            return []
        return [str(self.meta["runtime_layer"]), *map(str, self.meta.get("required_layers", []))]

    @property
    def archive_name(self) -> str:
        return str(self.meta["archive_name"])

    @property
    def sha256(self) -> str:
        hashes = self.meta.get("archive_hashes")
        value = hashes.get("sha256") if isinstance(hashes, Mapping) else None
        return str(value).lower().removeprefix("sha256:") if value is not None else ""


def _manifest_path(artifacts: Path) -> tuple[Path, str]:
    plain = artifacts / METADATA_DIR / METADATA_MANIFEST
    if plain.exists():
        return plain, ""
    tag = f"-{build_platform()}"
    tagged = artifacts / METADATA_DIR / f"venvstacks{tag}.json"
    if tagged.exists():
        return tagged, tag
    raise DeployError(
        f"{artifacts}: no {METADATA_DIR}/{METADATA_MANIFEST} (is this a publish output dir?)"
    )


def _plain_name(value: object) -> bool:
    """A single folder name: no separators, not '.' or '..', no NUL, not absolute anywhere."""
    if not isinstance(value, str) or not value or value in (".", "..") or "\x00" in value:
        return False
    return "/" not in value and "\\" not in value and ":" not in value


def _inside(value: object) -> bool:
    """A relative path that stays inside the folder it is relative to (lexically)."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        return False
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        return False
    return all(part not in ("..", ".", "") for part in value.split("/"))


def check_entry(meta: object, where: Path, archives: bool = True) -> PublishedLayer | None:
    """Raise DeployError naming the layer and the field when an entry is unusable."""
    if not isinstance(meta, Mapping):
        raise DeployError(f"{where}: a layer entry is not a JSON object")
    name = meta.get("layer_name", meta.get("install_target", "?"))
    for key in ("install_target", "runtime_layer"):
        if not _plain_name(meta.get(key)):
            raise DeployError(
                f"{where}: layer {name}: {key} {meta.get(key)!r} is not a folder name"
            )
    required = meta.get("required_layers", [])
    if not isinstance(required, list) or not all(_plain_name(r) for r in required):
        raise DeployError(
            f"{where}: layer {name}: required_layers {required!r} are not folder names"
        )
    if not archives:
        return None
    archive = meta.get("archive_name")
    if not _inside(archive):
        raise DeployError(
            f"{where}: layer {name}: archive_name {archive!r} leaves the artefacts folder; refusing it"
        )
    size = meta.get("archive_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DeployError(f"{where}: layer {name}: archive_size {size!r} is not a byte count")
    hashes = meta.get("archive_hashes")
    sha = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise DeployError(f"{where}: layer {name}: archive_hashes.sha256 {sha!r} is not a sha256")
    return None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DeployError(f"{path}: not valid JSON ({exc})") from None


def _category(meta: Mapping[str, Any]) -> str:
    if meta.get("bound_to_implementation") is True and "required_layers" not in meta:
        return "runtimes"
    return "applications" if "app_launch_module" in meta else "frameworks"


def _layer_files(artifacts: Path, tag: str) -> list[tuple[Path, Mapping[str, Any]]]:
    """Per-layer metadata files for this tag, valid JSON objects only (others are ignored)."""
    folder = artifacts / METADATA_DIR / METADATA_ENV_DIR
    found = []
    for path in sorted(folder.glob(f"*{tag}.json")) if folder.is_dir() else []:
        if not tag and path.stem.endswith(f"-{build_platform()}"):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, Mapping) and isinstance(data.get("install_target"), str):
            found.append((path, data))
    return found


def load_published(artifacts: Path) -> tuple[list[PublishedLayer], list[PublishedLayer]]:
    """The manifest's layers (runtimes first), and the extra layers only per-layer files hold."""
    path, tag = _manifest_path(artifacts)
    data = _read(path)
    layers = data.get("layers") if isinstance(data, Mapping) else None
    if not isinstance(layers, Mapping):
        raise DeployError(f"{path}: not a venvstacks manifest (no 'layers' object)")
    listed: list[PublishedLayer] = []
    for category in CATEGORIES:
        entries = layers.get(category, [])
        if not isinstance(entries, list):
            raise DeployError(f"{path}: 'layers.{category}' is not a list")
        for meta in entries:
            check_entry(meta, path)
            listed.append(PublishedLayer(category, meta))
    known = {layer.target for layer in listed}
    extra = []
    for file, meta in _layer_files(artifacts, tag):
        if meta["install_target"] not in known and "archive_name" in meta:
            check_entry(meta, file)
            extra.append(PublishedLayer(_category(meta), meta))
    return listed, extra


def _source_of(where: Path | None) -> str:
    """The manifest the published layers were read from (for messages)."""
    if where is None:
        return "the published stack"
    try:
        return str(_manifest_path(where)[0])
    except DeployError:
        return str(where)


def unmatched_published(
    layers: Sequence[PublishedLayer], unmatched: Sequence[str], source: str
) -> UnmatchedNames:
    """What to tell of deploy `--include` patterns naming no published layer."""
    names = [str(layer.meta.get("layer_name", layer.target)) for layer in layers]
    return UnmatchedNames(
        option="--include",
        unmatched=tuple(unmatched),
        known=tuple(dict.fromkeys(spec_name_of(name) for name in names)),
        also_known=(*names, *(layer.target for layer in layers)),
        source=source,
        noun="published layer",
    )


def select_published(
    layers: Sequence[PublishedLayer],
    include: Sequence[str],
    extra: Sequence[PublishedLayer] = (),
    where: Path | None = None,
    *,
    source: str | None = None,
) -> list[PublishedLayer]:
    """The layers matching `include` (all when empty) and every layer they need, lower first.

    A needed layer missing from ``layers`` is taken from ``extra``; one missing from both is an
    error naming it and the layer that needs it. A pattern naming no layer is an error naming
    `source` (default: the manifest in `where`), the pattern and the layers published.
    """
    chosen = list(layers)
    if include:
        names = {
            index: (
                (layer.target, str(layer.meta.get("layer_name", ""))),
                spec_name_of(str(layer.meta.get("layer_name", ""))),
            )
            for index, layer in enumerate(layers)
        }
        matched, unmatched = match_layer_names(include, names)
        chosen = [layers[i] for i in matched]
        if unmatched:
            problem = unmatched_published(layers, unmatched, source or _source_of(where))
            raise SelectionError(problem.message(), problem.details())
    available = {layer.target: layer for layer in [*extra, *layers]}
    wanted: dict[str, PublishedLayer] = {}
    pending = list(chosen)
    while pending:
        layer = pending.pop()
        if layer.target in wanted:
            continue
        wanted[layer.target] = layer
        for target in layer.lower:
            if target not in available:
                folder = f" {where}" if where is not None else ""
                raise DeployError(
                    f"layer {layer.target} needs {target}, which the artefacts folder{folder} "
                    f"does not hold (publish {target} there too)"
                )
            pending.append(available[target])
    order = {category: i for i, category in enumerate(CATEGORIES)}
    everything = [*layers, *extra]
    return sorted(
        (l for l in everything if l.target in wanted and wanted[l.target] is l),
        key=lambda l: (order.get(l.category, 1), everything.index(l)),
    )
