"""Wheel entries of a pylock: platform-tag availability checks and local wheel paths. Pure.

`missing_wheels` tells the target platforms a package's wheels cannot serve (manylinux and macOS
tags against the layer's ``linux_target``/``macosx_target``); `availability_error` words the
failure; `relativise_wheels` rewrites absolute local wheel paths (``path`` or ``file:`` urls) to
POSIX paths relative to the lock file; `wheel_filename` names a wheel entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from venvstacks.errors import LockError
from venvstacks.plan.platforms import LinuxTarget, MacOSTarget, TargetPlatform

if TYPE_CHECKING:
    from tomlkit.items import InlineTable, Table

__all__ = [
    "WheelTargets",
    "availability_error",
    "local_wheel_path",
    "missing_wheels",
    "relativise_wheels",
    "wheel_filename",
]

# --- wheel availability ------------------------------------------------------------------------

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
_MACOSX = re.compile(r"macosx_(\d+)_(\d+)_(\w+)")
_ARM64_MACOS = (11, 0)


@dataclass(frozen=True)
class WheelTargets:
    linux: LinuxTarget
    macos: MacOSTarget


def _platform_tags(filename: str) -> set[str]:
    """The platform tags of a wheel filename (the last dash field, split on dots)."""
    return set(filename.removesuffix(".whl").rsplit("-", 1)[-1].split("."))


def _manylinux_version(tag: str, machine: str) -> tuple[int, int] | None:
    match = _MANYLINUX.fullmatch(tag)
    if match:
        return (int(match[1]), int(match[2])) if match[3] == machine else None
    legacy, _, arch = tag.partition("_")
    return _LEGACY_MANYLINUX.get(legacy) if arch == machine else None


def _supports(tag: str, target: TargetPlatform, limits: WheelTargets) -> bool:
    if tag == target.value:
        return True
    if target.os_family == "linux":
        version = _manylinux_version(tag, target.machine)
        return version is not None and version <= limits.linux.version
    if target.os_family == "macosx":
        match = _MACOSX.fullmatch(tag)
        if match is None or match[3] not in (target.machine, "universal2"):
            return False
        oldest = (
            max(limits.macos.version, _ARM64_MACOS)
            if target.machine == "arm64"
            else limits.macos.version
        )
        return (int(match[1]), int(match[2])) <= oldest
    return False


def missing_wheels(
    filenames: Iterable[str], applicable: Sequence[TargetPlatform], limits: WheelTargets
) -> list[TargetPlatform]:
    tags = {tag for name in filenames for tag in _platform_tags(name)}
    if "any" in tags:
        return []
    return [t for t in applicable if not any(_supports(tag, t, limits) for tag in tags)]


def _names(platforms: Iterable[TargetPlatform]) -> str:
    return str([str(p) for p in platforms])


def availability_error(
    env_name: str, missing: Mapping[str, set[TargetPlatform]], targets: Sequence[TargetPlatform]
) -> LockError:
    lines = ["Some packages did not have wheels for all target platforms:"]
    for name, gaps in missing.items():
        lines.append(f"  {name}: no wheels available for {_names(t for t in targets if t in gaps)}")
    unavailable = set().union(*missing.values())
    usable = [t for t in targets if t not in unavailable]
    if usable:
        lines.append(f"Set platforms to {_names(usable)} to limit to available wheels.")
    else:
        lines.append("There are no platforms with wheels available for all packages.")
    return LockError(env_name, "\n".join(lines))


# --- wheel entries -----------------------------------------------------------------------------


def wheel_filename(wheel: Mapping[str, Any]) -> str:
    """The wheel's filename from ``name``, ``path`` or ``url`` (unquoted)."""
    if wheel.get("name"):
        return str(wheel["name"])
    if wheel.get("path"):
        return PurePosixPath(str(wheel["path"]).replace("\\", "/")).name
    return unquote(PurePosixPath(urlsplit(str(wheel.get("url", ""))).path).name)


def _is_absolute(path: str) -> bool:
    return PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()


def local_wheel_path(wheel: Mapping[str, Any]) -> str | None:
    """The absolute local path of a ``path`` or ``file:`` ``url`` wheel entry, else None."""
    if "path" in wheel:
        path = str(wheel["path"])
        return path if _is_absolute(path) else None
    url = str(wheel.get("url", ""))
    if not url.startswith("file:"):
        return None
    parts = urlsplit(url)
    path = unquote(parts.path)
    if re.match(r"/[A-Za-z]:", path):
        path = path[1:]  # file:///C:/wheels/x.whl
    if parts.netloc and parts.netloc != "localhost":
        path = f"//{parts.netloc}{path}"  # UNC share
    return path


def _relative_posix(path: str, start: Path, env_name: str) -> str:
    try:
        relative = os.path.relpath(path, start)
    except ValueError:  # no common prefix, e.g. another drive
        raise LockError(env_name, f"Unable to locate {path!r} relative to {str(start)!r}") from None
    return PurePath(relative).as_posix()


def _inline_table(pairs: Iterable[tuple[str, Any]]) -> InlineTable:
    """An inline table spelled as uv writes them: ``{ key = value, ... }``."""
    import tomlkit  # only when a lock is written (a costly import)
    from tomlkit.items import InlineTable

    body = ", ".join(
        f"{tomlkit.key(k).as_string()} = {tomlkit.item(v).as_string()}" for k, v in pairs
    )
    table = tomlkit.parse(f"x = {{ {body} }}")["x"]
    assert isinstance(table, InlineTable)  # always: parsed from an inline table literal
    return table


def relativise_wheels(entry: Table, lock_dir: Path, env_name: str) -> None:
    """Rewrite absolute local wheel paths and ``file:`` urls to a POSIX ``path`` from ``lock_dir``."""
    wheels = entry.get("wheels", [])
    for index, wheel in enumerate(wheels):
        local = local_wheel_path(wheel)
        if local is None:
            continue
        relative = _relative_posix(local, lock_dir, env_name)
        wheels[index] = _inline_table(
            ("path", relative) if key in ("path", "url") else (key, value)
            for key, value in wheel.items()
        )
