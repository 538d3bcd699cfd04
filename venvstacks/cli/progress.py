"""Showing task progress: a live per-layer table on a terminal, whole task-prefixed lines with -v.

The API reports `ProgressEvent`s to a listener; `ProgressSubscriber` is the CLI's listener and
turns them into output on stderr. Only the CLI creates these: library code never prints.

On a terminal (and without -q, -v or --json) the table is opened as the command starts
(`open_early`), before the stack is even read, and updated four times a second: the title
counts the seconds, each running task shows its own, a legend line says what the symbols mean.
Log lines (warnings) go through `TaskLineHandler`, which prints them above the live table
rather than into it, and with -v prefixes each line with the task that logged it; every line
is written whole, under one lock, so lines of tasks running in parallel never merge.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self, TextIO

from venvstacks.tasks.model import current_task

if TYPE_CHECKING:
    from venvstacks.api.results import ProgressEvent

__all__ = [
    "LEGEND",
    "PUSH_TITLE",
    "LineProgress",
    "LiveProgress",
    "NoProgress",
    "ProgressSubscriber",
    "TaskLineHandler",
    "choose_progress",
    "close_early",
    "open_early",
]

_SYMBOLS = {
    "pending": "[dim]·[/dim]",
    "running": "[yellow]▸[/yellow]",
    "done": "[green]✓[/green]",
    "skip": "[dim]=[/dim]",
    "fail": "[bold red]✗[/bold red]",
}
LEGEND = "· waiting   ▸ running (seconds so far)   ✓ done   = up to date   ✗ failed"

_WRITING = threading.Lock()  # one line (or block of lines) at a time, whoever writes


def write_lines(stream: TextIO, text: str, prefix: str = "") -> None:
    """Write `text` as whole lines, each with `prefix`, in one write under the shared lock."""
    lines = text.splitlines() or [""]
    block = "".join(f"{prefix}{line}\n" for line in lines)
    with _WRITING:
        stream.write(block)
        stream.flush()


class NoProgress:
    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LineProgress(NoProgress):
    """One whole line per task start and end (for -v and logs)."""

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
        write_lines(self._stream, line)


class LiveProgress(NoProgress):
    """A table with one row per layer and one column per operation, redrawn 4 times a second.

    Opened with no tasks, it shows that the command started; `set_tasks` fills it in. Task names
    are `<operation>:<layer>`; events for names it was not told about add rows and columns.
    """

    def __init__(
        self,
        task_names: Sequence[str] = (),
        console: Any = None,
        command: str = "venvstacks",
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        # The stream itself, not `stderr=True`: rich would look up sys.stderr at each redraw,
        # and doit points it at a capture buffer while a task's actions run.
        self._console = console or Console(file=sys.stderr)
        self._command = command
        self._layers: list[str] = []
        self._operations: list[str] = []
        self._state: dict[str, str] = {}
        self._since: dict[str, float] = {}  # running tasks: when they started
        self._took: dict[str, float] = {}  # finished tasks: how long they ran
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._open = False
        self.set_tasks(task_names)
        self._live = Live(
            console=self._console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=_same_terminal(),
            redirect_stderr=True,
        )

    @property
    def console(self) -> Any:
        return self._console

    @property
    def has_tasks(self) -> bool:
        return bool(self._state)

    def set_tasks(self, task_names: Sequence[str]) -> None:
        with self._lock:
            for name in task_names:
                self._add(name)

    def _add(self, name: str) -> None:
        operation, _, layer = name.partition(":")
        if layer not in self._layers:
            self._layers.append(layer)
        if operation not in self._operations:
            self._operations.append(operation)
        self._state.setdefault(name, "pending")

    def _cell(self, name: str, now: float) -> str:
        state = self._state.get(name)
        if state is None:
            return ""
        symbol = _SYMBOLS[state]
        if state == "running":
            return f"{symbol} {now - self._since.get(name, now):.0f}s"
        took = self._took.get(name)
        if state in ("done", "fail") and took is not None and took >= 1:
            return f"{symbol} {took:.0f}s"
        return symbol

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        elapsed = now - self._started
        with self._lock:
            if not self._state:
                return Text(f"{self._command}: reading the stack... ({elapsed:.0f} s)")
            title = Text(f"{self._command}: {elapsed:.0f} s")
            table = Table(box=None, pad_edge=False)
            table.add_column("layer")
            for operation in self._operations:
                table.add_column(operation, justify="left")
            for layer in self._layers:
                cells = [self._cell(f"{op}:{layer}", now) for op in self._operations]
                table.add_row(layer, *cells)
        return Group(title, Text(LEGEND, style="dim"), table)

    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        state = {"start": "running", "done": "done", "skip": "skip", "fail": "fail"}.get(event)
        if state is None:
            return
        with self._lock:
            self._add(name)
            self._state[name] = state
            if state == "running":
                self._since[name] = time.monotonic()
            else:
                started = self._since.pop(name, None)
                if seconds is not None:
                    self._took[name] = seconds
                elif started is not None:
                    self._took[name] = time.monotonic() - started
        # No redraw here: the display redraws itself 4 times a second, and once more when it
        # closes; redrawing per event would cost more than a no-op build of a big stack.

    def __enter__(self) -> Self:
        if not self._open:
            self._open = True
            _DISPLAYS.append(self)
            self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._open:
            return
        self._open = False
        # Nothing to show yet (the command ended before it ran tasks): leave no trace.
        self._live.transient = not self.has_tasks
        try:
            self._live.stop()
        finally:
            if self in _DISPLAYS:
                _DISPLAYS.remove(self)


def _same_terminal() -> bool:
    """stdout is a terminal too: redirect it above the table, or its lines would break it."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


