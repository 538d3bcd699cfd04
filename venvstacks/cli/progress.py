"""Showing task progress: a live per-layer table on a terminal, plain lines with -v, else nothing.

The API reports `ProgressEvent`s to a listener; `ProgressSubscriber` is the CLI's listener and
turns them into output on stderr. Only the CLI creates these: library code never prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Self, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from venvstacks.api.results import ProgressEvent

__all__ = ["LineProgress", "LiveProgress", "NoProgress", "ProgressSubscriber", "choose_progress"]

_SYMBOLS = {
    "pending": "[dim]·[/dim]",
    "running": "[yellow]…[/yellow]",
    "done": "[green]✓[/green]",
    "skip": "[dim]=[/dim]",
    "fail": "[bold red]✗[/bold red]",
}


class NoProgress:
    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LineProgress(NoProgress):
    """One line per task start and end (for -v and logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr

    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        if event == "start":
            line = f"  ... {name}"
        elif event == "done":
            line = f"  ok  {name} ({seconds or 0:.1f} s)"
        elif event == "fail":
            line = f"  FAILED {name} ({seconds or 0:.1f} s)"
        else:
            return
        print(line, file=self._stream, flush=True)


class LiveProgress(NoProgress):
    """A table with one row per layer and one column per operation, updated as tasks run."""

    def __init__(self, task_names: Sequence[str], console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._layers: list[str] = []
        self._operations: list[str] = []
        self._state: dict[str, str] = {}
        for name in task_names:
            operation, layer = name.split(":", 1)
            if layer not in self._layers:
                self._layers.append(layer)
            if operation not in self._operations:
                self._operations.append(operation)
            self._state[name] = "pending"
        self._started = time.monotonic()
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=8, transient=False
        )

    def _render(self) -> Table:
        elapsed = time.monotonic() - getattr(self, "_started", time.monotonic())
        table = Table(
            title=f"venvstacks ({elapsed:.0f} s)", title_justify="left", box=None, pad_edge=False
        )
        table.add_column("layer")
        for operation in self._operations:
            table.add_column(operation, justify="center")
        for layer in self._layers:
            cells = [
                _SYMBOLS[self._state.get(f"{op}:{layer}", "pending")]
                if f"{op}:{layer}" in self._state
                else ""
                for op in self._operations
            ]
            table.add_row(layer, *cells)
        return table

    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        if name not in self._state:
            return
        self._state[name] = {"start": "running", "done": "done", "skip": "skip", "fail": "fail"}[
            event
        ]
        self._live.update(self._render())

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render())
        self._live.__exit__(None, None, None)


def choose_progress(task_names: Sequence[str], *, verbose: int, quiet: bool) -> NoProgress:
    """Live table on a terminal, lines with -v, nothing when quiet or not on a terminal."""
    if quiet:
        return NoProgress()
    if verbose > 0:
        return LineProgress()
    if sys.stderr.isatty() and task_names:
        return LiveProgress(task_names)
    return NoProgress()


class ProgressSubscriber:
    """The CLI's progress listener: opens the display on `begin`, closes it on `end`."""

    def __init__(self, *, verbose: int = 0, quiet: bool = False) -> None:
        self._verbose = verbose
        self._quiet = quiet
        self._display: NoProgress | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "begin":
            self._display = choose_progress(event.tasks, verbose=self._verbose, quiet=self._quiet)
            self._display.__enter__()
        elif event.kind == "end":
            if self._display is not None:
                self._display.__exit__(None, None, None)
            self._display = None
        elif self._display is not None and event.task is not None:
            self._display(event.kind, event.task, event.seconds)
