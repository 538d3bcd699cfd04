"""The OCI documents venvstacks pushes: a layer artifact per published layer, a stack artifact for
the stack manifest, and an image index over them. Pure: no I/O.

A layer artifact is an image manifest with `artifactType` `application/vnd.venvstacks.layer.v1+json`:
its config blob is the layer's published metadata (the JSON `deploy` reads), its one layer is the
archive (digest = the archive's sha256), and its annotations repeat the layer name, install target,
lock version and hashes for tools that only read manifests. The stack artifact's config blob is
the stack manifest (`venvstacks.json`). The index lists the stack artifact first, then the layers,
each with the platform it was built for. Nothing depends on the clock, so pushing the same
content again yields the same digests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from venvstacks.oci.client import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Descriptor

__all__ = [
    "ANNOTATION_PREFIX",
    "EMPTY_CONFIG",
    "LAYER_ARTIFACT_TYPE",
    "STACK_ARTIFACT_TYPE",
    "archive_media_type",
    "canonical_json",
    "index_document",
    "layer_annotations",
    "layer_tag",
    "manifest_document",
    "oci_platform",
]

LAYER_ARTIFACT_TYPE = "application/vnd.venvstacks.layer.v1+json"
STACK_ARTIFACT_TYPE = "application/vnd.venvstacks.stack.v1+json"
ANNOTATION_PREFIX = "dev.venvstacks"
TITLE = "org.opencontainers.image.title"
# The image spec's empty descriptor: a stack artifact has no layer of its own.
EMPTY_CONFIG = Descriptor(
    "application/vnd.oci.empty.v1+json",
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    2,
)
_ARCHIVE_TYPES = {
    ".tar.xz": "application/vnd.venvstacks.layer.archive.v1.tar+xz",
    ".tar.gz": "application/vnd.venvstacks.layer.archive.v1.tar+gzip",
    ".tar.zst": "application/vnd.venvstacks.layer.archive.v1.tar+zstd",
    ".tar": "application/vnd.venvstacks.layer.archive.v1.tar",
    ".zip": "application/vnd.venvstacks.layer.archive.v1.zip",
}
_OS = {"linux": "linux", "macosx": "darwin", "win": "windows"}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_TAG_INVALID = re.compile(r"[^A-Za-z0-9_.-]")


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The bytes pushed for a JSON document: sorted keys, compact, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def archive_media_type(archive_name: str) -> str:
    for suffix, media_type in _ARCHIVE_TYPES.items():
        if archive_name.endswith(suffix):
            return media_type
    return "application/octet-stream"


def oci_platform(platform: str) -> dict[str, str]:
    """`linux_x86_64` -> `{"os": "linux", "architecture": "amd64"}` (OCI/Go names)."""
    if platform == "win32":
        return {"os": "windows", "architecture": "386"}
    system, _, arch = platform.partition("_")
    return {"os": _OS.get(system, system), "architecture": _ARCH.get(arch, arch)}


def layer_tag(install_target: str, platform_tag: str = "") -> str:
    """The tag of a layer artifact: its install target (`@` and other characters a tag may
    not hold become `-`), plus `-<platform>` when the publish output is platform-tagged."""
    tag = _TAG_INVALID.sub("-", f"{install_target}{platform_tag}")
    if not (tag[:1].isalnum() or tag[:1] == "_"):
        tag = f"_{tag}"
    return tag[:128]


def layer_annotations(meta: Mapping[str, Any], category: str) -> dict[str, str]:
    hashes = meta.get("archive_hashes") or {}
    notes = {
        f"{ANNOTATION_PREFIX}.layer.name": str(meta.get("layer_name", "")),
        f"{ANNOTATION_PREFIX}.layer.category": category,
        f"{ANNOTATION_PREFIX}.layer.install-target": str(meta.get("install_target", "")),
        f"{ANNOTATION_PREFIX}.layer.lock-version": str(meta.get("lock_version", "")),
        f"{ANNOTATION_PREFIX}.layer.requirements-hash": str(meta.get("requirements_hash", "")),
        f"{ANNOTATION_PREFIX}.layer.archive-sha256": str(hashes.get("sha256", "")),
        f"{ANNOTATION_PREFIX}.layer.archive-build": str(meta.get("archive_build", "")),
    }
    return {k: v for k, v in notes.items() if v}


def manifest_document(
    artifact_type: str,
    config: Descriptor,
    layers: Sequence[Descriptor],
    annotations: Mapping[str, str],
) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": config.as_json(),
        "layers": [layer.as_json() for layer in layers],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return canonical_json(document)


def index_document(
    entries: Sequence[tuple[Descriptor, str, Mapping[str, str]]],
    annotations: Mapping[str, str],
) -> bytes:
    """An image index over (manifest descriptor, artifactType, platform) entries."""
    manifests = []
    for descriptor, artifact_type, platform in entries:
        item = descriptor.as_json()
        item["artifactType"] = artifact_type
        if platform:
            item["platform"] = dict(platform)
        manifests.append(item)
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "artifactType": STACK_ARTIFACT_TYPE,
        "manifests": manifests,
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return canonical_json(document)
