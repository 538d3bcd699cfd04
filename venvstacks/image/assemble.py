"""Assembling an application image: base layers, one layer per venvstacks layer, config, manifest.

Each venvstacks layer becomes one image layer, deployed at `<prefix>/<install target>` and
post-installed for that place (see `stage`). A built layer is kept in a store in the build dir,
keyed by everything that decides its bytes (the published archive's digest, the runtime's, the
prefix, the compression and a format version), so a second image that shares the runtime and the
frameworks reuses their blobs instead of rebuilding them: the same inputs give the same digests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from venvstacks.envs._injected import postinstall
from venvstacks.image.base import BaseImage, ImageSink, base_layer_descriptors, read_rootfs
from venvstacks.image.layout import ImageError, OciLayout
from venvstacks.image.libcheck import check_libraries
from venvstacks.image.media import CONFIG, MANIFEST, Descriptor, canonical_json, manifest_document
from venvstacks.image.rootfs import RootFs
from venvstacks.image.stage import (
    clamp_mtimes,
    compile_layer,
    configure_for_prefix,
    stage_layer,
    staged_dir,
)
from venvstacks.image.tarlayer import write_layer

__all__ = ["BuiltImage", "ImageLayer", "ImageRequest", "LayerStore", "build_image"]

_log = logging.getLogger(__name__)
LAYER_FORMAT_VERSION = "1"
"""Bump when the way a layer's bytes are made changes, so stored layers are rebuilt."""
LABEL_PREFIX = "io.venvstacks"
DEFAULT_PREFIX = PurePosixPath("/opt/venvstacks")


@dataclass(frozen=True)
class ImageLayer:
    """One published venvstacks layer going into an image."""

    env: str
    kind: str  # "runtimes", "frameworks" or "applications"
    target: str
    archive: Path
    archive_sha256: str
    lock_version: int
    locked_at: str
    build_env: Path

    @property
    def lock_time(self) -> int:
        return int(datetime.fromisoformat(self.locked_at).timestamp())


@dataclass(frozen=True)
class ImageRequest:
    """An application image: its layers (runtime first, app last) and how they are written."""

    app: str
    launch_module: str
    layers: tuple[ImageLayer, ...]
    prefix: PurePosixPath = DEFAULT_PREFIX
    layer_format: str = "gzip"
    level: int | None = None

    @property
    def runtime(self) -> ImageLayer:
        return self.layers[0]

    @property
    def app_layer(self) -> ImageLayer:
        return self.layers[-1]

    def deployed(self, layer: ImageLayer) -> PurePosixPath:
        return self.prefix / layer.target


@dataclass
class BuiltImage:
    """What was written: the manifest, its layers, and what the checks found."""

    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    warnings: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    manifest_bytes: bytes = b""


@dataclass(frozen=True)
class _Stored:
    descriptor: Descriptor
    diff_id: str


