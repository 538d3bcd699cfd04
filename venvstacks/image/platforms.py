"""Multi-platform images: per-platform tags, and an OCI image index over the platforms' images.

Each platform's image is built on a machine of that platform (a CI job each) and written under
`<tag>-<os>-<arch>`; `--platform` given more than once then writes the index under `<tag>`,
over the images found at those tags (this machine's is built first when it is one of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from venvstacks.image.layout import ImageError
from venvstacks.image.media import INDEX, Descriptor, canonical_json, index_document

__all__ = ["ManifestFinder", "host_platform", "parse_platform", "platform_tag", "write_index"]

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ManifestFinder(Protocol):
    """A destination that can look up the manifest and config of a tag it holds."""

    def find_image(self, tag: str) -> tuple[Descriptor, dict[str, Any]] | None: ...

    def put_manifest(self, media_type: str, content: bytes, tag: str) -> Descriptor: ...


def parse_platform(text: str) -> str:
    """`os/arch[/variant]`, checked; ImageError otherwise."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"--platform {text!r}: expected OS/ARCH, e.g. linux/amd64")
    return text


def host_platform(build_platform: str) -> str:
    """This machine's platform in OCI terms, from venvstacks' name (`linux_x86_64`)."""
    system, _, machine = str(build_platform).partition("_")
    return f"{system}/{_ARCHES.get(machine, machine)}"


def platform_tag(tag: str, platform: str) -> str:
    """The tag a platform's own image is written under: `<tag>-<os>-<arch>[-<variant>]`."""
    return f"{tag}-{platform.replace('/', '-')}"


def _platform_of(config: dict[str, Any]) -> dict[str, str]:
    found = {"os": str(config.get("os", "")), "architecture": str(config.get("architecture", ""))}
    if config.get("variant"):
        found["variant"] = str(config["variant"])
    return found


def write_index(
    dest: ManifestFinder, where: str, tag: str, platforms: Sequence[str]
) -> tuple[Descriptor, list[Descriptor]]:
    """Write the image index under `tag` over the images at each platform's tag."""
    entries = []
    for platform in platforms:
        ptag = platform_tag(tag, platform)
        found = dest.find_image(ptag)
        if found is None:
            raise ImageError(
                f"{where}: no {platform} image at tag {ptag!r} "
                f"(build it on a {platform} machine with --platform {platform} first)"
            )
        descriptor, config = found
        actual = _platform_of(config)
        wanted = platform.split("/")
        if [actual["os"], actual["architecture"]] != wanted[:2]:
            raise ImageError(
                f"{where}: the image at tag {ptag!r} is for "
                f"{actual['os']}/{actual['architecture']}, not {platform}"
            )
        entries.append(
            Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, {}, actual)
        )
    document = canonical_json(index_document(entries))
    return dest.put_manifest(INDEX, document, tag), entries
