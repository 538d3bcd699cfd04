"""The OCI distribution API venvstacks needs: blobs (HEAD, mount, streamed upload, verified
download) and manifests (PUT, GET), each retried as a whole on transient failures.

Endpoints used: `GET /v2/`, `HEAD|GET /v2/<repo>/blobs/<digest>`, `POST
/v2/<repo>/blobs/uploads/[?mount=<digest>&from=<repo>]` then one streamed `PUT <location>&digest=`,
`HEAD|GET|PUT /v2/<repo>/manifests/<reference>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Self

from venvstacks.oci.auth import Credentials
from venvstacks.oci.errors import (
    DigestMismatchError,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
)
from venvstacks.oci.reference import Reference
from venvstacks.oci.transport import (
    BLOCK,
    Response,
    TransientError,
    Transport,
    TransportOptions,
    registry_message,
)

__all__ = [
    "INDEX_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "BlobPush",
    "Descriptor",
    "RegistryClient",
    "file_digest",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}"


class BlobPush(StrEnum):
    """What pushing one blob took."""

    PRESENT = "present"  # the repository had it (HEAD)
    MOUNTED = "mounted"  # linked from another repository of the registry
    UPLOADED = "uploaded"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: media type, digest and size (plus optional annotations)."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _with_query(location: str, **params: str) -> str:
    """Add query parameters to an upload location, keeping its own (its `_state` token)."""
    separator = "&" if urllib.parse.urlsplit(location).query else "?"
    return location + separator + urllib.parse.urlencode(params)


class RegistryClient:
    """The distribution API on one registry (`reference.host`), for any of its repositories."""

    def __init__(
        self,
        reference: Reference,
        options: TransportOptions | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.reference = reference
        self.transport = Transport(reference, options or TransportOptions(), credentials)
        self.registry = self.transport.registry

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors -------------------------------------------------------------------------------

    def _fail(
        self, response: Response, what: str, repository: str, layer: str | None = None
    ) -> RegistryError:
        detail = f"{what} answered {response.status}{registry_message(response.body)}"
        kind: type[RegistryError] = RegistryError
        if response.status in (401, 403):
            kind = RegistryAuthError
            detail = f"{what}: access denied ({response.status}{registry_message(response.body)})"
        elif response.status == 404:
            kind = RegistryNotFoundError
        return kind(self.registry, detail, repository=repository, layer=layer)

    def _run(self, what: str, operation: Any, repository: str, layer: str | None) -> Any:
        try:
            return self.transport.retrying(what, operation)
        except RegistryError as exc:
            raise exc.about(repository=repository, layer=layer) from None

    # -- API ----------------------------------------------------------------------------------

    def ping(self, repository: str) -> None:
        """Check that the registry answers and accepts the credentials (`GET /v2/`)."""

        def attempt() -> None:
            response = self.transport.request(
                "GET", "/v2/", scopes=[f"repository:{repository}:pull"]
            )
            if response.status != 200:
                raise self._fail(response, "GET /v2/", repository)

        self._run("GET /v2/", attempt, repository, None)

    def blob_size(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        """The size of a blob the repository holds, or None (`HEAD`)."""
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"

        def attempt() -> int | None:
            path = f"/v2/{repository}/blobs/{digest}"
            response = self.transport.request("HEAD", path, scopes=[scope])
            if response.status == 200:
                length = response.header("Content-Length")
                return int(length) if length and length.isdigit() else -1
            if response.status == 404:
                return None
            raise self._fail(response, f"HEAD blob {digest[:19]}", repository)

        result: int | None = self._run("HEAD blob", attempt, repository, None)
        return result

    def _start_upload(
        self, repository: str, digest: str, mount_from: str | None, layer: str | None
    ) -> str | None:
        """POST an upload (or a mount): None when mounted, else the upload location."""
        query = (
            f"?{urllib.parse.urlencode({'mount': digest, 'from': mount_from})}"
            if mount_from
            else ""
        )
        scopes = [f"repository:{repository}:pull,push"]
        if mount_from:
            scopes.append(f"repository:{mount_from}:pull")
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/{query}", scopes=scopes
        )
        if response.status == 201 and mount_from:
            return None
        location = response.header("Location")
        if response.status != 202 or not location:
            raise self._fail(response, "starting an upload", repository, layer)
        return urllib.parse.urljoin(self.transport.url("/"), location)

    def _upload(
        self,
        repository: str,
        path: Path,
        digest: str,
        size: int,
        layer: str | None,
        mount_from: str | None,
    ) -> BlobPush:
        location = self._start_upload(repository, digest, mount_from, layer)
        if location is None:
            return BlobPush.MOUNTED

        def body() -> BinaryIO:
            return path.open("rb")

        response = self.transport.request(
            "PUT",
            _with_query(location, digest=digest),
            scopes=[f"repository:{repository}:pull,push"],
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body,
        )
        if response.status == 400 and b"DIGEST_INVALID" in response.body:
            raise RegistryError(
                self.registry,
                f"the registry computed another digest than {digest} for {path} "
                "(did the file change while it was uploaded?)",
                repository=repository,
                layer=layer,
            )
        if response.status != 201:
            raise self._fail(response, "uploading the blob", repository, layer)
        return BlobPush.UPLOADED

    def push_blob(
        self,
        repository: str,
        path: Path,
        digest: str,
        size: int,
        *,
        layer: str | None = None,
        mount_from: Iterable[str] = (),
    ) -> BlobPush:
        """Make sure the repository has the blob: HEAD first, then a mount, then an upload."""
        candidates = [r for r in dict.fromkeys(mount_from) if r != repository]

        def attempt() -> BlobPush:
            if self.blob_size(repository, digest, push=True) is not None:
                return BlobPush.PRESENT
            for other in candidates:
                pushed = self._upload_or_mount(repository, path, digest, size, layer, other)
                if pushed is not None:
                    return pushed
            return self._upload(repository, path, digest, size, layer, None)

        result: BlobPush = self._run("pushing a blob", attempt, repository, layer)
        return result

    def _upload_or_mount(
        self, repository: str, path: Path, digest: str, size: int, layer: str | None, other: str
    ) -> BlobPush | None:
        """Try a mount from `other`; None when that repository may not be read (try the next)."""
        try:
            return self._upload(repository, path, digest, size, layer, other)
        except RegistryAuthError:
            return None

    def push_bytes(
        self, repository: str, data: bytes, media_type: str, *, layer: str | None = None
    ) -> Descriptor:
        """Push a small blob (a config document) held in memory."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

        def attempt() -> None:
            if self.blob_size(repository, digest, push=True) is not None:
                return
            location = self._start_upload(repository, digest, None, layer)
            assert location is not None
            response = self.transport.request(
                "PUT",
                _with_query(location, digest=digest),
                scopes=[f"repository:{repository}:pull,push"],
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                },
                body=data,
            )
            if response.status != 201:
                raise self._fail(response, "uploading a config blob", repository, layer)

        self._run("pushing a config blob", attempt, repository, layer)
        return Descriptor(media_type, digest, len(data))

    def put_manifest(
        self,
        repository: str,
        reference: str,
        document: bytes,
        media_type: str,
        *,
        layer: str | None = None,
    ) -> Descriptor:
        """PUT a manifest or index under a tag (or its digest); its descriptor."""
        digest = f"sha256:{hashlib.sha256(document).hexdigest()}"

        def attempt() -> None:
            response = self.transport.request(
                "PUT",
                f"/v2/{repository}/manifests/{reference}",
                scopes=[f"repository:{repository}:pull,push"],
                headers={"Content-Type": media_type, "Content-Length": str(len(document))},
                body=document,
            )
            if response.status != 201:
                raise self._fail(response, f"PUT manifest {reference}", repository, layer)
            echoed = response.header("Docker-Content-Digest")
            if echoed and echoed != digest:
                raise DigestMismatchError(
                    self.registry,
                    f"stored manifest {reference} as {echoed}, not {digest}",
                    repository=repository,
                    layer=layer,
                )

        self._run(f"PUT manifest {reference}", attempt, repository, layer)
        return Descriptor(media_type, digest, len(document))

    def get_manifest(
        self,
        repository: str,
        reference: str,
        *,
        layer: str | None = None,
        accept: Sequence[str] = (),
    ) -> tuple[dict[str, Any], Descriptor]:
        """GET a manifest or index by tag or digest, checked against its digest when known.

        `accept`: media types accepted besides the OCI manifest and index (a registry converts,
        or refuses, a stored manifest whose type the request does not accept).
        """

        def attempt() -> tuple[bytes, str]:
            response = self.transport.request(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                scopes=[f"repository:{repository}:pull"],
                headers={"Accept": ", ".join([_ACCEPT, *accept])},
            )
            if response.status != 200:
                what = "tag" if not reference.startswith("sha256:") else "manifest"
                raise self._fail(response, f"GET {what} {reference}", repository, layer)
            return response.body, response.header("Content-Type") or ""

        body, media_type = self._run(f"GET manifest {reference}", attempt, repository, layer)
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                self.registry,
                f"manifest {reference} arrived as {digest}",
                repository=repository,
                layer=layer,
            )
        try:
            document = json.loads(body)
        except ValueError:
            raise RegistryError(
                self.registry,
                f"manifest {reference} is not JSON",
                repository=repository,
                layer=layer,
            ) from None
        if not isinstance(document, dict):
            raise RegistryError(
                self.registry,
                f"manifest {reference} is not a JSON object",
                repository=repository,
                layer=layer,
            )
        return document, Descriptor(
            media_type or str(document.get("mediaType", "")), digest, len(body)
        )

    def fetch_bytes(
        self, repository: str, descriptor: Descriptor, *, layer: str | None = None
    ) -> bytes:
        """A small blob (a config document) in memory, checked against its digest and size."""

        def attempt() -> bytes:
            response = self.transport.request(
                "GET",
                f"/v2/{repository}/blobs/{descriptor.digest}",
                scopes=[f"repository:{repository}:pull"],
            )
            if response.status != 200:
                raise self._fail(response, f"GET blob {descriptor.digest[:19]}", repository, layer)
            return response.body

        data: bytes = self._run("GET config blob", attempt, repository, layer)
        actual = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if actual != descriptor.digest or len(data) != descriptor.size:
            raise DigestMismatchError(
                self.registry,
                f"blob {descriptor.digest} arrived as {actual} ({len(data)} bytes)",
                repository=repository,
                layer=layer,
            )
        return data

    def fetch_blob(
        self, repository: str, descriptor: Descriptor, dest: Path, *, layer: str | None = None
    ) -> None:
        """Stream a blob into `dest`, hashing as it arrives; `dest` only appears when it matches."""
        dest.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> None:
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    actual, size = self._download(repository, descriptor, out, layer)
                if actual != descriptor.digest or size != descriptor.size:
                    raise DigestMismatchError(
                        self.registry,
                        f"blob {descriptor.digest} arrived as {actual} ({size} of {descriptor.size} bytes)",
                        repository=repository,
                        layer=layer,
                    )
                Path(name).replace(dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    Path(name).unlink()

        self._run("GET blob", attempt, repository, layer)

    def _download(
        self, repository: str, descriptor: Descriptor, out: BinaryIO, layer: str | None
    ) -> tuple[str, int]:
        response = self.transport.request(
            "GET",
            f"/v2/{repository}/blobs/{descriptor.digest}",
            scopes=[f"repository:{repository}:pull"],
            stream=True,
        )
        if response.status != 200:
            raise self._fail(response, f"GET blob {descriptor.digest[:19]}", repository, layer)
        digest = hashlib.sha256()
        size = 0
        blocks = response.stream()
        try:
            while size <= descriptor.size:
                try:
                    block = next(blocks, b"")
                except (OSError, http.client.HTTPException) as exc:
                    raise TransientError(
                        f"the download broke off after {size} bytes ({type(exc).__name__})"
                    ) from None
                if not block:
                    break
                digest.update(block)
                size += len(block)
                try:
                    out.write(block)
                except OSError as exc:
                    raise RegistryError(
                        self.registry,
                        f"cannot write the download: {exc.strerror or exc}",
                        repository=repository,
                        layer=layer,
                    ) from None
        finally:
            response.close()
        return f"sha256:{digest.hexdigest()}", size


def descriptors(items: Sequence[dict[str, Any]]) -> list[Descriptor]:
    """Descriptors from a manifest's `layers` or an index's `manifests` list."""
    found = []
    for item in items:
        notes = item.get("annotations") or {}
        found.append(
            Descriptor(
                str(item["mediaType"]),
                str(item["digest"]),
                int(item["size"]),
                tuple(sorted((str(k), str(v)) for k, v in notes.items())),
            )
        )
    return found
