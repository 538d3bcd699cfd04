"""What would run, and why: task states for `status` and `graph --tasks`. Pure.

doit answers, for each task on its own, whether it is up to date. A task whose own inputs are
unchanged may still run because a task it depends on will run first and change those inputs, so
states are propagated downstream: `stale` (will run), `waiting` (runs only if what it depends on
produces different bytes), `up-to-date`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks.report.render import Edge, Graph, Node
from venvstacks.tasks.engine import TaskDict, TaskState, full_name

__all__ = ["TaskView", "describe_reasons", "task_graph", "task_view"]


@dataclass(frozen=True)
class TaskView:
    name: str
    state: str  # "stale", "waiting", "up-to-date"
    why: tuple[str, ...]
    needs: tuple[str, ...]


def _short(path: str, base: Path | None) -> str:
    if base is not None:
        try:
            return str(Path(path).relative_to(base))
        except ValueError:
            pass
    return path


_FILE_REASONS = {
    "missing_target": "not built yet",
    "changed_file_dep": "changed",
    "missing_file_dep": "missing inputs",
    "added_file_dep": "new inputs",
    "removed_file_dep": "inputs no longer used",
}
# Without its target a task runs whatever else doit says, and a task that never ran has every
# input "changed" and every uptodate check false: only the missing target and inputs tell anything.
_SHADOWED_BY_MISSING_TARGET = ("changed_file_dep", "uptodate_false")


def describe_reasons(reasons: Mapping[str, Any], base: Path | None = None) -> list[str]:
    """doit's reason keys in words a user can act on (file lists sorted, relative to `base`)."""
    described: list[str] = []
    for key, value in reasons.items():
        items = value if isinstance(value, list | tuple | set) else [value]
        if key in _SHADOWED_BY_MISSING_TARGET and reasons.get("missing_target"):
            continue
        if key in _FILE_REASONS:
            files = sorted(_short(str(p), base) for p in items)
            described.append(f"{_FILE_REASONS[key]}: {', '.join(files)}")
        elif key == "uptodate_false":
            described.extend(_uptodate_reasons(list(items)))
        elif key in ("has_no_dependencies", "never_run"):
            described.append("never ran")
        elif key == "checker_changed":
            described.append("dependency checker changed")
        else:
            described.append(f"{key}: {value}")
    return described


def _uptodate_reasons(checks: Sequence[Any]) -> list[str]:
    """What failed up-to-date checks say about themselves (`why`), else a generic reason."""
    said = [
        str(getattr(check[0], "why", ""))
        for check in checks
        if isinstance(check, tuple | list) and check
    ]
    specific = [why for why in said if why]
    generic = len(specific) < len(checks)
    return specific + (["its inputs or settings changed"] if generic or not specific else [])


def _producers(tasks: Sequence[TaskDict]) -> dict[str, str]:
    return {target: full_name(t) for t in tasks for target in t.get("targets", [])}


def task_needs(tasks: Sequence[TaskDict]) -> dict[str, tuple[str, ...]]:
    """For each task, the tasks it depends on (ordering and produced files)."""
    producers = _producers(tasks)
    needs: dict[str, tuple[str, ...]] = {}
    for task in tasks:
        deps = list(task.get("task_dep", []))
        deps += [producers[f] for f in task.get("file_dep", []) if f in producers]
        needs[full_name(task)] = tuple(dict.fromkeys(d for d in deps if d != full_name(task)))
    return needs


def task_view(
    tasks: Sequence[TaskDict],
    states: Sequence[TaskState],
    base: Path | None = None,
    extra_reasons: Mapping[str, Sequence[str]] | None = None,
) -> list[TaskView]:
    """Every task in dependency order with its propagated state and reasons."""
    needs = task_needs(tasks)
    by_name = {s.name: s for s in states}
    result: dict[str, TaskView] = {}

    def visit(name: str) -> TaskView:
        if name in result:
            return result[name]
        upstream = [visit(d) for d in needs.get(name, ()) if d in by_name]
        own = by_name[name]
        why = list((extra_reasons or {}).get(name, ())) or describe_reasons(own.reasons, base)
        if own.status != "up-to-date":
            view = TaskView(name, "stale", tuple(why), needs.get(name, ()))
        elif any(u.state != "up-to-date" for u in upstream):
            after = [u.name for u in upstream if u.state != "up-to-date"]
            view = TaskView(name, "waiting", (f"after {', '.join(after)}",), needs.get(name, ()))
        else:
            view = TaskView(name, "up-to-date", (), needs.get(name, ()))
        result[name] = view
        return view

    for state in states:
        visit(state.name)
    return [result[s.name] for s in states]


def task_graph(title: str, views: Sequence[TaskView], layer_order: Sequence[str]) -> Graph:
    """Tasks grouped by layer, edges from what a task needs to the task."""
    names = {v.name for v in views}
    nodes = tuple(
        Node(v.name, v.name, v.name.split(":", 1)[1], v.state, {"why": list(v.why)}) for v in views
    )
    edges = tuple(Edge(dep, v.name) for v in views for dep in v.needs if dep in names)
    return Graph(title, nodes, edges, tuple(layer_order))


def render_status(views: Sequence[TaskView]) -> str:
    """A table of tasks: name, state, why."""
    width = max((len(v.name) for v in views), default=10)
    lines = []
    for view in views:
        why = "; ".join(view.why)
        lines.append(f"{view.name:<{width}}  {view.state:<10}  {why}".rstrip())
    stale = sum(v.state == "stale" for v in views)
    waiting = sum(v.state == "waiting" for v in views)
    lines.append(
        f"{len(views)} tasks: {stale} stale, {waiting} waiting on them, "
        f"{len(views) - stale - waiting} up to date"
    )
    return "\n".join(lines) + "\n"
