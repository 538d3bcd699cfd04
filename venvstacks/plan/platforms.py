"""Target platforms, their marker environments and the Linux/macOS target versions. Pure."""

from __future__ import annotations

import os
import platform
import re
import sysconfig
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_LINUX_TARGET",
    "DEFAULT_MACOSX_TARGET",
    "LinuxTarget",
    "MacOSTarget",
    "TargetPlatform",
    "build_platform",
    "marker_environment",
    "parse_linux_target",
    "parse_macosx_target",
    "uv_python_platform",
]


class TargetPlatform(StrEnum):
    """A platform a layer can be locked for (and built on)."""

    LINUX = "linux_x86_64"
    LINUX_AARCH64 = "linux_aarch64"
    MACOS_APPLE = "macosx_arm64"
    MACOS_INTEL = "macosx_x86_64"
    WINDOWS = "win_amd64"
    WINDOWS_ARM64 = "win_arm64"

    @property
    def os_family(self) -> str:
        """``linux``, ``macosx`` or ``win``."""
        return self.value.split("_", 1)[0]

    @property
    def machine(self) -> str:
        """The architecture part: ``x86_64``, ``aarch64``, ``arm64``, ``amd64``."""
        return self.value.split("_", 1)[1]

    @classmethod
    def default_set(cls) -> tuple[TargetPlatform, ...]:
        """Every platform, sorted: the default for runtimes and the start of inference."""
        return tuple(sorted(cls, key=str))


DEFAULT_LINUX_TARGET = "glibc@2.28"
DEFAULT_MACOSX_TARGET = "13.0"
_LIBC_VARIANTS = ("glibc",)


@dataclass(frozen=True)
class LinuxTarget:
    """A glibc version that Linux wheels must support: ``manylinux_X_Y`` or older."""

    libc: str
    version: tuple[int, int]

    @property
    def manylinux_tag(self) -> str:
        return f"manylinux_{self.version[0]}_{self.version[1]}"


@dataclass(frozen=True)
class MacOSTarget:
    """The oldest macOS version that macOS wheels must support."""

    version: tuple[int, int]


def parse_linux_target(text: str) -> LinuxTarget:
    """Parse ``glibc`` or ``glibc@X.Y``. Raises ValueError with a user-facing message."""
    variant, _, version = text.partition("@")
    if variant not in _LIBC_VARIANTS:
        raise ValueError(
            f"Linux libc variant must be one of {list(_LIBC_VARIANTS)}, not {variant!r}"
        )
    if not version:
        version = DEFAULT_LINUX_TARGET.partition("@")[2]
    match = re.fullmatch(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"Linux libc version must be of the form 'X.Y', not {version!r}")
    return LinuxTarget(variant, (int(match[1]), int(match[2])))


def parse_macosx_target(text: str) -> MacOSTarget:
    """Parse ``X`` or ``X.Y``. Raises ValueError with a user-facing message."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", text)
    if match is None:
        raise ValueError(f"macOS target must be of the form 'X' or 'X.Y', not {text!r}")
    return MacOSTarget((int(match[1]), int(match[2] or 0)))


def default_macosx_target() -> str:
    """``MACOSX_DEPLOYMENT_TARGET`` when set, else the built-in default."""
    return os.environ.get("MACOSX_DEPLOYMENT_TARGET") or DEFAULT_MACOSX_TARGET


_OS_MARKERS = {
    "linux": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux"},
    "macosx": {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin"},
    "win": {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows"},
}
_MARKER_MACHINE = {
    TargetPlatform.LINUX: "x86_64",
    TargetPlatform.LINUX_AARCH64: "aarch64",
    TargetPlatform.MACOS_APPLE: "arm64",
    TargetPlatform.MACOS_INTEL: "x86_64",
    TargetPlatform.WINDOWS: "AMD64",
    TargetPlatform.WINDOWS_ARM64: "ARM64",
}


def marker_environment(target: TargetPlatform, python_full_version: str) -> dict[str, str]:
    """A complete PEP 508 marker environment for CPython ``python_full_version`` on ``target``.

    Every key is filled in (nothing is taken from the host), so evaluation is the same wherever
    venvstacks runs.
    """
    major_minor = ".".join(python_full_version.split(".")[:2])
    env = {
        "implementation_name": "cpython",
        "implementation_version": python_full_version,
        "platform_python_implementation": "CPython",
        "python_version": major_minor,
        "python_full_version": python_full_version,
        "platform_machine": _MARKER_MACHINE[target],
        "platform_release": "",
        "platform_version": "",
    }
    env.update(_OS_MARKERS[target.os_family])
    return env


_UV_OS = {"linux": "manylinux", "macosx": "apple-darwin", "win": "pc-windows-msvc"}
_UV_ARCH = {"arm64": "aarch64", "amd64": "x86_64"}


_UV_MANYLINUX = ((2, 17), (2, 28), *((2, n) for n in range(31, 41)))
"""The glibc versions uv's --python-platform names (manylinux_2_17, _2_28, _2_31 to _2_40)."""


def _uv_manylinux(version: tuple[int, int]) -> tuple[int, int]:
    """The newest glibc uv can target that is not newer than `version` (older: the oldest)."""
    usable = [v for v in _UV_MANYLINUX if v <= version]
    return usable[-1] if usable else _UV_MANYLINUX[0]


def uv_python_platform(target: TargetPlatform, linux: LinuxTarget | None = None) -> str:
    """The value of uv's ``--python-platform`` for installing on ``target``."""
    arch = _UV_ARCH.get(target.machine, target.machine)
    if target.os_family == "linux":
        version = (linux or parse_linux_target(DEFAULT_LINUX_TARGET)).version
        major, minor = _uv_manylinux(version)
        return f"{arch}-manylinux_{major}_{minor}"
    return f"{arch}-{_UV_OS[target.os_family]}"


def build_platform() -> TargetPlatform:
    """The platform venvstacks is running on. Raises ValueError on an unsupported one."""
    plat = sysconfig.get_platform().lower()
    if plat.startswith("macosx-"):
        arch = plat.rsplit("-", 1)[1]
        if arch == "universal2":
            arch = platform.machine()
        plat = f"macosx_{arch}"
    plat = plat.replace("-", "_").replace(".", "_")
    aliases = {"win32": "win32", "win_amd64": "win_amd64", "win_arm64": "win_arm64"}
    plat = aliases.get(plat, plat)
    try:
        return TargetPlatform(plat)
    except ValueError:
        raise ValueError(f"unsupported build platform {plat!r}") from None
