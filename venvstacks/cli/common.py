"""Options and helpers shared by the `venvstacks` commands: loading a stack, selecting layers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from venvstacks.api.stack import Stack
from venvstacks.cli.state import CliState

__all__ = [
    "CliState",
    "LoadedStack",
    "SpecNotFound",
    "find_spec_file",
    "load_stack",
    "spec_argument",
]

_log = logging.getLogger("venvstacks")
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))
"""Tasks run at once by default: the work is subprocesses and compression that releases the GIL."""
F = TypeVar("F", bound=Callable[..., Any])


LoadedStack = Stack
"""Kept for callers of the former name: a loaded stack is a `venvstacks.Stack`."""


SPEC_FILE_NAMES = ("venvstacks.toml", "venvstacks.yaml", "venvstacks.yml")


class SpecNotFound(click.UsageError):
    """No SPEC_PATH was given and the current folder has no (or more than one) stack spec."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def find_spec_file(folder: Path) -> Path:
    """The stack spec of `folder` when SPEC_PATH is left out, as uv and pdm find their files."""
    found = [folder / name for name in SPEC_FILE_NAMES if (folder / name).is_file()]
    if not found:
        raise SpecNotFound(
            f"no SPEC_PATH given and no {', '.join(SPEC_FILE_NAMES[:-1])} or "
            f"{SPEC_FILE_NAMES[-1]} in {folder} (name the stack spec file to use)"
        )
    if len(found) > 1:
        raise SpecNotFound(
            f"no SPEC_PATH given and {folder} holds {' and '.join(p.name for p in found)} "
            "(name the one to use)"
        )
    return found[0]


def _default_spec(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    return value if value is not None else find_spec_file(Path.cwd())


def spec_argument(func: F) -> F:
    """SPEC_PATH; when left out, venvstacks.toml (or .yaml/.yml) in the current folder."""
    return click.argument(
        "spec_path",
        metavar="[SPEC_PATH]",
        required=False,
        default=None,
        callback=_default_spec,
        type=click.Path(path_type=Path, dir_okay=False),
    )(func)


def build_dir_option(func: F) -> F:
    return click.option(
        "--build-dir",
        metavar="DIR",
        default=None,
        help="Where environments are built (default: _build beside the spec; "
        "relative paths are taken from the spec's folder).",
    )(func)


INCLUDE_FOLLOWS = "Their lower layers and the layers built on them are selected too."


def include_options(func: F) -> F:
    """`--include PATTERN` and `--allow-missing`, for commands that select as `show` does."""
    return include_options_selecting(INCLUDE_FOLLOWS)(func)


def include_options_selecting(selects: str) -> Callable[[F], F]:
    """`--include PATTERN` and `--allow-missing`; `selects` says what else an --include selects."""

    def decorate(func: F) -> F:
        func = click.option(
            "--allow-missing",
            is_flag=True,
            help="Warn instead of failing when an --include pattern matches no layer.",
        )(func)
        decorated: F = click.option(
            "--include",
            "include",
            metavar="PATTERN",
            multiple=True,
            help="Only these layers: build names such as 'framework-numpy', 'app-*', "
            "'cpython-3.12' (fnmatch patterns), or spec names such as 'numpy' when no build name "
            f"matches; repeatable. {selects}",
        )(func)
        return decorated

    return decorate


def load_stack(spec_path: Path, build_dir: str | None = None) -> Stack:
    """Load, check and plan a stack spec (warnings go to the log)."""
    return Stack.load(spec_path, build_dir)


def jobs_option(help_text: str) -> Callable[[F], F]:
    """`-j/--jobs N`, defaulting to the number of CPUs (at most 4)."""
    decorator: Callable[[F], F] = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 64),
        default=DEFAULT_JOBS,
        show_default="the number of CPUs, at most 4",
        help=help_text,
    )
    return decorator


def selection_display_options(doing: str) -> list[Any]:
    """`--show`, `--show-only` and `--json`, as 0.8.0's lock/build/publish/local-export have."""
    return [
        click.option(
            "--show", "show_first", is_flag=True, help=f"Print the selected layers before {doing}."
        ),
        click.option("--show-only", is_flag=True, help="Print the selected layers and stop."),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print the selection as JSON (implies --show-only unless --show).",
        ),
    ]
