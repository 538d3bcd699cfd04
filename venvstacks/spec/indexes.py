"""Package index configuration: the stack's `[tool.uv]` table and per-layer index choices. Pure.

The common uv settings come from the spec's own `[tool.uv]` table, or from `venvstacks.uv.toml`
beside the spec when the spec has no such table (the spec wins outright, as in venvstacks 0.8.0).
`index` and `sources` are taken apart here because each layer composes its own index list from them;
every other key is passed through to uv verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from venvstacks.pep508 import canonical_name

__all__ = [
    "IndexSpec",
    "UvConfig",
    "layer_index_list",
    "layer_sources",
    "merge_package_indexes",
    "parse_uv_config",
]


@dataclass(frozen=True)
class IndexSpec:
    """One entry of `[[tool.uv.index]]`."""

    name: str | None
    url: str
    explicit: bool
    default: bool
    table: Mapping[str, Any]

    @property
    def is_common(self) -> bool:
        """Common indexes are searched by every layer: defaults, and those not marked explicit."""
        return self.default or not self.explicit


@dataclass(frozen=True)
class UvConfig:
    """The stack's common uv settings, parsed and checked."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    indexes: tuple[IndexSpec, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    exclude_newer: datetime | None = None
    origin: str = ""

    @property
    def named_indexes(self) -> dict[str, IndexSpec]:
        return {i.name: i for i in self.indexes if i.name}


def parse_uv_config(table: Mapping[str, Any], origin: str, problems: list[str]) -> UvConfig:
    """Split a `[tool.uv]` table into pass-through settings, indexes and sources."""
    settings = {k: v for k, v in table.items() if k not in ("index", "sources")}
    indexes = _parse_indexes(table.get("index", []), origin, problems)
    named = {i.name for i in indexes if i.name}
    sources = _parse_sources(table.get("sources", {}), named, origin, problems)
    exclude_newer = _parse_exclude_newer(settings.get("exclude-newer"), origin, problems)
    return UvConfig(settings, tuple(indexes), sources, exclude_newer, origin)


def _parse_indexes(raw: object, origin: str, problems: list[str]) -> list[IndexSpec]:
    if not isinstance(raw, list):
        problems.append(f"{origin}: 'index' must be an array of tables")
        return []
    result = []
    names: set[str] = set()
    for n, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            problems.append(f"{origin}: index entry {n} must be a table with a 'url' string")
            continue
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            problems.append(f"{origin}: index entry {n} has a non-string 'name'")
            continue
        if name in names:
            problems.append(f"{origin}: index name {name!r} is defined twice")
        if name:
            names.add(name)
        explicit, default = bool(entry.get("explicit", False)), bool(entry.get("default", False))
        result.append(IndexSpec(name, entry["url"], explicit, default, dict(entry)))
    return result


_DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _parse_sources(
    raw: object, named: set[str], origin: str, problems: list[str]
) -> dict[str, str]:
    if not isinstance(raw, dict):
        problems.append(f"{origin}: 'sources' must be a table")
        return {}
    result: dict[str, str] = {}
    for dist, source in raw.items():
        if not _DIST_NAME.fullmatch(str(dist)):
            problems.append(f"{origin}: sources: {dist!r} is not a valid distribution name")
            continue
        if not (isinstance(source, dict) and set(source) == {"index"}):
            problems.append(
                f"{origin}: common uv source for {dist!r} must be an index reference like "
                f'{{ index = "name" }}, not {source!r}'
            )
            continue
        index = source["index"]
        if index not in named:
            problems.append(f"{origin}: source for {dist!r} references unknown index {index!r}")
            continue
        canonical = canonical_name(dist)
        if canonical in result:
            problems.append(f"{origin}: sources name {canonical!r} twice after normalization")
        result[canonical] = index
    return result


def _parse_exclude_newer(raw: object, origin: str, problems: list[str]) -> datetime | None:
    if raw is None:
        return None
    return parse_timestamp(raw, f"{origin}: exclude-newer", problems)


def parse_timestamp(raw: object, where: str, problems: list[str]) -> datetime | None:
    """An ISO 8601 timestamp or date, as an aware UTC datetime."""
    text = raw.isoformat() if isinstance(raw, datetime) else str(raw)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{where} must be an ISO 8601 timestamp, not {text!r}")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def merge_package_indexes(
    where: str,
    own: Mapping[str, str],
    overrides: Mapping[str, str],
    inherited: Sequence[Mapping[str, str]],
    problems: list[str],
) -> dict[str, str]:
    """A layer's effective dist → index map: its dependencies' maps (in priority order), then its own.

    Two lower layers choosing different indexes for one distribution, or a layer overriding a lower
    layer's choice, is an error unless `index_overrides` says that the pair is expected.
    """
    merged: dict[str, str] = {}
    for lower in inherited:
        for dist, index in lower.items():
            if dist not in merged:
                merged[dist] = index
            elif merged[dist] != overrides.get(index, index):
                problems.append(
                    f"{where}: depends on layers with inconsistent package indexes for {dist!r} "
                    f"({merged[dist]!r} and {index!r}; set index_overrides = "
                    f'{{ {index} = "{merged[dist]}" }} to accept)'
                )
    for dist, index in own.items():
        lower_index = merged.get(dist)
        if lower_index is not None and index != overrides.get(lower_index, lower_index):
            problems.append(
                f"{where}: declares package index {index!r} for {dist!r}, but a lower layer uses "
                f'{lower_index!r} (set index_overrides = {{ {lower_index} = "{index}" }} to accept)'
            )
        merged[dist] = index
    return merged


def check_layer_indexes(
    where: str,
    package_indexes: Mapping[str, str],
    priority_indexes: Sequence[str],
    config: UvConfig,
    problems: list[str],
) -> None:
    """Every index a layer names must be a named index of the common configuration."""
    named = config.named_indexes
    for dist, index in package_indexes.items():
        if index not in named:
            problems.append(f"{where}: package_indexes maps {dist!r} to unknown index {index!r}")
    for index in priority_indexes:
        if index not in named:
            problems.append(f"{where}: priority_indexes names unknown index {index!r}")


def layer_index_list(
    config: UvConfig, package_indexes: Mapping[str, str], priority: Sequence[str]
) -> list[dict[str, Any]]:
    """The `index` list uv sees for one layer: priority, then referenced explicit, then common."""
    named = config.named_indexes
    result: list[dict[str, Any]] = []
    for name in priority:
        table = dict(named[name].table)
        table["explicit"] = False
        result.append(table)
    referenced = dict.fromkeys(package_indexes.values())
    for name in referenced:
        if name not in priority and named[name].explicit and not named[name].default:
            result.append(dict(named[name].table))
    for index in config.indexes:
        if index.is_common and index.name not in priority:
            result.append(dict(index.table))
    return result


def layer_sources(config: UvConfig, package_indexes: Mapping[str, str]) -> dict[str, Any]:
    """uv `sources` for one layer: the common ones, updated with the layer's merged choices."""
    merged = {**config.sources, **package_indexes}
    return {dist: {"index": index} for dist, index in sorted(merged.items())}
