"""OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/`): read, add, tag.

Blobs are written to a temporary file beside their final place and renamed once complete and
verified, so a layout never holds a partial blob under a digest name. `index.json` is replaced
atomically under an exclusive lock, so two processes tagging into one layout both land.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from venvstacks.errors import StackError
from venvstacks.image.media import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    canonical_json,
    descriptor_for,
)

__all__ = ["REF_NAME", "ImageError", "OciLayout", "copy_verified"]

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
_CHUNK = 1 << 20


class ImageError(StackError):
    """Reading a base image, checking it, or writing an image failed."""


def copy_verified(source: IO[bytes], dest: Path, digest: str) -> None:
    """Copy a stream to `dest` through a temporary sibling, checking its sha256 first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: source.read(_CHUNK), b""):
                hasher.update(block)
                out.write(block)
        if "sha256:" + hasher.hexdigest() != digest:
            raise ImageError(f"blob {digest} has the wrong content (sha256:{hasher.hexdigest()})")
        Path(tmp).chmod(0o644)
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OciLayout:
    """One OCI image layout folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path) -> OciLayout:
        """An existing layout; ImageError when `root` is not one."""
        if not (root / "oci-layout").is_file() or not (root / "index.json").is_file():
            raise ImageError(f"{root}: not an OCI image layout (no oci-layout and index.json)")
        return cls(root)

    @classmethod
    def create(cls, root: Path) -> OciLayout:
        """A layout at `root`, made if missing (an existing one is kept)."""
        if root.exists() and not root.is_dir():
            raise ImageError(f"{root}: exists and is not a folder")
        if root.is_dir() and any(root.iterdir()) and not (root / "oci-layout").is_file():
            raise ImageError(f"{root}: a non-empty folder that is not an OCI image layout")
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout = cls(root)
        with layout.locked():
            if not (root / "oci-layout").is_file():
                layout._write_atomic("oci-layout", canonical_json(_LAYOUT_FILE))
            if not (root / "index.json").is_file():
                layout._write_atomic("index.json", canonical_json(_empty_index()))
        return layout

    # --- blobs -----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or len(hexpart) != 64 or not hexpart.isalnum():
            raise ImageError(f"{self.root}: unsupported digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexpart

    def has_blob(self, descriptor: Descriptor) -> bool:
        path = self.blob_path(descriptor.digest)
        try:
            return path.stat().st_size == descriptor.size
        except OSError:
            return False

    def read_blob(self, descriptor: Descriptor, limit: int = 16 << 20) -> bytes:
        """A small blob (manifest, config, index), checked against its digest."""
        if descriptor.size > limit:
            raise ImageError(f"{self.root}: blob {descriptor.digest} is too large to read")
        try:
            data = self.blob_path(descriptor.digest).read_bytes()
        except OSError as exc:
            raise ImageError(f"{self.root}: missing blob {descriptor.digest} ({exc})") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
            raise ImageError(f"{self.root}: blob {descriptor.digest} is damaged")
        return data

    def read_json(self, descriptor: Descriptor) -> dict[str, Any]:
        try:
            data = json.loads(self.read_blob(descriptor))
        except ValueError:
            raise ImageError(f"{self.root}: blob {descriptor.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise ImageError(f"{self.root}: blob {descriptor.digest} is not a JSON object")
        return data

    @contextlib.contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[IO[bytes]]:
        try:
            handle = self.blob_path(descriptor.digest).open("rb")
        except OSError as exc:
            raise ImageError(f"{self.root}: missing blob {descriptor.digest} ({exc})") from None
        with handle:
            yield handle

    def write_blob(self, media_type: str, content: bytes) -> Descriptor:
        descriptor = descriptor_for(media_type, content)
        if not self.has_blob(descriptor):
            self._write_atomic(f"blobs/sha256/{descriptor.hex}", content)
        return descriptor

    def add_blob_file(self, path: Path, descriptor: Descriptor) -> None:
        """Put a complete blob file in place: a hard link when possible, else a checked copy."""
        if self.has_blob(descriptor):
            return
        dest = self.blob_path(descriptor.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".link-{os.getpid()}-{descriptor.hex[:12]}")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
            tmp.replace(dest)
            return
        except OSError:
            tmp.unlink(missing_ok=True)
        with path.open("rb") as source:
            copy_verified(source, dest, descriptor.digest)

    # --- index ------------------------------------------------------------------------------

    def index(self) -> list[Descriptor]:
        try:
            data = json.loads((self.root / "index.json").read_text(encoding="utf-8"))
            return [Descriptor.from_json(item) for item in data.get("manifests", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImageError(f"{self.root}/index.json: not a valid image index ({exc})") from None

    def find(self, tag: str | None) -> Descriptor:
        """The manifest or index tagged `tag` (None: the only one, else `latest`)."""
        entries = [d for d in self.index() if d.media_type in MANIFEST_TYPES | INDEX_TYPES]
        if tag is None:
            if len(entries) == 1:
                return entries[0]
            tag = "latest"
        for entry in entries:
            if entry.annotations.get(REF_NAME) == tag:
                return entry
        known = sorted({d.annotations.get(REF_NAME, "") for d in entries} - {""})
        raise ImageError(
            f"{self.root}: no image tagged {tag!r} (tags: {', '.join(known) or 'none'})"
        )

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        """Point `tag` at `descriptor` (replacing what it named before)."""
        tagged = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            {**descriptor.annotations, REF_NAME: tag},
            descriptor.platform,
        )
        with self.locked():
            kept = [d for d in self.index() if d.annotations.get(REF_NAME) != tag]
            document = _empty_index()
            document["manifests"] = [d.to_json() for d in [*kept, tagged]]
            self._write_atomic("index.json", json.dumps(document, indent=2).encode() + b"\n")

    # --- helpers ----------------------------------------------------------------------------

    def _write_atomic(self, relative: str, content: bytes) -> None:
        dest = self.root / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            Path(tmp).chmod(0o644)
            Path(tmp).replace(dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the layout's index (released when the process dies too)."""
        with open(self.root / ".venvstacks.lock", "a+b") as handle:
            try:
                import fcntl
            except ImportError:  # Windows: one writer at a time is the caller's business
                yield
                return
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _empty_index() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    }
