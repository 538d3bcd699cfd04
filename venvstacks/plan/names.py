"""Nominal types for the names of layers and closed sets for their kinds. Pure, stdlib only."""

from __future__ import annotations

import fnmatch
from collections.abc import Hashable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import NewType, TypeVar

__all__ = [
    "DeployName",
    "EnvName",
    "LayerKind",
    "LayerName",
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
