"""Checks for the fields of one layer table in a stack spec. Pure: values in, problems out.

Every checker appends user-facing problem strings to a `Problems` list instead of raising, so that
a spec with several mistakes reports all of them in one run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from venvstacks.pep508 import InvalidRequirementText, canonical_name, normalised_requirement
from venvstacks.plan.names import LayerKind
from venvstacks.plan.platforms import TargetPlatform, parse_linux_target, parse_macosx_target

__all__ = [
    "COMMON_KEYS",
    "KIND_KEYS",
    "LEGACY_KEYS",
    "NAME_PATTERN",
    "NAME_RULE",
    "LayerTable",
    "Problems",
]

COMMON_KEYS = frozenset(
    {
        "name",
        "requirements",
        "platforms",
        "versioned",
        "linux_target",
        "macosx_target",
        "dynlib_exclude",
        "package_indexes",
        "priority_indexes",
        "index_overrides",
    }
)
KIND_KEYS: Mapping[LayerKind, frozenset[str]] = {
    LayerKind.RUNTIME: COMMON_KEYS | {"python_implementation"},
    LayerKind.FRAMEWORK: COMMON_KEYS | {"runtime", "frameworks"},
    LayerKind.APPLICATION: COMMON_KEYS
    | {"runtime", "frameworks", "launch_module", "support_modules"},
}
LEGACY_KEYS = frozenset({"build_requirements", "fully_versioned_name"})
REQUIRED_KEYS: Mapping[LayerKind, tuple[str, ...]] = {
    LayerKind.RUNTIME: ("name", "requirements", "python_implementation"),
    LayerKind.FRAMEWORK: ("name", "requirements"),
    LayerKind.APPLICATION: ("name", "requirements", "launch_module"),
}

_TYPE_NAMES = {str: "a string", bool: "true or false", list: "an array", dict: "a table"}


@dataclass
class Problems:
    """An accumulator of problems found in one spec file."""

    items: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)


@dataclass
class LayerTable:
    """One `[[runtimes]]`/`[[frameworks]]`/`[[applications]]` table being checked."""

    kind: LayerKind
    index: int
    table: Mapping[str, object]
    problems: Problems

    @property
    def where(self) -> str:
        name = self.table.get("name")
        if isinstance(name, str) and name:
            return f"{self.kind.value} {name!r}"
        return f"{self.kind.category}[{self.index}]"

    def problem(self, message: str) -> None:
        self.problems.add(self.where, message)

    def check_keys(self) -> None:
        """Report unknown keys (with a suggestion) and missing required keys."""
        allowed = KIND_KEYS[self.kind]
        for key in sorted(set(self.table) - allowed - LEGACY_KEYS):
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            other = _kinds_allowing(key)
            if not hint and other:
                suggestion = f" (only allowed on {', '.join(other)} layers)"
            self.problem(f"unknown key {key!r}{suggestion}")
        for key in REQUIRED_KEYS[self.kind]:
            if key not in self.table:
                self.problem(f"missing required key {key!r}")

    def typed(self, key: str, expected: type, default: object = None) -> object:
        """The value of `key` if it has the expected type; else report it and return `default`."""
        value = self.table.get(key, default)
        if key in self.table and not isinstance(value, expected):
            self.problem(
                f"{key!r} must be {_TYPE_NAMES[expected]}, not {_describe(self.table[key])}"
            )
            return default
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.typed(key, str, default)
        return value if isinstance(value, str) else default

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.typed(key, bool, default)
        return value if isinstance(value, bool) else default

    def string_list(self, key: str) -> tuple[str, ...] | None:
        """A list of strings; None when the key is absent or invalid."""
        value = self.typed(key, list)
        if not isinstance(value, list):
            return None
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            self.problem(f"{key!r} must be an array of strings, not contain {_describe(bad[0])}")
            return None
        return tuple(value)

    def string_table(self, key: str) -> dict[str, str]:
        value = self.typed(key, dict, {})
        if not isinstance(value, dict):
            return {}
        result: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                self.problem(f"{key!r} must map names to strings ({k!r} maps to {_describe(v)})")
            else:
                result[str(k)] = v
        return result

    def requirements(self) -> tuple[str, ...]:
        """Declared requirements, normalised as `str(Requirement)`, in declared order."""
        raw = self.string_list("requirements") or ()
        result = []
        for text in raw:
            try:
                result.append(normalised_requirement(text))
            except InvalidRequirementText as exc:
                self.problem(f"invalid requirement {text!r}: {exc}")
        return tuple(result)

    def platforms(self) -> tuple[TargetPlatform, ...] | None:
        raw = self.string_list("platforms")
        if raw is None:
            return None
        known = sorted(p.value for p in TargetPlatform)
        result = []
        for item in raw:
            try:
                result.append(TargetPlatform(item))
            except ValueError:
                self.problem(f"invalid target platform {item!r} (expected one of {known})")
        return tuple(dict.fromkeys(result))

    def linux_target(self) -> str | None:
        text = self.string("linux_target")
        if text is not None:
            try:
                parse_linux_target(text)
            except ValueError as exc:
                self.problem(f"linux_target: {exc}")
                return None
        return text

    def macosx_target(self) -> str | None:
        text = self.string("macosx_target")
        if text is not None:
            try:
                parse_macosx_target(text)
            except ValueError as exc:
                self.problem(f"macosx_target: {exc}")
                return None
        return text

    def package_indexes(self) -> dict[str, str]:
        """Distribution name (canonicalised) → index name, rejecting clashes after normalisation."""
        result: dict[str, str] = {}
        for dist, index in self.string_table("package_indexes").items():
            if not DIST_NAME.fullmatch(dist):
                self.problem(f"package_indexes: {dist!r} is not a valid distribution name")
                continue
            canonical = canonical_name(dist)
            if canonical in result:
                self.problem(
                    f"package_indexes names {canonical!r} twice after name normalization "
                    f"({dist!r} is the second entry)"
                )
                continue
            result[canonical] = index
        return result


DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
"""A distribution name as PEP 508 allows it (uv rejects anything else)."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]*[A-Za-z0-9])?")
MAX_NAME_LENGTH = 100
NAME_RULE = (
    "layer names are ASCII letters, digits and '.', '_', '-', '@', starting and ending with a "
    f"letter or digit, at most {MAX_NAME_LENGTH} characters: they name uv projects, folders, "
    "lock files and archives"
)


