"""Base images and image destinations: where blobs come from and where they go.

A base is read from an OCI image layout (or, through `venvstacks.oci`, a registry); a
multi-platform base is narrowed to one platform. A destination receives only the blobs it lacks,
then the manifest (or index) under a tag.
"""

from __future__ import annotations

import contextlib
import tarfile
from dataclasses import dataclass
from typing import IO, Any, Protocol

from venvstacks.image.layout import ImageError, OciLayout, copy_verified
from venvstacks.image.media import (
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    normalise_layer_type,
)
from venvstacks.image.refs import ImageRef
from venvstacks.image.rootfs import RootFs
from venvstacks.image.tarlayer import open_layer_stream

__all__ = ["BaseImage", "BlobSource", "ImageSink", "LayoutSink", "load_base", "read_rootfs"]


class BlobSource(Protocol):
    """Somewhere blobs can be read from by descriptor."""

    def open_blob(self, descriptor: Descriptor) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def read_json(self, descriptor: Descriptor) -> dict[str, Any]: ...


class ImageSink(Protocol):
    """Somewhere an image is written: blobs first, then the tagged manifest."""

    def has_blob(self, descriptor: Descriptor) -> bool: ...

    def put_blob(self, descriptor: Descriptor, source: BlobSource) -> None: ...

    def put_manifest(self, media_type: str, content: bytes, tag: str) -> Descriptor: ...


@dataclass(frozen=True)
class BaseImage:
    """A base image's manifest, config and layers, and where to read its blobs."""

    ref: ImageRef
    source: BlobSource
    manifest_descriptor: Descriptor
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]

    @property
    def platform(self) -> str:
        arch = self.config.get("architecture", "")
        variant = self.config.get("variant")
        return f"{self.config.get('os', '')}/{arch}" + (f"/{variant}" if variant else "")

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs") or {}
        return [str(d) for d in rootfs.get("diff_ids", [])]


def _pick_platform(
    source: BlobSource, ref: ImageRef, index: dict[str, Any], platform: str | None
) -> Descriptor:
    entries = [Descriptor.from_json(m) for m in index.get("manifests", [])]
    wanted = (platform or "linux/amd64").split("/")
    for entry in entries:
        p = entry.platform or {}
        have = [p.get("os", ""), p.get("architecture", ""), p.get("variant", "")]
        if have[: len(wanted)] == wanted and entry.media_type in MANIFEST_TYPES:
            return entry
    offered = ", ".join(
        f"{(e.platform or {}).get('os')}/{(e.platform or {}).get('architecture')}" for e in entries
    )
    raise ImageError(f"base {ref}: no image for {'/'.join(wanted)} (it has {offered or 'none'})")


def _load_from(
    ref: ImageRef, source: BlobSource, descriptor: Descriptor, platform: str | None
) -> BaseImage:
    if descriptor.media_type in INDEX_TYPES:
        descriptor = _pick_platform(source, ref, source.read_json(descriptor), platform)
    if descriptor.media_type not in MANIFEST_TYPES:
        raise ImageError(f"base {ref}: {descriptor.media_type} is not an image manifest")
    manifest = source.read_json(descriptor)
    try:
        config_descriptor = Descriptor.from_json(manifest["config"])
        layers = tuple(Descriptor.from_json(layer) for layer in manifest.get("layers", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"base {ref}: malformed manifest ({exc})") from None
    unknown = sorted({layer.media_type for layer in layers} - LAYER_TYPES)
    if unknown:
        raise ImageError(f"base {ref}: unsupported layer media types {', '.join(unknown)}")
    config = source.read_json(config_descriptor)
    base = BaseImage(ref, source, descriptor, manifest, config, layers)
    if len(base.diff_ids) != len(layers):
        raise ImageError(
            f"base {ref}: its config lists {len(base.diff_ids)} layers, not {len(layers)}"
        )
    return base


def load_base(
    ref: ImageRef,
    platform: str | None = None,
    *,
    store: OciLayout | None = None,
    transport: Any = None,
) -> BaseImage:
    """The base image named by `ref` (for `platform` if it is a multi-platform image).

    A registry base's blobs are downloaded into `store` (a local layout) as they are read.
    """
    if ref.kind == "oci-layout":
        layout = OciLayout.open(ref.path)
        return _load_from(ref, layout, layout.find(ref.tag), platform)
    registry = registry_module()
    if store is None:
        raise ImageError(f"base {ref}: a registry base needs a local blob store")
    source = registry.RegistrySource(registry.connect(ref, transport), ref, store)
    _, descriptor = source.manifest()
    return _load_from(ref, source, descriptor, platform)


def registry_module() -> Any:
    """`venvstacks.image.registry`, which needs the registry client `venvstacks.oci`."""
    import importlib

    try:
        return importlib.import_module("venvstacks.image.registry")
    except ImportError:
        raise ImageError("oci:// images need the registry client, missing here") from None


def read_rootfs(base: BaseImage) -> RootFs:
    """The base's root filesystem names, applying its layers in order."""
    fs = RootFs()
    for layer in base.layers:
        try:
            with (
                base.source.open_blob(layer) as blob,
                open_layer_stream(blob, layer.media_type) as tar,
            ):
                fs.apply_layer(tar)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise ImageError(f"base {base.ref}: cannot read layer {layer.digest}: {exc}") from None
    return fs


def base_layer_descriptors(base: BaseImage) -> list[Descriptor]:
    """The base's layer descriptors, unchanged but for Docker media types named the OCI way."""
    return [
        Descriptor(normalise_layer_type(d.media_type), d.digest, d.size, d.annotations)
        for d in base.layers
    ]


class LayoutSink:
    """An OCI image layout as a destination."""

    def __init__(self, ref: ImageRef) -> None:
        self.ref = ref
        self._layout: OciLayout | None = None

    @property
    def layout(self) -> OciLayout:
        """The layout, made when the first blob is written (a refused image leaves nothing)."""
        if self._layout is None:
            self._layout = OciLayout.create(self.ref.path)
        return self._layout

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self._layout is not None and self._layout.has_blob(descriptor)

    def put_blob(self, descriptor: Descriptor, source: BlobSource) -> None:
        if self.layout.has_blob(descriptor):
            return
        if isinstance(source, OciLayout):
            self.layout.add_blob_file(source.blob_path(descriptor.digest), descriptor)
            return
        with source.open_blob(descriptor) as stream:
            copy_verified(stream, self.layout.blob_path(descriptor.digest), descriptor.digest)

    def put_manifest(self, media_type: str, content: bytes, tag: str) -> Descriptor:
        descriptor = self.layout.write_blob(media_type, content)
        self.layout.tag(descriptor, tag)
        return descriptor

    def find_image(self, tag: str) -> tuple[Descriptor, dict[str, Any]] | None:
        """The manifest tagged `tag` and its config, or None."""
        if not (self.ref.path / "index.json").is_file():
            return None
        layout = OciLayout.open(self.ref.path)
        try:
            descriptor = layout.find(tag)
        except ImageError:
            return None
        if descriptor.media_type not in MANIFEST_TYPES:
            return None
        manifest = layout.read_json(descriptor)
        try:
            config = layout.read_json(Descriptor.from_json(manifest["config"]))
        except (KeyError, TypeError, ValueError):
            return None
        return Descriptor(descriptor.media_type, descriptor.digest, descriptor.size), config
