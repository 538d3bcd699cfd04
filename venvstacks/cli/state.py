"""The state the `venvstacks` group hands to its commands. Kept apart so `--version` loads nothing else."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JSON_STDOUT", "CliState", "JsonStdout"]


@dataclass
class CliState:
    """Global options given to the `venvstacks` group."""

    verbose: int = 0
    quiet: bool = False


@dataclass
class JsonStdout:
    """Whether the command was asked for one JSON document on stdout (`--json`, `--report -`)
    and whether it has written it: an error then becomes that document if nothing was written."""

    wanted: bool = False
    written: bool = False


JSON_STDOUT = JsonStdout()
