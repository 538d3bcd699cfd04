"""The state the `venvstacks` group hands to its commands. Kept apart so `--version` loads nothing else."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CliState"]


@dataclass
class CliState:
    """Global options given to the `venvstacks` group."""

    verbose: int = 0
    quiet: bool = False
