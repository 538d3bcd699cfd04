"""The package's layering: who may import doit, click and rich, and who may print."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "venvstacks"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))

# Only the task layer knows doit; every operation stays callable without it.
DOIT_USERS = {"tasks/engine", "tasks/stack", "tasks/dodo", "deploy/deployment"}
# Only the command line and the progress display talk to the terminal.
# Only the command line (the `cli` subpackage) talks to the terminal.


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _prints(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        for node in ast.walk(tree)
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_dependencies(path: Path) -> None:
    name = path.relative_to(PACKAGE).with_suffix("").as_posix()
    roots = _imported_roots(path)
    if "_injected" in path.parts:
        return  # checked to be stdlib-only by test_postinstall
    if name not in DOIT_USERS:
        assert "doit" not in roots, f"{name} must not import doit"
    if not (name.startswith("cli/") or name == "__main__"):
        assert not roots & {"click", "rich"}, f"{name} must not import click or rich"
        assert not _prints(path), f"{name} must not print (use logging)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_has_a_docstring(path: Path) -> None:
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path.name} needs a docstring"


def test_importing_the_package_does_nothing() -> None:
    import subprocess
    import sys

    code = "import sys, venvstacks; print(sorted(m for m in sys.modules if m.startswith(('doit', 'click', 'rich', 'uv'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
