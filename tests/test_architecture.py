"""The package's architecture: which stage may import which, no import circles, who may use doit,
click and rich or print, module sizes, and what ``import venvstacks`` loads.

The rules are data (`MAY_IMPORT`, `FRONT_ENDS`, ...): a new subpackage gets a row in `MAY_IMPORT`;
until it has one, `UNPLACED` applies, so that landing a new package never breaks this test by
surprise (the circle check still holds for it). docs/design.md explains the table.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "venvstacks"

# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------

# Top-level modules that every stage may use: the exception root, the one subprocess call site,
# hashing helpers, requirement spellings, and the package root (for ``__version__``).
PLUMBING = frozenset({"errors", "proc", "hashing", "pep508", ""})

# The pipeline, bottom up: each stage lists the stages (or single ``stage.module``s) it may import,
# besides itself and the plumbing. Function-level imports count like module-level ones.
MAY_IMPORT: dict[str, frozenset[str]] = {
    # names and platforms are the shared vocabulary of the spec and the plan
    "spec": frozenset({"plan.names", "plan.platforms"}),
    "plan": frozenset({"spec"}),
    "runtimes": frozenset({"plan"}),
    # app lock metadata records the launch module's tree hash
    "lock": frozenset({"spec", "plan", "runtimes", "envs.sourcetree"}),
    "envs": frozenset({"spec", "plan", "runtimes", "lock"}),
    "publish": frozenset({"spec", "plan", "lock", "envs"}),
    # pure renderers of plain values (trees, graphs); task views feed them
    "report": frozenset({"spec", "plan"}),
    # turns every operation below into doit tasks
    "tasks": frozenset({"spec", "plan", "lock", "runtimes", "envs", "publish", "report"}),
    # deployments are tasks in the target folder, over published archives
    "deploy": frozenset({"spec", "plan", "publish", "tasks"}),
    # OCI registries: HTTP and documents only; the front ends join it to publish and deploy
    "oci": frozenset(),
}
STAGES = frozenset(MAY_IMPORT)
# A subpackage without a row is "unplaced": it may import every stage (not the front ends), and
# every stage may import it; the circle check still applies. Give it a row once it settles.
UNPLACED = "(unplaced)"
# The front ends: the public API may import every stage; the CLI also the API. Nothing below
# imports them.
FRONT_ENDS: dict[str, frozenset[str]] = {
    "api": STAGES | {UNPLACED},
    "cli": STAGES | {UNPLACED, "api"},
}
# The package root re-exports the API (lazily); ``python -m venvstacks`` runs the CLI; the
# plumbing imports only plumbing.
ROOT_MAY_IMPORT = frozenset({"api"})
MAIN_MAY_IMPORT = frozenset({"cli"})

# Only the task layer (and deployments, which are tasks in the target folder) know doit.
DOIT_STAGES = frozenset({"tasks", "deploy"})
# Only the command line talks to the terminal.
TERMINAL_STAGES = frozenset({"cli"})
TERMINAL_LIBRARIES = frozenset({"click", "rich"})

MAX_LINES = 500
# Modules allowed over MAX_LINES, each with its current ceiling and why. Aim: empty.
LONG_MODULES: dict[str, tuple[int, str]] = {
    "publish/archive.py": (650, "four archive writers and the reader; split pending"),
}

# Import circles tolerated for now (each a sorted list of modules), with why. Aim: empty.
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}

# What ``import venvstacks`` must not load.
HEAVY = ("doit", "click", "rich", "packaging", "tomlkit", "pbs_installer", "yaml", "zstandard",
         "pathspec", "importlib.metadata")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading the package (pure except for reading files)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package (or a third-party root)."""

    target: str  # dotted module name
    line: int
    runtime: bool  # False for imports under ``if TYPE_CHECKING:``
    function_level: bool


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``venvstacks.lock.pylock`` for ``venvstacks/lock/pylock.py`` (packages without __init__)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_imports(
    node: ast.AST, runtime: bool = True, in_function: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, runtime, in_function
        child_runtime = runtime and not _type_checking_block(child)
        child_function = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        yield from _walk_imports(child, child_runtime, child_function)


def imports_of(source: str, name: str, is_package: bool, known: Iterable[str]) -> list[Import]:
    """Every import in ``source`` (module ``name``), resolved to known modules where possible.

    ``from pkg import mod`` resolves to ``pkg.mod`` when that is a known module.
    """
    known = set(known)
    found = []
    for node, runtime, in_function in _walk_imports(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in known else base)
        found.extend(Import(t, node.lineno, runtime, in_function) for t in dict.fromkeys(targets))
    return found


def stage_of(module: str) -> str:
    """``lock`` for ``venvstacks.lock.pylock``; ``""`` for the root; ``errors`` for top-level ones."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def qualified(module: str) -> str:
    """``lock.pylock`` for ``venvstacks.lock.pylock``."""
    return ".".join(module.split(".")[1:])


def allowed_targets(stage: str, rules: Mapping[str, frozenset[str]] = MAY_IMPORT) -> frozenset[str]:
    """What ``stage`` may import (stages or ``stage.module``s), besides itself and the plumbing."""
    if stage == "":
        return ROOT_MAY_IMPORT
    if stage == "__main__":
        return MAIN_MAY_IMPORT
    if stage in PLUMBING:
        return frozenset()
    if stage in FRONT_ENDS:
        return FRONT_ENDS[stage]
    if stage in rules:
        return rules[stage] | {UNPLACED}
    return frozenset(rules) | {UNPLACED}


def layering_violation(
    importer: str, target: str, rules: Mapping[str, frozenset[str]] = MAY_IMPORT
) -> str | None:
    """Why ``importer`` may not import ``target`` (both dotted module names), else None."""
    source, wanted = stage_of(importer), stage_of(target)
    if wanted == source or (wanted in PLUMBING and qualified(target) == wanted):
        return None
    placed = set(rules) | set(FRONT_ENDS) | PLUMBING | {"__main__"}
    allowed = allowed_targets(source, rules)
    if (wanted if wanted in placed else UNPLACED) in allowed or qualified(target) in allowed:
        return None
    who = qualified(importer) or "the package root"
    return f"{who} imports {target}, but {source or 'the root'} may import only {sorted(allowed)}"


def import_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    nodes = set(edges) | {t for ts in edges.values() for t in ts}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _package_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "_injected" not in path.parts  # checked to be stdlib-only by test_postinstall
    }


MODULES = _package_modules()
IMPORTS = {
    name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", MODULES)
    for name, path in MODULES.items()
}


def _relative(name: str) -> str:
    return str(MODULES[name].relative_to(PACKAGE))


# ---------------------------------------------------------------------------------------------
# The package obeys the rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODULES), ids=_relative)
def test_stages_import_only_what_the_pipeline_allows(name: str) -> None:
    problems = [
        f"line {imp.line}: {why}"
        for imp in IMPORTS[name]
        if imp.target.split(".")[0] == "venvstacks"
        and (why := layering_violation(name, imp.target)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_no_import_circles_between_modules() -> None:
    edges = {
        name: {
            imp.target
            for imp in imports
            if imp.runtime and imp.target in MODULES and imp.target != name
        }
        for name, imports in IMPORTS.items()
    }
    # Imports under ``if TYPE_CHECKING:`` do not run and are left out; function-level ones count.
    unexpected = [c for c in import_cycles(edges) if tuple(c) not in KNOWN_CYCLES]
    assert unexpected == [], "import circles (break them, e.g. by moving the shared part down)"


@pytest.mark.parametrize("name", sorted(MODULES), ids=_relative)
def test_doit_click_rich_and_print_stay_in_their_stages(name: str) -> None:
    stage = stage_of(name)
    roots = {imp.target.split(".")[0] for imp in IMPORTS[name]}
    if stage not in DOIT_STAGES:
        assert "doit" not in roots, f"{name} must not import doit (only {sorted(DOIT_STAGES)})"
    if stage not in TERMINAL_STAGES and stage != "__main__":
        assert not roots & TERMINAL_LIBRARIES, f"{name} must not import click or rich"
        assert not _prints(MODULES[name]), f"{name} must not print (use logging or a callback)"


def _prints(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        for node in ast.walk(tree)
    )


def test_modules_stay_small() -> None:
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        ceiling = LONG_MODULES.get(relative, (MAX_LINES, ""))[0]
        if lines > ceiling:
            too_long[relative] = lines
    assert not too_long, f"over {MAX_LINES} lines (split along their sections): {too_long}"


def test_the_long_module_allow_list_is_not_stale() -> None:
    for relative in LONG_MODULES:
        path = PACKAGE / relative
        if path.exists():
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines > MAX_LINES, f"{relative} is short now: drop it from LONG_MODULES"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_module_has_a_docstring(path: Path) -> None:
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), (
        f"{path.name} needs a docstring"
    )


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import venvstacks; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    heavy = {m for m in loaded if m.startswith(HEAVY) or m.startswith("venvstacks.")}
    assert not heavy, f"import venvstacks loads {sorted(heavy)}"


# ---------------------------------------------------------------------------------------------
# The checks themselves (on made-up modules)
# ---------------------------------------------------------------------------------------------


def test_relative_and_function_level_imports_are_resolved() -> None:
    source = (
        "from . import pylock\n"
        "from ..plan.layers import X\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from venvstacks.cli import main\n"
        "def f():\n    import venvstacks.tasks.stack\n"
    )
    known = {"venvstacks.lock.pylock", "venvstacks.plan.layers", "venvstacks.cli.main"}
    found = imports_of(source, "venvstacks.lock.resolve", False, known)
    assert [(i.target, i.runtime, i.function_level) for i in found] == [
        ("venvstacks.lock.pylock", True, False),
        ("venvstacks.plan.layers", True, False),
        ("typing", True, False),
        ("venvstacks.cli.main", False, False),
        ("venvstacks.tasks.stack", True, True),
    ]


@pytest.mark.parametrize(
    ("importer", "target", "allowed"),
    [
        ("venvstacks.plan.layers", "venvstacks.spec.stack", True),
        ("venvstacks.spec.stack", "venvstacks.plan.names", True),  # a single module allowed
        ("venvstacks.spec.stack", "venvstacks.plan.layers", False),
        ("venvstacks.publish.layers", "venvstacks.tasks.stack", False),  # backwards
        ("venvstacks.tasks.stack", "venvstacks.errors", True),  # plumbing
        ("venvstacks.tasks.stack", "venvstacks.cli.main", False),
        ("venvstacks.api.stack", "venvstacks.cli.main", False),  # the CLI is a client of the API
        ("venvstacks.cli.build", "venvstacks.api.stack", True),
        ("venvstacks.cli.build", "venvstacks.newstage.thing", True),  # unplaced: allowed
        ("venvstacks.tasks.stack", "venvstacks.newstage.thing", True),
        ("venvstacks.newstage.thing", "venvstacks.publish.archive", True),
        ("venvstacks.newstage.thing", "venvstacks.api.stack", False),  # never the front ends
        ("venvstacks.newstage.thing", "venvstacks.cli.main", False),
        ("venvstacks", "venvstacks.api", True),
        ("venvstacks", "venvstacks.tasks.engine", False),
    ],
)
def test_layering_rule(importer: str, target: str, allowed: bool) -> None:
    assert (layering_violation(importer, target) is None) == allowed


def test_import_cycles_are_found() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["e"]}
    assert import_cycles(edges) == [["a", "b", "c"]]
    assert import_cycles({"a": ["b"], "b": []}) == []


# ---------------------------------------------------------------------------------------------
# docs/design.md's module map matches the tree
# ---------------------------------------------------------------------------------------------

DESIGN = PACKAGE.parent / "docs" / "design.md"


def module_map(text: str) -> set[str]:
    """``stage/module.py`` (or ``module.py`` for plumbing) for every module the map names."""
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    stage = ""
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        is_rule = bool(cells[0]) and set(cells[0]) <= {"-", ":"}
        if len(cells) < 2 or is_rule:
            continue
        if cells[0].startswith("`") and cells[0].endswith("/`"):
            stage = cells[0].strip("`")
        elif cells[0] == "plumbing":
            stage = ""
        elif cells[0]:
            continue  # the header row
        for name in cells[1].replace("`", " ").replace(",", " ").split():
            if name.endswith(".py"):
                named.add(f"{stage}{name}")
    return named


def test_module_map_names_every_module_of_the_pipeline_stages() -> None:
    named = module_map(DESIGN.read_text(encoding="utf-8"))
    actual = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    checked = {p for p in actual if p.split("/")[0] in STAGES or "/" not in p}
    missing = sorted(checked - named)
    assert not missing, f"add these to the module map of docs/design.md: {missing}"
    stale = sorted(n for n in named if n not in actual)
    assert not stale, f"docs/design.md's module map names modules that do not exist: {stale}"


def test_module_map_parser() -> None:
    text = (
        "## Module map\n\n| stage | module | owns |\n|---|---|---|\n"
        "| plumbing | `errors.py` | x |\n| `lock/` | `pylock.py` | y |\n| | `a.py`, `b.py` | z |\n"
        "\n## Next\n| `x/` | `no.py` | |\n"
    )
    assert module_map(text) == {"errors.py", "lock/pylock.py", "lock/a.py", "lock/b.py"}
