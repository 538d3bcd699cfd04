"""The output contract of every command: with `--json` (or `--report -`) standard output holds
exactly one JSON document and every human line goes to standard error; `--report FILE` writes
what a command did as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from venvstacks.api.options import BuildOptions, ExportOptions, LockOptions, PublishOptions
from venvstacks.api.stack import Stack
from venvstacks.cli.progress import ProgressSubscriber, close_early
from venvstacks.cli.state import JSON_STDOUT
from venvstacks.errors import StackError

__all__ = ["Output", "report_option", "shown_and_done", "subscriber"]

F = TypeVar("F", bound=Callable[..., Any])


def report_option(func: F) -> F:
    return click.option(
        "--report",
        "report",
        metavar="FILE",
        default=None,
        help="Write what was done, per layer, as JSON to FILE ('-' for standard output; the "
        "human-readable lines then go to standard error).",
    )(func)


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class Output:
    """Where a command's human lines, its `--json` document and its `--report` go."""

    def __init__(self, *, as_json: bool = False, report: str | None = None) -> None:
        if as_json and report == "-":
            raise click.UsageError("--json and --report - would both write to standard output")
        self.report_to = report
        self.stdout_is_json = as_json or report == "-"

    def say(self, text: str = "", nl: bool = True) -> None:
        """A human line: on stdout, unless stdout is kept for one JSON document."""
        close_early()  # a display still waiting for tasks would be broken by the line
        click.echo(text, nl=nl, err=self.stdout_is_json)

    def document(self, data: Any) -> None:
        """The command's one JSON document, on stdout."""
        close_early()
        JSON_STDOUT.written = True
        click.echo(dump(data), nl=False)

    def report(self, data: Any) -> None:
        """Write the `--report` (nothing when it was not asked for)."""
        if self.report_to is None:
            return
        text = dump(data)
        if self.report_to == "-":
            JSON_STDOUT.written = True
            click.echo(text, nl=False)
            return
        path = Path(self.report_to).expanduser()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StackError(f"cannot write the report {path}: {exc.strerror}") from None


def shown_and_done(
    out: Output,
    stack: Stack,
    options: LockOptions | BuildOptions | PublishOptions | ExportOptions,
    *,
    show_first: bool,
    show_only: bool,
    as_json: bool,
) -> bool:
    """0.8.0's --show/--show-only/--json: print the selection; True when the command stops there."""
    from venvstacks.report.show import show_json, show_tree

    if not (show_first or show_only or as_json):
        return False
    status = stack.preview(options)
    if as_json:
        JSON_STDOUT.written = True
        click.echo(show_json(status), nl=False)
    else:
        out.say(show_tree(status), nl=False)
    return show_only or (as_json and not show_first)


def subscriber(ctx: click.Context) -> ProgressSubscriber:
    """The progress display the global options and the terminal call for."""
    state = ctx.find_root().obj
    return ProgressSubscriber(
        verbose=getattr(state, "verbose", 0), quiet=getattr(state, "quiet", False)
    )
