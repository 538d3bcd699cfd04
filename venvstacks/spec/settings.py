"""venvstacks' own settings from the spec's `[tool.venvstacks]` table. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from venvstacks.paths import canonical_dir

__all__ = ["ARCHIVE_FORMATS", "RUNTIME_FALLBACKS", "ToolSettings", "parse_tool_settings"]

RUNTIME_FALLBACKS = ("none", "host")
ARCHIVE_FORMATS = ("tar.xz", "tar.gz", "tar.zst", "zip")
_KEYS = (
    "runtime-archives",
    "runtime-fallback",
    "archive-format",
    "compression-level",
    "build-dir",
    "output-dir",
)


@dataclass(frozen=True)
class ToolSettings:
    """Settings a stack may carry for venvstacks itself (CLI options override them)."""

    runtime_archives: tuple[Path, ...] = ()
    runtime_fallback: Literal["none", "host"] = "none"
    archive_format: str | None = None
    compression_level: int | None = None
    build_dir: Path | None = None
    output_dir: Path | None = None


def parse_tool_settings(raw: object, spec_dir: Path, problems: list[str]) -> ToolSettings:
    """Check `[tool.venvstacks]`; relative paths are taken from the spec's folder."""
    where = "[tool.venvstacks]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be a table")
        return ToolSettings()
    for key in sorted(set(raw) - set(_KEYS)):
        hint = difflib.get_close_matches(key, _KEYS, n=1)
        problems.append(
            f"{where}: unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    archives = _paths(raw.get("runtime-archives", []), spec_dir, where, problems)
    fallback = _choice(raw, "runtime-fallback", RUNTIME_FALLBACKS, where, problems) or "none"
    fmt = _choice(raw, "archive-format", ARCHIVE_FORMATS, where, problems)
    level = raw.get("compression-level")
    if level is not None and (
        not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 22
    ):
        problems.append(
            f"{where}: compression-level must be a whole number from 0 to 22, not {level!r}"
        )
        level = None
    return ToolSettings(
        runtime_archives=archives,
        runtime_fallback="host" if fallback == "host" else "none",
        archive_format=fmt,
        compression_level=level,
        build_dir=_path(raw, "build-dir", spec_dir, where, problems),
        output_dir=_path(raw, "output-dir", spec_dir, where, problems),
    )


def _choice(
    raw: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str, problems: list[str]
) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if value not in allowed:
        problems.append(f"{where}: {key} must be one of {list(allowed)}, not {value!r}")
        return None
    return str(value)


def _paths(value: object, spec_dir: Path, where: str, problems: list[str]) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: runtime-archives must be a path or an array of paths")
        return ()
    return tuple(canonical_dir(spec_dir / Path(v).expanduser()) for v in value)


def _path(
    raw: Mapping[str, Any], key: str, spec_dir: Path, where: str, problems: list[str]
) -> Path | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: {key} must be a path")
        return None
    return canonical_dir(spec_dir / Path(value).expanduser())