class LayerStore:
    """Built image layers in the build dir: an OCI layout of blobs plus records by input key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = OciLayout.create(root / "blobs-layout")

    def key(self, request: ImageRequest, layer: ImageLayer) -> str:
        parts = {
            "version": LAYER_FORMAT_VERSION,
            "archive": layer.archive_sha256,
            "runtime": request.runtime.archive_sha256,
            "target": layer.target,
            "prefix": request.prefix.as_posix(),
            "format": request.layer_format,
            "level": request.level,
            "lock_time": layer.lock_time,
            "postinstall": hashlib.sha256(Path(postinstall.__file__).read_bytes()).hexdigest(),
        }
        return hashlib.sha256(canonical_json(parts)).hexdigest()

    def _record(self, key: str) -> Path:
        return self.root / "records" / f"{key}.json"

    def lookup(self, key: str) -> _Stored | None:
        try:
            data = json.loads(self._record(key).read_text(encoding="utf-8"))
            stored = _Stored(Descriptor.from_json(data["descriptor"]), str(data["diff_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return stored if self.layout.has_blob(stored.descriptor) else None

    def add(self, key: str, blob: Path, descriptor: Descriptor, diff_id: str) -> _Stored:
        dest = self.layout.blob_path(descriptor.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob.chmod(0o644)
        blob.replace(dest)
        record = self._record(key)
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.tmp")
        tmp.write_text(json.dumps({"descriptor": descriptor.to_json(), "diff_id": diff_id}))
        tmp.replace(record)
        return _Stored(descriptor, diff_id)


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_base(base: BaseImage, request: ImageRequest, base_fs: RootFs | None = None) -> list[str]:
    """Refuse a base that cannot run the runtime; warnings about extension modules."""
    fs = copy.deepcopy(base_fs) if base_fs is not None else read_rootfs(base)
    for part in [*[*request.prefix.parents][::-1][1:], request.prefix]:
        kind = fs.kinds.get(part.as_posix())
        if kind not in (None, "dir"):
            raise ImageError(
                f"base {base.ref}: {part} is a {kind}, not a folder (choose another --prefix)"
            )
    for layer in request.layers:
        fs.add_tree(request.deployed(layer), layer.build_env)
    result = check_libraries(
        fs,
        request.deployed(request.runtime).as_posix(),
        [request.deployed(layer).as_posix() for layer in request.layers[1:]],
        base.config.get("architecture"),
    )
    for shell in ("/bin/bash",):
        if request.layers[1:] and not fs.exists(shell):
            result.errors.append(
                f"the base image lacks {shell}, which the layers' bin/python wrapper runs"
            )
    if result.errors:
        raise ImageError(f"base {base.ref} cannot run {request.app}: {'; '.join(result.errors)}")
    return result.warnings


def _build_layers(
    request: ImageRequest, store: LayerStore, work_root: Path
) -> tuple[list[_Stored], list[str]]:
    """Every venvstacks layer's image layer, from the store or built now."""
    keys = [store.key(request, layer) for layer in request.layers]
    found = [store.lookup(key) for key in keys]
    rebuilt: list[str] = []
    if all(found):
        return [f for f in found if f is not None], rebuilt
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_root, prefix="stage-") as tmp:
        staging = Path(tmp) / "root"
        runtime = request.runtime
        stage_layer(runtime.archive, staging, request.prefix, runtime.target)
        python = staged_dir(staging, request.prefix, runtime.target) / "bin" / "python3"
        results: list[_Stored] = []
        for layer, key, stored in zip(request.layers, keys, found, strict=True):
            if stored is None:
                stored = _build_one(request, layer, key, store, staging, python)
                rebuilt.append(layer.env)
            results.append(stored)
    return results, rebuilt


def _build_one(
    request: ImageRequest,
    layer: ImageLayer,
    key: str,
    store: LayerStore,
    staging: Path,
    python: Path,
) -> _Stored:
    _log.info("%s: building its image layer", layer.env)
    folder = staged_dir(staging, request.prefix, layer.target)
    if layer is not request.runtime:
        stage_layer(layer.archive, staging, request.prefix, layer.target)
    configure_for_prefix(staging, request.prefix, layer.target)
    clamp_mtimes(folder, layer.lock_time)
    compile_layer(python, folder, request.deployed(layer))
    clamp_mtimes(folder, layer.lock_time)
    relative = request.deployed(layer).relative_to("/")
    blob = write_layer(
        staging,
        [*reversed(relative.parents)][1:],
        relative,
        store.root / "tmp",
        layer_format=request.layer_format,
        clamp_mtime=layer.lock_time,
        level=request.level,
    )
    return store.add(key, blob.path, blob.descriptor, blob.diff_id)


