"""The exception hierarchy. Every error raised on purpose derives from `StackError`.

A `StackError` is a user-facing failure: the CLI prints its message as one line and exits 1.
Anything else that escapes is a bug in venvstacks and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "BuildError",
    "DeployError",
    "GraphError",
    "LayerError",
    "LockError",
    "PublishError",
    "RuntimeProvisionError",
    "SelectionError",
    "SpecError",
    "StackError",
]


class StackError(Exception):
    """Root of every error venvstacks raises on purpose (exit status 1)."""


class SpecError(ValueError, StackError):
    """A stack specification is invalid. Carries every problem found, not just the first."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = f"{source}: {self.problems[0]}"
        else:
            listed = "; ".join(self.problems)
            message = f"{source}: {len(self.problems)} problems: {listed}"
        super().__init__(message)


class GraphError(ValueError, StackError):
    """Layer selection or dependency ordering failed (unknown pattern, conflicting selection)."""


class SelectionError(GraphError):
    """Names given on the command line (``--include``, ``--reset-lock``, APP) name no layer.

    `details` holds the facts of the message (source, option, unmatched names, existing names,
    suggestions) for the ``--json`` error document.
    """

    def __init__(self, message: str, details: Mapping[str, object]) -> None:
        self.details = dict(details)
        super().__init__(message)


class LayerError(StackError):
    """An operation on one layer failed; the message is prefixed with the layer's name."""

    def __init__(self, layer: str | None, message: str) -> None:
        self.layer = layer
        self.detail = message
        super().__init__(f"layer {layer}: {message}" if layer else message)


class RuntimeProvisionError(LayerError, RuntimeError):
    """A runtime could not be found, downloaded, verified, packed or unpacked."""


class LockError(LayerError, RuntimeError):
    """Locking a layer failed (unresolvable requirements, missing wheels, bad lock file)."""


class BuildError(LayerError, RuntimeError):
    """Building a layer environment failed."""


class PublishError(LayerError, RuntimeError):
    """Archiving, exporting or writing metadata for a layer failed."""


class DeployError(RuntimeError, StackError):
    """Deploying, verifying or running published layers failed."""