_DISPLAYS: list[LiveProgress] = []  # the live table now on screen (at most one)
_EARLY: list[LiveProgress] = []  # opened by `open_early`, waiting for its tasks


def open_early(command: str) -> None:
    """Show the live display now, before the stack is read (the caller checked the terminal)."""
    if not _EARLY:
        display = LiveProgress(command=f"venvstacks {command}")
        display.__enter__()
        _EARLY.append(display)


def close_early() -> None:
    """Close the early display if no run took it over (an error, nothing to run, --show-only)."""
    while _EARLY:
        _EARLY.pop().__exit__(None, None, None)


def _take_early(task_names: Sequence[str]) -> LiveProgress | None:
    if not _EARLY:
        return None
    display = _EARLY.pop()
    display.set_tasks(task_names)
    return display


PUSH_TITLE = "venvstacks: pushing to the remote cache"
"""The live table's title while `build --remote-cache` pushes (tasks `push-<kind>:<layer>`)."""


def choose_progress(task_names: Sequence[str], *, verbose: int, quiet: bool) -> NoProgress:
    """Live table on a terminal, lines with -v, nothing when quiet or not on a terminal."""
    if quiet:
        return NoProgress()
    if verbose > 0:
        return LineProgress()
    pushing = bool(task_names) and all(name.startswith("push-") for name in task_names)
    early = None if pushing else _take_early(task_names)
    if early is not None:
        return early
    if sys.stderr.isatty() and task_names:
        return LiveProgress(task_names, command=PUSH_TITLE if pushing else "venvstacks")
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


class TaskLineHandler(logging.Handler):
    """Log records as whole lines on `stream`, or above the live table while one is shown.

    With `prefix_tasks` (-v), each line of a record logged while a task runs starts with
    `[<task>] `, so that the lines of tasks running in parallel can be told apart.
    """

    def __init__(self, stream: TextIO, *, prefix_tasks: bool = False) -> None:
        super().__init__()
        self.stream = stream
        self.prefix_tasks = prefix_tasks

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            task = current_task() if self.prefix_tasks else None
            prefix = f"[{task}] " if task else ""
            if _DISPLAYS:
                display = _DISPLAYS[-1]
                lines = "\n".join(f"{prefix}{line}" for line in text.splitlines())
                display.console.print(
                    lines, markup=False, highlight=False, emoji=False, soft_wrap=True
                )
            else:
                write_lines(self.stream, text, prefix)
        except Exception:  # noqa: BLE001 - logging must never raise (logging's own rule)
            self.handleError(record)
