"""Showing a drawing to a person: an SVG file opened in a browser where there is one."""

from __future__ import annotations

import os
import sys
import tempfile
import webbrowser
from pathlib import Path

import click

__all__ = ["can_open_browser", "show_svg"]


def can_open_browser(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """True where a graphical browser can be expected: macOS, Windows, or a display on Linux.

    Without a display, `webbrowser` would fall back to a text browser in this very terminal
    (lynx, w3m), which cannot show an SVG; ``BROWSER`` set by the user is always honoured.
    """
    source = os.environ if env is None else env
    if source.get("BROWSER"):
        return True
    if platform in ("darwin", "win32"):
        return True
    return bool(source.get("DISPLAY") or source.get("WAYLAND_DISPLAY"))


def show_svg(svg: bytes, output: Path | None = None) -> Path:
    """Write ``svg`` (to ``output``, else a new temporary file) and open it in a browser.

    Where no browser can be opened, the file's path is printed on stdout instead; otherwise a
    line on stderr says what was opened. Returns the file's path.
    """
    if output is None:
        handle, name = tempfile.mkstemp(prefix="venvstacks-graph-", suffix=".svg")
        with os.fdopen(handle, "wb") as stream:
            stream.write(svg)
        path = Path(name)
    else:
        output.write_bytes(svg)
        path = output.absolute()
    opened = can_open_browser() and webbrowser.open(path.as_uri())
    if opened:
        click.echo(f"opened {path} in a browser", err=True)
    else:
        click.echo(str(path))
    return path
