"""`venvstacks show` and `venvstacks graph`: read-only views of a stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from venvstacks.cli.common import build_dir_option, include_options, load_stack, spec_argument
from venvstacks.cli.state import JSON_STDOUT
from venvstacks.cli.viewer import show_svg
from venvstacks.errors import StackError
from venvstacks.report.render import GRAPH_FORMATS, render
from venvstacks.report.show import show_json, show_tree

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
    status = stack.show(include, allow_missing=allow_missing)
    JSON_STDOUT.written = as_json
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
    "--tasks",
    "show_tasks",
    is_flag=True,
    help="Draw the task graph (runtime, lock, install, link... per layer) instead of the layers.",
)
@click.option(
    "--status",
    "with_status",
    is_flag=True,
    help="With --tasks: colour tasks by state (stale, waiting, up to date).",
)
@click.option(
    "--all-edges",
    is_flag=True,
    help="With --tasks: draw every dependency, also those implied by others.",
)
@click.option(
    "--open",
    "open_svg",
    is_flag=True,
    help="Draw an SVG (into a temporary file, or -o) and open it in a browser; where there is "
    "none, print the file's path.",
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
    show_tasks: bool,
    with_status: bool,
    all_edges: bool,
    open_svg: bool,
    output: Path | None,
) -> None:
    """Draw the layer graph of a stack: edges go from a lower layer up to the layers using it.

    Layers are grouped by kind with runtimes at the bottom; each node is coloured by whether its
    lock is valid.
    """
    stack = load_stack(spec_path, build_dir)
    drawing = stack.graph(
        include,
        allow_missing=allow_missing,
        tasks=show_tasks,
        with_status=with_status,
        all_edges=all_edges,
    )
    if open_svg:
        show_svg(_to_svg(render(drawing, "dot")), output)
        return
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
