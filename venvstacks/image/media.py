"""OCI media types, content descriptors and the canonical JSON of manifests, configs and indexes.

Pure: documents in, bytes and descriptors out. JSON is written with sorted keys and no spaces so
that the same document always has the same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONFIG",
    "INDEX",
    "LAYER_GZIP",
    "LAYER_TAR",
    "LAYER_ZSTD",
    "MANIFEST",
    "Descriptor",
    "canonical_json",
    "descriptor_for",
    "normalise_layer_type",
]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPES = frozenset({MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({INDEX, DOCKER_LIST})
_DOCKER_LAYERS = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": LAYER_TAR,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": LAYER_ZSTD,
}
LAYER_TYPES = frozenset({LAYER_TAR, LAYER_GZIP, LAYER_ZSTD, *_DOCKER_LAYERS})


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform:
            data["platform"] = dict(self.platform)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        """A descriptor from its JSON form; KeyError/TypeError/ValueError when malformed."""
        digest = str(data["digest"])
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ValueError(f"unsupported digest {digest!r}")
        platform = data.get("platform")
        return cls(
            media_type=str(data["mediaType"]),
            digest=digest,
            size=int(data["size"]),
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
            platform={str(k): str(v) for k, v in platform.items()} if platform else None,
        )

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The bytes a document is stored as: sorted keys, compact separators, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor_for(media_type: str, content: bytes, **extra: Any) -> Descriptor:
    """The descriptor of an in-memory blob."""
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    return Descriptor(media_type, digest, len(content), **extra)


def normalise_layer_type(media_type: str) -> str:
    """A Docker layer media type as its OCI equivalent (same bytes, same digest)."""
    return _DOCKER_LAYERS.get(media_type, media_type)


def manifest_document(
    config: Descriptor, layers: Sequence[Descriptor], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """An OCI image manifest."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return document


def index_document(
    manifests: Sequence[Descriptor], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An OCI image index over manifests (each with its `platform`)."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return document
