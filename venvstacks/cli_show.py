"""`venvstacks show` and `venvstacks graph`: read-only views of a stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from venvstacks.cli_common import (
    build_dir_option,
    choose_layers,
    include_options,
    load_stack,
    spec_argument,
)
from venvstacks.errors import StackError
from venvstacks.graphs import GRAPH_FORMATS, render
from venvstacks.lockstate import StoredLocks
from venvstacks.report import layer_graph, show_json, show_tree, stack_status

__all__ = ["COMMANDS"]


@click.command()
@spec_argument
@build_dir_option
@include_options
@click.option("--json", "as_json", is_flag=True, help="Print the stack status as JSON.")
def show(
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    as_json: bool,
) -> None:
    """Show the layers of a stack and their dependencies, in sys.path order.

    A leading '*' marks a layer without a valid lock. Versioned layers show their deployed name
    (name@N) after '->'.
    """
    stack = load_stack(spec_path, build_dir)
    layers = choose_layers(stack.plan, include, allow_missing)
    status = stack_status(stack.plan, layers, StoredLocks(stack.plan, stack.layout))
    click.echo(show_json(status) if as_json else show_tree(status), nl=False)


@click.command()
@spec_argument
@build_dir_option
@include_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(GRAPH_FORMATS),
    default="text",
    show_default=True,
    help="Output format; svg needs Graphviz's 'dot' program.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of standard output.",
)
def graph(
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Draw the layer graph of a stack: edges go from a lower layer up to the layers using it.

    Layers are grouped by kind with runtimes at the bottom; each node is coloured by whether its
    lock is valid.
    """
    stack = load_stack(spec_path, build_dir)
    layers = choose_layers(stack.plan, include, allow_missing)
    drawing = layer_graph(stack.plan, layers, StoredLocks(stack.plan, stack.layout))
    data = _to_svg(render(drawing, "dot")) if fmt == "svg" else render(drawing, fmt).encode()
    _emit(data, output)


def _to_svg(dot_text: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise StackError(
            "--format svg needs Graphviz's 'dot' program, which is not on PATH "
            "(install graphviz, or use --format dot and render it elsewhere)"
        )
    result = subprocess.run(
        [dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False
    )
    if result.returncode != 0:
        raise StackError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        click.echo(data.decode(), nl=False)
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise StackError(f"cannot write {output}: {exc.strerror}") from None


COMMANDS = [show, graph]
