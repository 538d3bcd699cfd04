"""The ``venvstacks runtime`` command group: pack a host CPython, list runtime archives."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import click

from venvstacks.errors import StackError
from venvstacks.plan.platforms import TargetPlatform, build_platform
from venvstacks.runtimes.archives import scan_archive_dirs
from venvstacks.runtimes.pack import pack_runtime
from venvstacks.runtimes.request import archive_dirs_from

__all__ = ["runtime"]


class _OneLineError(click.ClickException):
    """Shown as a single ``error: <message>`` line on stderr; exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def _user_error(exc: StackError) -> click.ClickException:
    """The CLI form of an expected failure."""
    # The message is the last constructor argument, whatever prefixing the class applies.
    text = str(exc.args[-1]) if exc.args else str(exc)
    layer = getattr(exc, "layer", None)
    message = f"layer {layer}: {text}" if layer else text
    return _OneLineError(" ".join(message.split()))


@click.group("runtime")
def runtime() -> None:
    """Make and inspect runtime archives (relocatable CPython interpreters)."""


@runtime.command("pack")
@click.argument("python", metavar="PYTHON_OR_PREFIX", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(),
    show_default="current folder",
    help="Where to write the archive and its .sha256.",
)
def pack(python: Path, output_dir: Path) -> None:
    """Pack an installed CPython (executable or prefix) into a relocatable runtime archive.

    The archive follows python-build-standalone's install_only layout, so it can be put in a
    runtime archive folder (--runtime-archives, VENVSTACKS_RUNTIME_ARCHIVES). It still needs the
    host distribution's system libraries (libssl, libsqlite3, libffi, ...).
    """
    try:
        result = pack_runtime(python, output_dir)
    except StackError as exc:
        raise _user_error(exc) from None
    click.echo(str(result.archive))
    click.echo(f"sha256: {result.sha256}")


@runtime.command("list")
@click.option(
    "--runtime-archives",
    "archive_dirs",
    metavar="DIR",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A folder of runtime archives (repeatable); VENVSTACKS_RUNTIME_ARCHIVES is read too.",
)
@click.option("--all-platforms", is_flag=True, help="Also list archives for other platforms.")
@click.option("--json", "as_json", is_flag=True, help="Print the archives found as a JSON list.")
def list_runtimes(archive_dirs: tuple[Path, ...], all_platforms: bool, as_json: bool) -> None:
    """List the runtime archives found in the runtime archive folders."""
    folders = archive_dirs_from(archive_dirs)
    if not folders:
        raise _OneLineError("no runtime archive folders: pass --runtime-archives DIR")
    platform: TargetPlatform | None = None if all_platforms else build_platform()
    found = scan_archive_dirs(folders, platform)
    if as_json:
        from venvstacks.cli.output import Output

        Output(as_json=True).document(
            [
                {
                    "implementation": f"cpython@{c.version}",
                    "version": str(c.version),
                    "triple": c.triple,
                    "host_packed": c.host_packed,
                    "sha256_file": c.path.with_name(c.path.name + ".sha256").is_file(),
                    "path": str(c.path),
                }
                for c in found
            ]
        )
        return
    for candidate in found:
        origin = "host-packed" if candidate.host_packed else "python-build-standalone"
        checksum = candidate.path.with_name(candidate.path.name + ".sha256")
        verified = "sha256 file" if checksum.is_file() else "no sha256 file"
        click.echo(
            f"cpython@{candidate.version}  {candidate.triple}  {origin}, {verified}  {candidate.path}"
        )
    if not found:
        where = ", ".join(str(folder) for folder in folders)
        click.echo(f"no runtime archives for {platform or 'any platform'} in {where}", err=True)
