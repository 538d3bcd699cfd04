"""docs/api.md's examples, run as written: every ```python block, in order, in one fresh Python.

The process is the one a user of the API would have: the examples' stack (the ```toml block)
with local wheels and a packed runtime, no network, and, checked at the end, neither click nor
rich ever imported. The examples lock, build one layer, follow progress, inspect status, publish,
deploy, verify and run: the full pipeline through `venvstacks.Stack` alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

NO_CLI = """
import sys
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("click", "rich"))
assert not loaded, f"the API imported {loaded}"
print("API-EXAMPLES-OK")
"""


def doc_blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(API_DOC.read_text()) if lang == language]


def test_the_doc_has_examples_for_each_verb() -> None:
    code = "\n".join(doc_blocks("python"))
    for verb in ("Stack.load", ".lock(", ".build(", ".status(", ".publish(", "deploy_published"):
        assert verb in code, verb


def test_api_examples_run_without_click(
    tmp_path: Path,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> None:
    (spec,) = doc_blocks("toml")
    spec = re.sub(r"cpython@3\.11\.\d+", f"cpython@{runtime_versions['3.11']}", spec)
    root = tmp_path / "stack"
    root.mkdir()
    (root / "venvstacks.toml").write_text(spec)
    (root / "hello.py").write_text("print('hello from the API')\n")
    (root / "wheels").symlink_to(wheelhouse)
    (root / "runtimes").symlink_to(runtime_archive_dir)
    script = "\n".join(doc_blocks("python")) + NO_CLI
    env = {k: v for k, v in os.environ.items() if k != "VENVSTACKS_RUNTIME_ARCHIVES"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.rstrip().endswith("API-EXAMPLES-OK")
    assert "hello from the API" in result.stdout
    assert (root / "deployed" / "app-hello" / "bin" / "python").exists()
