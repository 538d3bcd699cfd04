"""Image references on the command line: `oci-layout:DIR[:TAG]` and `oci://HOST[:PORT]/REPO[:TAG]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from venvstacks.image.layout import ImageError

__all__ = ["ImageRef", "parse_image_ref"]

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


@dataclass(frozen=True)
class ImageRef:
    """Where an image is read from or written to."""

    kind: str  # "oci-layout" or "oci"
    location: str  # the layout folder, or HOST[:PORT]
    repository: str = ""
    tag: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.location)

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.kind, self.location, self.repository, tag)

    def __str__(self) -> str:
        suffix = f":{self.tag}" if self.tag else ""
        if self.kind == "oci-layout":
            return f"oci-layout:{self.location}{suffix}"
        return f"oci://{self.location}/{self.repository}{suffix}"


def _split_tag(text: str) -> tuple[str, str | None]:
    head, sep, tail = text.rpartition(":")
    if sep and head and _TAG.fullmatch(tail) and "/" not in tail:
        return head, tail
    return text, None


def parse_image_ref(text: str, what: str = "image") -> ImageRef:
    """Parse a BASE or DEST argument; ImageError naming `what` when it is neither form."""
    if text.startswith("oci-layout:"):
        rest = text.removeprefix("oci-layout:")
        folder, tag = _split_tag(rest)
        if not folder:
            raise ImageError(f"{what} {text!r}: no folder after oci-layout:")
        return ImageRef("oci-layout", folder, "", tag)
    if text.startswith("oci://"):
        rest = text.removeprefix("oci://")
        host, _, path = rest.partition("/")
        if "@" in path:
            raise ImageError(f"{what} {text!r}: digests are not accepted here, use a tag")
        repository, tag = _split_tag(path)
        if not host or not repository or not _REPO.fullmatch(repository):
            raise ImageError(f"{what} {text!r}: expected oci://HOST[:PORT]/REPO[:TAG]")
        return ImageRef("oci", host, repository, tag)
    raise ImageError(
        f"{what} {text!r}: expected oci-layout:DIR[:TAG] or oci://HOST[:PORT]/REPO[:TAG]"
    )
