"""`venvstacks graph --open`: an SVG in a temporary file, opened in a browser where there is one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from venvstacks.cli.viewer import can_open_browser

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "scientific" / "venvstacks.toml"
VENVSTACKS = [sys.executable, "-m", "venvstacks"]
SVG = "{http://www.w3.org/2000/svg}"

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")


def _graph(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY", "BROWSER"}
    }
    return subprocess.run(
        [*VENVSTACKS, "graph", str(SPEC), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=False,
    )


def test_without_a_browser_the_path_is_printed(tmp_path: Path) -> None:
    result = _graph("--tasks", "--status", "--open", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path and path.name.startswith("venvstacks-graph-")
    assert path.suffix == ".svg"
    texts = [el.text for el in ElementTree.parse(path).getroot().iter(f"{SVG}text")]
    assert "lock:app-stats" in texts
    assert "runs only if a task it needs writes something new" in texts  # the legend


def test_with_a_browser_the_file_is_opened(tmp_path: Path) -> None:
    """A real browser command (a script that records what it was asked to open)."""
    record = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {record}\n')
    browser.chmod(0o755)
    result = _graph("--open", "-o", str(tmp_path / "layers.svg"), env={"BROWSER": f"{browser} %s"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"opened {tmp_path / 'layers.svg'} in a browser")
    assert record.read_text().strip() == (tmp_path / "layers.svg").as_uri()


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"BROWSER": "firefox"}, "linux", True),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_browser_detection(env: dict[str, str], platform: str, expected: bool) -> None:
    assert can_open_browser(env, platform) is expected