def image_config(
    base: BaseImage, request: ImageRequest, diff_ids: Sequence[str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """The image config: the base's, with our layers, entry point, environment and labels."""
    config: dict[str, Any] = json.loads(json.dumps(base.config))
    created = max(layer.lock_time for layer in request.layers)
    runtime_config = dict(config.get("config") or {})
    app_dir = request.deployed(request.app_layer)
    env = [
        e for e in runtime_config.get("Env") or [] if not e.startswith(("PATH=", "PYTHONSAFEPATH="))
    ]
    base_path = next(
        (e.split("=", 1)[1] for e in runtime_config.get("Env") or [] if e.startswith("PATH=")),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    runtime_config.update(
        {
            "Entrypoint": [f"{app_dir}/bin/python", "-m", request.launch_module],
            "Cmd": None,
            "WorkingDir": runtime_config.get("WorkingDir") or "/",
            "Env": [*env, f"PATH={app_dir}/bin:{base_path}", "PYTHONSAFEPATH=1"],
            "Labels": {**(runtime_config.get("Labels") or {}), **labels},
        }
    )
    runtime_config = {k: v for k, v in runtime_config.items() if v is not None}
    config["config"] = runtime_config
    config["created"] = _iso(created)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base.diff_ids, *diff_ids]}
    history = config.get("history")
    if isinstance(history, list) and history:
        config["history"] = [
            *history,
            *(
                {"created": _iso(layer.lock_time), "created_by": f"venvstacks layer {layer.target}"}
                for layer in request.layers
            ),
        ]
    else:
        config.pop("history", None)
    return config


def image_labels(base: BaseImage, request: ImageRequest) -> dict[str, str]:
    created = max(layer.lock_time for layer in request.layers)
    app = request.app_layer
    labels = {
        "org.opencontainers.image.created": _iso(created),
        "org.opencontainers.image.title": request.app,
        "org.opencontainers.image.version": str(app.lock_version),
        "org.opencontainers.image.base.name": str(base.ref),
        "org.opencontainers.image.base.digest": base.manifest_descriptor.digest,
        f"{LABEL_PREFIX}.app": app.env,
        f"{LABEL_PREFIX}.launch-module": request.launch_module,
        f"{LABEL_PREFIX}.prefix": request.prefix.as_posix(),
        f"{LABEL_PREFIX}.layers": ",".join(layer.target for layer in request.layers),
    }
    for layer in request.layers:
        labels[f"{LABEL_PREFIX}.layer.{layer.env}.lock-version"] = str(layer.lock_version)
        labels[f"{LABEL_PREFIX}.layer.{layer.env}.locked-at"] = layer.locked_at
    return labels


def build_image(
    base: BaseImage,
    request: ImageRequest,
    store: LayerStore,
    sink: ImageSink,
    tags: Sequence[str],
    *,
    base_fs: RootFs | None = None,
) -> BuiltImage:
    """Check the base, build (or reuse) the layers and write the image to `sink` under `tags`."""
    found = check_base(base, request, base_fs)
    stored, rebuilt = _build_layers(request, store, store.root / "work")
    ours = [
        Descriptor(
            s.descriptor.media_type,
            s.descriptor.digest,
            s.descriptor.size,
            {"org.opencontainers.image.title": layer.target},
        )
        for s, layer in zip(stored, request.layers, strict=True)
    ]
    labels = image_labels(base, request)
    config = image_config(base, request, [s.diff_id for s in stored], labels)
    config_bytes = canonical_json(config)
    layers = [*base_layer_descriptors(base), *ours]
    for descriptor in base.layers:
        sink.put_blob(descriptor, base.source)
    for descriptor in ours:
        sink.put_blob(descriptor, store.layout)
    config_descriptor = store.layout.write_blob(CONFIG, config_bytes)
    sink.put_blob(config_descriptor, store.layout)
    annotations = {
        "org.opencontainers.image.created": labels["org.opencontainers.image.created"],
        "org.opencontainers.image.base.name": labels["org.opencontainers.image.base.name"],
        "org.opencontainers.image.base.digest": labels["org.opencontainers.image.base.digest"],
    }
    manifest = canonical_json(manifest_document(config_descriptor, layers, annotations))
    for tag in tags:
        descriptor = sink.put_manifest(MANIFEST, manifest, tag)
    return BuiltImage(descriptor, config_descriptor, layers, found, rebuilt, manifest)


def clear_store(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
