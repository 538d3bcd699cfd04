"""Runtime requests and sources: parsing ``cpython@X.Y[.Z]`` and archive names, choosing a version.

Pure: no file system or network access, except `archive_dirs_from` reading the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from venvstacks.plan.platforms import TargetPlatform

if TYPE_CHECKING:
    from packaging.version import Version

__all__ = [
    "ARCHIVE_DIRS_ENV",
    "BASE_URL_ENV",
    "HOST_PACKED_WARNING",
    "PBS_TARGETS",
    "ArchiveCandidate",
    "Fallback",
    "Implementation",
    "RuntimeKind",
    "RuntimeRequest",
    "RuntimeSource",
    "archive_dirs_from",
    "parse_archive_name",
    "parse_implementation",
    "platform_triple",
    "select_archive",
]

RuntimeKind = Literal["archive", "download", "host-packed"]
Implementation = Literal["cpython", "pypy"]
Fallback = Literal["none", "host"]

ARCHIVE_DIRS_ENV = "VENVSTACKS_RUNTIME_ARCHIVES"
"""Environment variable: runtime archive folders, separated by ``os.pathsep``."""
BASE_URL_ENV = "PBS_INSTALLER_BASE_URL"
"""pbs-installer's own setting for a download mirror; read at call time, not import time."""
HOST_PACKED_WARNING = (
    "host-packed runtime: it needs the host distribution's system libraries "
    "(libssl, libsqlite3, libffi, ...) and is not portable to other Linux distributions"
)

_IMPLEMENTATIONS: dict[str, Implementation] = {"cpython": "cpython", "pypy": "pypy"}
_ARCH_ALIASES = {"32": "x86", "amd64": "x86_64", "arm64": "aarch64"}
_SPEC_RE = re.compile(
    r"(?P<impl>[a-z]+)@(?P<version>\d+\.\d+(?:\.\d+)?)(?:-(?P<arch>[A-Za-z0-9_]+))?"
)
_ARCHIVE_RE = re.compile(
    r"cpython-(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)(?:\+(?P<tag>[^-]+))?"
    r"-(?P<triple>.+?)-install_only(?:_stripped)?\.tar\.(?:gz|zst|xz)"
)
# TargetPlatform -> (python-build-standalone triple, pbs-installer platform, pbs-installer arch)
PBS_TARGETS = {
    TargetPlatform.LINUX: ("x86_64-unknown-linux-gnu", "linux", "x86_64"),
    TargetPlatform.LINUX_AARCH64: ("aarch64-unknown-linux-gnu", "linux", "aarch64"),
    TargetPlatform.MACOS_APPLE: ("aarch64-apple-darwin", "macos", "aarch64"),
    TargetPlatform.MACOS_INTEL: ("x86_64-apple-darwin", "macos", "x86_64"),
    TargetPlatform.WINDOWS: ("x86_64-pc-windows-msvc", "windows", "x86_64"),
    TargetPlatform.WINDOWS_ARM64: ("aarch64-pc-windows-msvc", "windows", "aarch64"),
}


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeRequest:
    """A parsed ``python_implementation``: ``cpython@3.11.7``, ``cpython@3.11``, ``pypy@3.10``.

    Unpacks as ``(implementation, version)``; ``arch`` holds the optional ``-arch`` suffix.
    """

    implementation: Implementation
    version: str
    """``X.Y.Z`` (exactly that release) or ``X.Y`` (the newest available ``X.Y.*``)."""
    arch: str | None = None

    def __iter__(self) -> Iterator[str]:
        return iter((self.implementation, self.version))

    def __str__(self) -> str:
        return f"{self.implementation}@{self.version}"

    @property
    def exact(self) -> bool:
        """True when a full ``X.Y.Z`` release was asked for."""
        return self.version.count(".") == 2


