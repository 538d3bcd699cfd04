"""Nominal types for the names of layers and closed sets for their kinds. Pure, stdlib only."""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

__all__ = [
    "DeployName",
    "EnvName",
    "LayerKind",
    "LayerName",
    "env_name_for",
    "lock_file_stem",
]

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
