"""`venvstacks init [DIR]`: write a commented starter stack (spec and launch modules) to begin from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

import click

from venvstacks.errors import StackError

__all__ = ["COMMANDS", "TEMPLATES", "template_files", "write_template"]

TEMPLATES = ("starter", "scientific", "pytorch")
_SUFFIX = ".tmpl"  # template files are not modules of venvstacks itself
_GITIGNORE = "# venvstacks' build folder and published archives\n_build/\n_artifacts/\n"


def _walk(folder: Traversable, prefix: PurePosixPath) -> Iterator[tuple[PurePosixPath, bytes]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, prefix / entry.name)
        elif entry.name.endswith(_SUFFIX):
            yield prefix / entry.name.removesuffix(_SUFFIX), entry.read_bytes()


def template_files(template: str) -> dict[PurePosixPath, bytes]:
    """The files ``template`` writes, by path relative to the stack folder."""
    if template not in TEMPLATES:
        raise StackError(f"no template {template!r} (choose from {', '.join(TEMPLATES)})")
    written = dict(_walk(files("venvstacks.cli") / "templates" / template, PurePosixPath()))
    written.setdefault(PurePosixPath(".gitignore"), _GITIGNORE.encode())
    return written


def write_template(template: str, folder: Path) -> list[Path]:
    """Write ``template`` into ``folder`` (created if needed); return the files written.

    Refuses (`StackError`, nothing written) when any of the files already exists, except a
    ``.gitignore``, which is then left alone.
    """
    planned = template_files(template)
    existing = [path for path in planned if (folder / path).exists() or (folder / path).is_symlink()]
    clashes = sorted(
        (path for path in existing if path.name != ".gitignore"),
        key=lambda path: (path.name != "venvstacks.toml", str(path)),
    )
    if clashes:
        first = folder / clashes[0]
        raise StackError(f"{first} already exists; venvstacks init does not overwrite files")
    written = []
    for relative, content in planned.items():
        if relative in existing:
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as stream:  # "x": never replaces a file that appeared meanwhile
            stream.write(content)
        written.append(target)
    return written


@click.command()
@click.argument("folder", metavar="[DIR]", default=".", type=click.Path(path_type=Path))
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="starter",
    show_default=True,
    help="starter: a runtime, one framework, one app; scientific: numpy and scipy frameworks "
    "shared by two apps; pytorch: one torch framework shared by two apps.",
)
def init(folder: Path, template: str) -> None:
    """Write a commented starter venvstacks.toml and its launch module(s) into DIR.

    DIR (default: the current folder) is created if needed. Existing files are never
    overwritten: init stops with an error instead. Then: venvstacks show DIR/venvstacks.toml.
    """
    written = write_template(template, folder)
    spec = folder / "venvstacks.toml"
    for path in written:
        click.echo(f"wrote {os.path.relpath(path)}")
    click.echo(f"next: venvstacks show {os.path.relpath(spec)}", err=True)


COMMANDS = [init]
