"""Independent parsers for the graph renderings, for tests: pydot, Graphviz's dot and Mermaid.

Every helper skips the calling test (with the reason and how to get the tool) when its tool is not
available, so the suite stays green on machines without Graphviz, pydot or node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

__all__ = [
    "MERMAID_CHECK",
    "dot_json",
    "dot_svg_texts",
    "dot_unquote",
    "mermaid_parse",
    "parse_dot",
]

MERMAID_CHECK = Path(__file__).with_name("check_mermaid.mjs")
_MERMAID_SETUP = "npm install --prefix .cache/npm mermaid@11 jsdom"
_SVG_NS = "{http://www.w3.org/2000/svg}"


def parse_dot(text: str) -> Any:
    """The single graph in `text`, parsed by pydot (its parser is independent of Graphviz)."""
    pydot = pytest.importorskip("pydot", reason="pydot is not installed (pip install pydot)")
    with warnings.catch_warnings():
        # pydot's grammar triggers pyparsing diagnostics; they are not about our DOT.
        warnings.simplefilter("ignore")
        graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None and len(graphs) == 1, f"pydot could not parse:\n{text}"
    return graphs[0]


def dot_unquote(dot_id: str) -> str:
    """The string a quoted DOT ID stands for (DOT quoted strings only escape the double quote)."""
    assert dot_id.startswith('"') and dot_id.endswith('"'), dot_id
    return dot_id[1:-1].replace('\\"', '"')


def _dot_program() -> str:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz's 'dot' is not on PATH (apt-get install graphviz)")
    return dot


def dot_json(text: str) -> dict[str, Any]:
    """Graphviz's own reading of `text` (`dot -Tjson0`): objects (clusters, nodes) and edges."""
    result = subprocess.run(
        [_dot_program(), "-Tjson0"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"dot rejected the graph: {result.stderr}\n{text}"
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def dot_svg_texts(text: str) -> list[str]:
    """The texts Graphviz draws when it renders `text` as SVG (labels as the reader sees them)."""
    result = subprocess.run(
        [_dot_program(), "-Tsvg"], input=text.encode(), capture_output=True, check=False
    )
    assert result.returncode == 0, f"dot rejected the graph: {result.stderr!r}\n{text}"
    root = ElementTree.fromstring(result.stdout)
    return [el.text or "" for el in root.iter(f"{_SVG_NS}text")]


_NPM_DIR = Path(
    os.environ.get("VENVSTACKS_NPM_DIR") or Path(__file__).resolve().parents[2] / ".cache" / "npm"
)


def _ensure_mermaid_packages() -> None:
    """Install mermaid and jsdom into the git-ignored npm folder once, if npm is there.

    A file lock keeps pytest-xdist workers from installing at the same time. Any failure
    (no npm, no registry) leaves the check to skip with its reason.
    """
    if (_NPM_DIR / "node_modules" / "mermaid").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        return
    import fcntl

    _NPM_DIR.mkdir(parents=True, exist_ok=True)
    with open(_NPM_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (_NPM_DIR / "node_modules" / "mermaid").is_dir():
            return
        subprocess.run(
            [npm, "install", "--prefix", str(_NPM_DIR), "--no-audit", "--no-fund", "mermaid@11", "jsdom"],
            capture_output=True,
            check=False,
            timeout=600,
        )


def mermaid_parse(*sources: str) -> list[dict[str, Any]]:
    """Mermaid's own reading of each flowchart (see check_mermaid.mjs for the result shape).

    Skips the test when node or the npm packages (mermaid, jsdom) are unavailable.
    """
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: cannot run Mermaid's parser")
    _ensure_mermaid_packages()
    result = subprocess.run(
        [node, str(MERMAID_CHECK), "--json"],
        input=json.dumps(list(sources)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if result.returncode == 3:
        pytest.skip(f"{result.stderr.strip()}; set up with: {_MERMAID_SETUP}")
    assert result.returncode == 0, f"check_mermaid.mjs failed: {result.stderr}"
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed
