"""Publish output folders to and from a registry: push every published layer (only the blobs
the registry lacks) with the stack index; fetch the stack manifest and the archives a deployment
lacks into a folder shaped like a publish output, for the normal deploy to use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvstacks.errors import StackError
from venvstacks.oci.artifacts import (
    EMPTY_CONFIG,
    LAYER_ARTIFACT_TYPE,
    STACK_ARTIFACT_TYPE,
    TITLE,
    archive_media_type,
    index_document,
    layer_annotations,
    layer_tag,
    manifest_document,
    oci_platform,
)
from venvstacks.oci.client import (
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    BlobPush,
    Descriptor,
    RegistryClient,
)
from venvstacks.oci.errors import RegistryError, RegistryNotFoundError
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.reference import Reference

__all__ = [
    "CATEGORIES",
    "METADATA_DIR",
    "PublishedStack",
    "PushReport",
    "PushedLayer",
    "fetch_published",
    "push_published",
    "read_published",
]

_log = logging.getLogger(__name__)
METADATA_DIR = "__venvstacks__"
MANIFEST_NAME = "venvstacks.json"
CATEGORIES = ("runtimes", "frameworks", "applications")


@dataclass(frozen=True)
class PublishedStack:
    """A publish output folder: its stack manifest (path and bytes) and its layers."""

    folder: Path
    manifest: Path
    raw: bytes
    layers: tuple[tuple[str, Mapping[str, Any]], ...]  # (category, metadata)
    platform_tag: str = ""

    def archive(self, meta: Mapping[str, Any]) -> Path:
        return self.folder / str(meta["archive_name"])


@dataclass(frozen=True)
class PushedLayer:
    layer: str
    tag: str
    blob: BlobPush
    digest: str
    size: int


@dataclass
class PushReport:
    """What a push did: per layer, whether its archive was present, mounted or uploaded."""

    reference: Reference
    layers: list[PushedLayer] = field(default_factory=list)
    index: Descriptor | None = None

    @property
    def uploaded_bytes(self) -> int:
        return sum(l.size for l in self.layers if l.blob is BlobPush.UPLOADED)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": str(self.reference),
            "index_digest": self.index.digest if self.index else None,
            "layers": [
                {
                    "layer": l.layer,
                    "tag": l.tag,
                    "blob": str(l.blob),
                    "digest": l.digest,
                    "size": l.size,
                }
                for l in self.layers
            ],
        }


def _parse_manifest(raw: bytes, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        data = json.loads(raw)
        layers = data["layers"]
        found = [(c, m) for c in CATEGORIES for m in layers.get(c, [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StackError(f"{where}: not a valid venvstacks manifest ({exc})") from None
    return found


def read_published(folder: Path, platform: str) -> PublishedStack:
    """The stack manifest of a publish output folder (plain, or tagged `-<platform>`)."""
    for name, tag in ((MANIFEST_NAME, ""), (f"venvstacks-{platform}.json", f"-{platform}")):
        path = folder / METADATA_DIR / name
        if path.is_file():
            raw = path.read_bytes()
            return PublishedStack(folder, path, raw, tuple(_parse_manifest(raw, str(path))), tag)
    raise StackError(f"{folder}: no {METADATA_DIR}/{MANIFEST_NAME} (is this a publish output dir?)")


def _archive_descriptor(stack: PublishedStack, meta: Mapping[str, Any]) -> Descriptor:
    try:
        name = str(meta["archive_name"])
        sha256 = str(meta["archive_hashes"]["sha256"])
        size = int(meta["archive_size"])
    except (KeyError, TypeError, ValueError):
        raise StackError(
            f"{stack.manifest}: layer {meta.get('layer_name')} has no archive metadata "
            "(publish archives, not a local export)"
        ) from None
    return Descriptor(archive_media_type(name), f"sha256:{sha256}", size, ((TITLE, name),))


def push_published(
    client: RegistryClient,
    reference: Reference,
    stack: PublishedStack,
    *,
    tag: str,
    platform: str,
    mount_from: Sequence[str] = (),
    record: MountRecord | None = None,
    progress: Callable[[PushedLayer], None] | None = None,
) -> PushReport:
    """Push every layer of `stack` as a layer artifact, then the stack artifact and the index."""
    repo = reference.repository
    record = record or MountRecord()
    report = PushReport(reference.with_tag(tag))
    entries: list[tuple[Descriptor, str, Mapping[str, str]]] = []
    pushed_digests: list[str] = []
    descriptors = [(c, m, _archive_descriptor(stack, m)) for c, m in stack.layers]
    for _, meta, archive in descriptors:  # every archive is checked before anything is pushed
        path = stack.archive(meta)
        if not path.is_file() or path.stat().st_size != archive.size:
            raise StackError(
                f"{path}: missing or not the size the manifest records (publish again)"
            )
    client.ping(repo)
    for category, meta, archive in descriptors:
        name = str(meta.get("layer_name", meta.get("install_target")))
        hints = [*mount_from, *record.candidates(client.registry, archive.digest, repo)]
        blob = client.push_blob(
            repo, stack.archive(meta), archive.digest, archive.size, layer=name, mount_from=hints
        )
        config = client.push_bytes(repo, _canonical(meta), LAYER_ARTIFACT_TYPE, layer=name)
        notes = layer_annotations(meta, category)
        document = manifest_document(LAYER_ARTIFACT_TYPE, config, [archive], notes)
        ltag = layer_tag(str(meta["install_target"]), stack.platform_tag)
        manifest = client.put_manifest(repo, ltag, document, MANIFEST_MEDIA_TYPE, layer=name)
        entry_notes = {k: v for k, v in notes.items() if k.endswith((".name", ".install-target"))}
        entries.append(
            (_annotated(manifest, entry_notes), LAYER_ARTIFACT_TYPE, oci_platform(platform))
        )
        pushed_digests += [archive.digest, config.digest]
        done = PushedLayer(name, ltag, blob, archive.digest, archive.size)
        report.layers.append(done)
        if progress is not None:
            progress(done)
    stack_config = client.push_bytes(repo, stack.raw, STACK_ARTIFACT_TYPE)
    empty = client.push_bytes(repo, b"{}", EMPTY_CONFIG.media_type)
    stack_doc = manifest_document(STACK_ARTIFACT_TYPE, stack_config, [empty], {})
    stack_manifest = client.put_manifest(
        repo, _digest_of(stack_doc), stack_doc, MANIFEST_MEDIA_TYPE
    )
    entries.insert(0, (stack_manifest, STACK_ARTIFACT_TYPE, oci_platform(platform)))
    index = index_document(entries, {})
    report.index = client.put_manifest(repo, tag, index, INDEX_MEDIA_TYPE)
    record.add(client.registry, repo, pushed_digests)
    return report


def _canonical(meta: Mapping[str, Any]) -> bytes:
    return (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()


def _digest_of(document: bytes) -> str:
    import hashlib

    return f"sha256:{hashlib.sha256(document).hexdigest()}"


def _annotated(descriptor: Descriptor, notes: Mapping[str, str]) -> Descriptor:
    return Descriptor(
        descriptor.media_type, descriptor.digest, descriptor.size, tuple(sorted(notes.items()))
    )


def _stack_entry(
    index: Mapping[str, Any], where: str, client: RegistryClient, repo: str
) -> Descriptor:
    manifests = index.get("manifests")
    if index.get("mediaType") != INDEX_MEDIA_TYPE or not isinstance(manifests, list):
        raise RegistryError(
            client.registry, f"{where} is not a venvstacks stack index", repository=repo
        )
    for item in manifests:
        if isinstance(item, dict) and item.get("artifactType") == STACK_ARTIFACT_TYPE:
            return Descriptor(str(item["mediaType"]), str(item["digest"]), int(item["size"]))
    raise RegistryError(
        client.registry, f"{where} holds no venvstacks stack manifest", repository=repo
    )


def fetch_published(
    client: RegistryClient,
    reference: Reference,
    dest: Path,
    needed: Callable[[Sequence[tuple[str, Mapping[str, Any]]]], Iterable[Mapping[str, Any]]],
) -> tuple[PublishedStack, list[str]]:
    """Fill `dest` like a publish output: the stack manifest, and the archives `needed` picks.

    Returns the stack and the names of the layers whose archives were downloaded. Every blob
    is verified against its digest while it streams; nothing unverified is left in `dest`.
    """
    repo = reference.repository
    ref = reference.digest or reference.tag or "latest"
    where = f"tag {ref}" if not ref.startswith("sha256:") else f"manifest {ref}"
    try:
        index, _ = client.get_manifest(repo, ref)
    except RegistryNotFoundError as exc:
        raise RegistryNotFoundError(
            client.registry, f"{where} not found ({exc.detail})", repository=repo
        ) from None
    entry = _stack_entry(index, where, client, repo)
    stack_manifest, _ = client.get_manifest(repo, entry.digest)
    config = stack_manifest.get("config") or {}
    try:
        descriptor = Descriptor(
            str(config["mediaType"]), str(config["digest"]), int(config["size"])
        )
    except (KeyError, TypeError, ValueError):
        raise RegistryError(
            client.registry, f"{where}: the stack manifest has no config", repository=repo
        ) from None
    raw = client.fetch_bytes(repo, descriptor)
    manifest = dest / METADATA_DIR / MANIFEST_NAME
    layers = tuple(_parse_manifest(raw, f"{reference} ({where})"))
    stack = PublishedStack(dest, manifest, raw, layers)
    fetched = []
    for meta in needed(layers):
        name = str(meta.get("layer_name", meta.get("install_target")))
        archive = _archive_descriptor(stack, meta)
        client.fetch_blob(repo, archive, stack.archive(meta), layer=name)
        fetched.append(name)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(raw)
    return stack, fetched
