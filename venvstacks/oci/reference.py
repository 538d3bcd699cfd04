"""Registry references: `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from venvstacks.errors import StackError

__all__ = ["SCHEME", "Reference", "check_tag", "is_registry_url", "parse_reference"]

SCHEME = "oci://"
# The distribution spec's grammar for repository names, tags and digests.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?")


@dataclass(frozen=True)
class Reference:
    """A repository in a registry, optionally with a tag or a digest."""

    host: str  # as written, with the port if one was given: "127.0.0.1:5000", "ghcr.io"
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def hostname(self) -> str:
        name = self.host.rsplit(":", 1)[0] if self._has_port else self.host
        return name.strip("[]")

    @property
    def _has_port(self) -> bool:
        return ":" in self.host and not self.host.endswith("]")

    def port(self, tls: bool) -> int:
        return int(self.host.rsplit(":", 1)[1]) if self._has_port else (443 if tls else 80)

    def registry(self, tls: bool = True) -> str:
        """`host:port`, the way errors name the registry."""
        return f"{self.hostname}:{self.port(tls)}"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.host, self.repository, tag, None)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_registry_url(text: str) -> bool:
    return text.startswith(SCHEME)


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise StackError(
            f"{tag!r} is not a valid OCI tag (letters, digits, '_', '.', '-'; at most 128)"
        )
    return tag


def parse_reference(text: str, *, allow_tag: bool = True) -> Reference:
    """Parse `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`; StackError naming the problem otherwise."""
    if not text.startswith(SCHEME):
        raise StackError(f"{text!r}: a registry reference starts with {SCHEME}")
    rest = text[len(SCHEME) :]
    host, _, path = rest.partition("/")
    if not host or not path or not _HOST.fullmatch(host):
        raise StackError(f"{text!r}: expected {SCHEME}HOST[:PORT]/REPOSITORY[:TAG]")
    digest = tag = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise StackError(f"{text!r}: {digest!r} is not a sha256 digest")
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        check_tag(tag)
    if not _REPOSITORY.fullmatch(path):
        raise StackError(
            f"{text!r}: {path!r} is not a valid repository name (lowercase letters, digits, "
            "separators '.', '_', '-' and '/')"
        )
    if (tag or digest) and not allow_tag:
        raise StackError(f"{text!r}: give the repository without a tag (use --tag)")
    return Reference(host, path, tag, digest)
