"""Images from and to OCI registries, through `venvstacks.oci`'s client.

A registry base is read through a local blob cache (the image layer store), so its layers are
downloaded once, verified while streaming, and reused by later images. A registry destination
receives only the blobs it lacks: HEAD first, then a cross-repository mount when the blob is known
to be in another repository of the same registry (the base's, or one an earlier push recorded in
`venvstacks.oci.mounts`), then an upload (also when the registry refuses the mount).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from venvstacks.image.layout import ImageError, OciLayout
from venvstacks.image.media import INDEX_TYPES, MANIFEST_TYPES, Descriptor

_ACCEPT = sorted(MANIFEST_TYPES | INDEX_TYPES)  # Docker's too: bases pushed by docker use them
from venvstacks.image.refs import ImageRef
from venvstacks.oci import client as oci
from venvstacks.oci.auth import find_credentials
from venvstacks.oci.errors import RegistryNotFoundError
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.reference import Reference
from venvstacks.oci.transport import TransportOptions

__all__ = ["PushCount", "RegistrySink", "RegistrySource", "connect"]


def _reference(ref: ImageRef) -> Reference:
    return Reference(ref.location, ref.repository, ref.tag)


def connect(ref: ImageRef, options: TransportOptions) -> oci.RegistryClient:
    """A client for the registry `ref` names, with the user's credentials for it."""
    reference = _reference(ref)
    credentials = find_credentials(reference.hostname, reference.port(not options.plain_http))
    return oci.RegistryClient(reference, options, credentials)


def _theirs(descriptor: Descriptor) -> oci.Descriptor:
    return oci.Descriptor(descriptor.media_type, descriptor.digest, descriptor.size)


class RegistrySource:
    """Blobs of one registry repository, cached in a local layout as they are first read."""

    def __init__(self, client: oci.RegistryClient, ref: ImageRef, cache: OciLayout) -> None:
        self.client = client
        self.ref = ref
        self.cache = cache

    def manifest(self, platform_picker: Any = None) -> tuple[dict[str, Any], Descriptor]:
        document, found = self.client.get_manifest(
            self.ref.repository, self.ref.tag or "latest", accept=_ACCEPT
        )
        media_type = str(document.get("mediaType") or found.media_type)
        return document, Descriptor(media_type, found.digest, found.size)

    def read_json(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.media_type in MANIFEST_TYPES | INDEX_TYPES:
            document, _ = self.client.get_manifest(
                self.ref.repository, descriptor.digest, accept=_ACCEPT
            )
            return document
        data = self.client.fetch_bytes(self.ref.repository, _theirs(descriptor))
        try:
            document = json.loads(data)
        except ValueError:
            raise ImageError(f"{self.ref}: blob {descriptor.digest} is not JSON") from None
        if not isinstance(document, dict):
            raise ImageError(f"{self.ref}: blob {descriptor.digest} is not a JSON object")
        return document

    def local_path(self, descriptor: Descriptor) -> Path:
        """The blob as a local file, downloaded (and verified) on first use."""
        path = self.cache.blob_path(descriptor.digest)
        if not self.cache.has_blob(descriptor):
            self.client.fetch_blob(self.ref.repository, _theirs(descriptor), path)
        return path

    @contextlib.contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[IO[bytes]]:
        with self.local_path(descriptor).open("rb") as handle:
            yield handle


@dataclass
class PushCount:
    """What a push moved: blobs uploaded, mounted or already there, and the bytes uploaded."""

    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    uploaded_bytes: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)


class RegistrySink:
    """A registry repository as an image destination.

    Blobs are pushed HEAD first, then mounted from another repository of the registry that holds
    them (the base's, then those `record` lists, most recent first), then uploaded. Once a
    manifest referring to them is stored, the pushed blobs are recorded as held by this
    repository, so a later push of the same layers to yet another repository mounts them.
    """

    def __init__(
        self, client: oci.RegistryClient, ref: ImageRef, record: MountRecord | None = None
    ) -> None:
        self.client = client
        self.ref = ref
        self.record = record if record is not None else MountRecord()
        self.count = PushCount()
        self._unrecorded: list[str] = []

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.client.blob_size(self.ref.repository, descriptor.digest) is not None

    def mount_candidates(self, descriptor: Descriptor, source: Any) -> list[str]:
        """Repositories of this registry that may hold the blob, the likeliest first."""
        found: list[str] = []
        if isinstance(source, RegistrySource) and source.ref.location == self.ref.location:
            found.append(source.ref.repository)
        found += self.record.candidates(
            self.client.registry, descriptor.digest, self.ref.repository
        )
        return [r for r in dict.fromkeys(found) if r != self.ref.repository]

    def put_blob(self, descriptor: Descriptor, source: Any) -> None:
        if isinstance(source, RegistrySource):
            path = source.local_path(descriptor)
        elif isinstance(source, OciLayout):
            path = source.blob_path(descriptor.digest)
        else:
            raise TypeError(f"cannot push from {source!r}")
        outcome = self.client.push_blob(
            self.ref.repository,
            path,
            descriptor.digest,
            descriptor.size,
            mount_from=self.mount_candidates(descriptor, source),
        )
        self.count.outcomes[descriptor.digest] = str(outcome)
        self._unrecorded.append(descriptor.digest)
        if outcome is oci.BlobPush.UPLOADED:
            self.count.uploaded += 1
            self.count.uploaded_bytes += descriptor.size
        elif outcome is oci.BlobPush.MOUNTED:
            self.count.mounted += 1
        else:
            self.count.present += 1

    def put_manifest(self, media_type: str, content: bytes, tag: str) -> Descriptor:
        found = self.client.put_manifest(self.ref.repository, tag, content, media_type)
        if self._unrecorded:
            self.record.add(self.client.registry, self.ref.repository, self._unrecorded)
            self._unrecorded = []
        return Descriptor(media_type, found.digest, found.size)

    def find_image(self, tag: str) -> tuple[Descriptor, dict[str, Any]] | None:
        """The image manifest tagged `tag` in the repository and its config, or None."""
        try:
            document, found = self.client.get_manifest(self.ref.repository, tag, accept=_ACCEPT)
        except RegistryNotFoundError:
            return None
        media_type = str(document.get("mediaType") or found.media_type)
        if media_type not in MANIFEST_TYPES:
            return None
        try:
            config = Descriptor.from_json(document["config"])
        except (KeyError, TypeError, ValueError):
            return None
        data = self.client.fetch_bytes(self.ref.repository, _theirs(config))
        try:
            parsed = json.loads(data)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        return Descriptor(media_type, found.digest, found.size), parsed