def check_distinct_names(tables: Iterable[LayerTable], problems: Problems) -> None:
    """Layer names must be unique within their kind, also ignoring case (their folders are)."""
    seen: dict[str, str] = {}
    for t in tables:
        name = t.table.get("name")
        if isinstance(name, str):
            earlier = seen.get(name.lower())
            if earlier == name:
                t.problem(f"{t.kind.value} names must be distinct ({name!r} is defined twice)")
            elif earlier is not None:
                t.problem(
                    f"{t.kind.value} names must differ by more than case ({earlier!r} and "
                    f"{name!r} would share folders on case-insensitive file systems)"
                )
            seen.setdefault(name.lower(), name)


def check_name(t: LayerTable) -> str | None:
    """The layer's name, if it is a usable one (see `NAME_RULE`)."""
    name = t.string("name")
    if name is None:
        return None
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        t.problem(f"invalid layer name {name!r} ({NAME_RULE})")
        return None
    if t.kind is LayerKind.RUNTIME and name.startswith(("framework-", "app-")):
        prefix = name.split("-", 1)[0]
        t.problem(f"runtime name {name!r} starts with the reserved prefix {prefix!r}")
    return name


def _kinds_allowing(key: str) -> list[str]:
    return [kind.value for kind, keys in KIND_KEYS.items() if key in keys]


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, Sequence):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__