@dataclass(frozen=True)
class RuntimeSource:
    """Where a runtime's interpreter comes from: a verified archive, ready to install."""

    archive: Path
    sha256: str
    kind: RuntimeKind
    description: str
    """For people and layer metadata, e.g. ``host-packed from /root/.pyenv/versions/3.11.7``."""
    version: str
    """The full ``X.Y.Z`` version of the interpreter in the archive."""
    implementation: str = "cpython"
    portable: bool = True
    """False when the runtime depends on the build host's system libraries."""
    warning: str | None = None
    notice: str | None = None
    """For people, once: why this source was used and how to choose another (host fallback)."""


@dataclass(frozen=True)
class ArchiveCandidate:
    """A python-build-standalone ``install_only`` archive found in an archive folder."""

    path: Path
    version: str
    triple: str
    build_tag: str | None

    @property
    def host_packed(self) -> bool:
        """True for archives made by ``venvstacks runtime pack`` (build tag ``local``)."""
        return self.build_tag == "local"


# ---------------------------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------------------------


def parse_implementation(spec: str) -> RuntimeRequest:
    """Parse ``impl@X.Y[.Z][-arch]``. Raises ValueError with a user-facing message."""
    match = _SPEC_RE.fullmatch(spec.strip())
    if match is None:
        msg = (
            f"python_implementation must look like 'cpython@3.12' or 'cpython@3.12.7', not {spec!r}"
        )
        raise ValueError(msg)
    if match["impl"] not in _IMPLEMENTATIONS:
        msg = (
            f"python_implementation {spec!r}: implementation must be one of "
            f"{', '.join(_IMPLEMENTATIONS)}"
        )
        raise ValueError(msg)
    arch = match["arch"]
    if arch is not None:
        arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    return RuntimeRequest(_IMPLEMENTATIONS[match["impl"]], match["version"], arch)


def platform_triple(platform: TargetPlatform) -> str:
    """The python-build-standalone target triple for ``platform``."""
    return PBS_TARGETS[platform][0]


def parse_archive_name(name: str) -> tuple[str, str, str | None] | None:
    """``(version, triple, build tag)`` for an ``install_only`` archive name, else None."""
    match = _ARCHIVE_RE.fullmatch(name)
    if match is None:
        return None
    return match["version"], match["triple"], match["tag"]


def _parsed_version(text: str) -> Version | None:
    from packaging.version import InvalidVersion, Version  # only when choosing an archive

    try:
        return Version(text)
    except InvalidVersion:
        return None


def select_archive(
    request: RuntimeRequest, candidates: Sequence[ArchiveCandidate]
) -> ArchiveCandidate | None:
    """The archive satisfying ``request``: the exact release, or the newest final ``X.Y.*``.

    Among archives of the chosen version, the first in ``candidates`` wins (folder order).
    """
    if request.implementation != "cpython":
        return None
    if request.exact:
        return next((c for c in candidates if c.version == request.version), None)
    best: tuple[Version, ArchiveCandidate] | None = None
    for candidate in candidates:
        version = _parsed_version(candidate.version)
        if version is None or version.is_prerelease:
            continue
        if f"{version.major}.{version.minor}" != request.version:
            continue
        if best is None or version > best[0]:
            best = (version, candidate)
    return None if best is None else best[1]


def archive_dirs_from(
    cli_dirs: Iterable[str | Path] = (),
    env: Mapping[str, str] | None = None,
    config_dirs: Iterable[str | Path] = (),
) -> tuple[Path, ...]:
    """Runtime archive folders: CLI ones first, then ``VENVSTACKS_RUNTIME_ARCHIVES``, then config.

    Duplicates are dropped (first occurrence kept); ``~``, ``..`` and symlinks are resolved.
    """
    source = os.environ if env is None else env
    from_env = [part for part in source.get(ARCHIVE_DIRS_ENV, "").split(os.pathsep) if part]
    seen: dict[Path, None] = {}
    for entry in [*cli_dirs, *from_env, *config_dirs]:
        seen.setdefault(Path(os.path.realpath(Path(entry).expanduser())), None)
    return tuple(seen)
