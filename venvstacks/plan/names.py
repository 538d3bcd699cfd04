"""Nominal types for the names of layers and closed sets for their kinds. Pure, stdlib only."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NewType, TypeVar

__all__ = [
    "DeployName",
    "EnvName",
    "LayerKind",
    "LayerName",
    "UnmatchedNames",
    "env_name_for",
    "lock_file_stem",
    "match_layer_names",
    "spec_name_of",
]

K = TypeVar("K", bound=Hashable)

LayerName = NewType("LayerName", str)
"""The name a layer has in the spec: ``numpy``."""

EnvName = NewType("EnvName", str)
"""The build name of a layer: ``framework-numpy``, ``app-demo``; runtimes are unprefixed."""

DeployName = NewType("DeployName", str)
"""The install target of a layer: its env name, plus ``@N`` for versioned layers."""


class LayerKind(StrEnum):
    """The three kinds of layer, in the order they are built."""

    RUNTIME = "runtime"
    FRAMEWORK = "framework"
    APPLICATION = "application"

    @property
    def category(self) -> str:
        """The plural name used as the spec's table name and in JSON reports."""
        return {"runtime": "runtimes", "framework": "frameworks", "application": "applications"}[
            self.value
        ]

    @property
    def prefix(self) -> str:
        """The prefix of this kind's build names (empty for runtimes)."""
        return {"runtime": "", "framework": "framework-", "application": "app-"}[self.value]


def env_name_for(kind: LayerKind, name: LayerName) -> EnvName:
    """The build name of a layer of this kind."""
    return EnvName(f"{kind.prefix}{name}")


def lock_file_stem(env: EnvName) -> str:
    """The name used inside lock file names: periods are not allowed in ``pylock.<N>.toml``."""
    return env.replace(".", "_")


def spec_name_of(env: str) -> str:
    """The spec name in a framework or application build name (``framework-web`` -> ``web``)."""
    for kind in (LayerKind.FRAMEWORK, LayerKind.APPLICATION):
        if env.startswith(kind.prefix):
            return env[len(kind.prefix) :]
    return env


def match_layer_names(
    patterns: Sequence[str], layers: Mapping[K, tuple[Iterable[str], str]]
) -> tuple[list[K], tuple[str, ...]]:
    """Which layers the command-line `patterns` name, and the patterns that name none.

    `layers` maps a key to the layer's build names (its env name, and where it applies its
    deployed name such as ``app-x@2``) and its spec name. A pattern is an `fnmatch` pattern on
    build names, as in venvstacks 0.8.0; a pattern that matches no build name at all is then
    matched against spec names, so ``web`` and ``web*`` name ``framework-web`` while every
    pattern 0.8.0 accepted keeps selecting exactly what it selected there.
    """
    chosen: dict[K, None] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        hits = [
            key
            for key, (builds, _) in layers.items()
            if any(fnmatch.fnmatchcase(name, pattern) for name in builds)
        ]
        if not hits:
            hits = [key for key, (_, spec) in layers.items() if fnmatch.fnmatchcase(spec, pattern)]
        if not hits:
            unmatched.append(pattern)
        chosen.update(dict.fromkeys(hits))
    return list(chosen), tuple(unmatched)


LISTED_NAMES = 10
"""How many existing names an error about unmatched names lists before "and N more"."""

_WILDCARDS = frozenset("*?[")


def closest_name(pattern: str, candidates: Iterable[str]) -> str | None:
    """The candidate a mistyped `pattern` most likely meant (case-insensitive), or None.

    A wildcard pattern is compared without its wildcards (``nmpy*`` -> ``numpy``), after trying
    it as a case-insensitive pattern (``Num*`` -> ``numpy``).
    """
    names = list(dict.fromkeys(candidates))
    folded = {name.casefold(): name for name in reversed(names)}
    if _WILDCARDS & set(pattern):
        hits = [n for n in names if fnmatch.fnmatchcase(n.casefold(), pattern.casefold())]
        if hits:
            return hits[0]
        pattern = "".join(c for c in pattern if c not in "*?[]!")
    close = difflib.get_close_matches(pattern.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _listing(names: Sequence[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:LISTED_NAMES])
    more = len(names) - LISTED_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


@dataclass(frozen=True, kw_only=True)
class UnmatchedNames:
    """Names given on the command line (`option`) that name nothing `source` holds.

    `known` are the existing names as the user writes them (spec names: ``numpy``, not
    ``framework-numpy``), listed in the message; `also_known` are the other names that select
    the same layers (build names, install targets), also considered for "did you mean".
    """

    option: str
    unmatched: tuple[str, ...]
    known: tuple[str, ...]
    source: str
    noun: str = "layer"
    also_known: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def suggestions(self) -> dict[str, str]:
        """For each unmatched name with a close existing name: that name."""
        found: dict[str, str] = {}
        for name in self.unmatched:
            close = closest_name(name, (*self.known, *self.also_known))
            if close is not None and close != name:
                found[name] = close
        return found

    def message(self, hint: str = "") -> str:
        """One line: the source, the option and its bad names, the closest names, what exists."""
        quoted = ", ".join(repr(name) for name in self.unmatched)
        verb = "matches" if len(self.unmatched) == 1 else "match"
        suggestions = self.suggestions
        if len(self.unmatched) == 1 and suggestions:
            guess = f" (did you mean {next(iter(suggestions.values()))!r}?)"
        else:
            guess = "".join(
                f" ({name!r}: did you mean {close!r}?)" for name, close in suggestions.items()
            )
        notes = "".join(f"; {note}" for note in self.notes)
        tail = f" ({hint})" if hint else ""
        return (
            f"{self.source}: {self.option} {quoted} {verb} no {self.noun}{guess}{notes}; "
            f"{self.noun}s: {_listing(self.known)}{tail}"
        )

    def details(self) -> dict[str, Any]:
        """The same facts for a JSON error document."""
        return {
            "source": self.source,
            "option": self.option,
            "unmatched": list(self.unmatched),
            "layers": list(self.known),
            "suggestions": self.suggestions,
        }
