"""Reports about a stack: the `show` tree, its JSON form, and the layer graph. Pure.

Lock state comes in through the narrow `LockView` protocol, so these reports know nothing about
how locks are stored or checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol, TypedDict

from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.names import LayerKind
from venvstacks.report.render import (
    LOCK_LEGEND,
    TASK_LEGEND,
    Edge,
    Graph,
    Node,
    transitive_reduction,
)

__all__ = [
    "LayerStatus",
    "LockView",
    "layer_graph",
    "readable_task_graph",
    "show_json",
    "show_tree",
    "stack_status",
]


class LockView(Protocol):
    """What reports need to know about a layer's lock."""

    def has_valid_lock(self, layer: LayerPlan) -> bool: ...

    def install_target(self, layer: LayerPlan) -> str | None:
        """The deployed name, or None when a versioned layer has no valid lock yet."""
        ...


class LayerStatus(TypedDict, total=False):
    name: str
    install_target: str
    has_valid_lock: bool
    selected_operations: list[str] | None
    dependencies: list[LayerStatus]


class StackStatus(TypedDict):
    spec_name: str
    runtimes: list[LayerStatus]
    frameworks: list[LayerStatus]
    applications: list[LayerStatus]


def _target(layer: LayerPlan, locks: LockView) -> str:
    return locks.install_target(layer) or f"{layer.env_name}@???"


def _layer_status(
    layer: LayerPlan,
    plan: StackPlan,
    locks: LockView,
    operations: Mapping[str, Sequence[str]] | None,
    with_deps: bool,
) -> LayerStatus:
    status: LayerStatus = {
        "name": layer.env_name,
        "install_target": _target(layer, locks),
        "has_valid_lock": locks.has_valid_lock(layer),
        "selected_operations": list(operations.get(layer.env_name, []))
        if operations is not None
        else None,
    }
    if with_deps and layer.kind is not LayerKind.RUNTIME:
        status["dependencies"] = [
            _layer_status(dep, plan, locks, operations, with_deps=False)
            for dep in plan.dependencies(layer.env_name)
        ]
    return status


def stack_status(
    plan: StackPlan,
    layers: Sequence[LayerPlan],
    locks: LockView,
    operations: Mapping[str, Sequence[str]] | None = None,
) -> StackStatus:
    """The JSON-ready status of the selected layers (0.8.0's `StackStatus` shape)."""
    by_kind = {
        kind: [_layer_status(l, plan, locks, operations, True) for l in layers if l.kind is kind]
        for kind in LayerKind
    }
    return {
        "spec_name": str(plan.spec.path),
        "runtimes": by_kind[LayerKind.RUNTIME],
        "frameworks": by_kind[LayerKind.FRAMEWORK],
        "applications": by_kind[LayerKind.APPLICATION],
    }


def show_json(status: StackStatus) -> str:
    return json.dumps(status, indent=2, sort_keys=True) + "\n"


def _label(status: LayerStatus) -> str:
    mark = "" if status["has_valid_lock"] else "*"
    name, target = status["name"], status["install_target"]
    text = f"{mark}{name}" if target == name else f"{mark}{name} -> {target}"
    ops = status.get("selected_operations")
    return f"{text} ({', '.join(ops)})" if ops else text


def show_tree(status: StackStatus) -> str:
    """The tree `venvstacks show` prints: categories, layers, and their dependencies."""
    lines = [status["spec_name"]]
    categories = [
        (title, status[key])  # type: ignore[literal-required]
        for title, key in (
            ("Runtimes", "runtimes"),
            ("Frameworks", "frameworks"),
            ("Applications", "applications"),
        )
        if status[key]  # type: ignore[literal-required]
    ]
    for n, (title, layers) in enumerate(categories):
        last_cat = n == len(categories) - 1
        lines.append(("└── " if last_cat else "├── ") + title)
        indent = "    " if last_cat else "│   "
        for m, layer in enumerate(layers):
            last = m == len(layers) - 1
            lines.append(indent + ("└── " if last else "├── ") + _label(layer))
            deps = layer.get("dependencies", [])
            sub = indent + ("    " if last else "│   ")
            for k, dep in enumerate(deps):
                lines.append(sub + ("└── " if k == len(deps) - 1 else "├── ") + _label(dep))
    return "\n".join(lines) + "\n"


_GROUP_TITLES = {
    LayerKind.APPLICATION: "Applications",
    LayerKind.FRAMEWORK: "Frameworks",
    LayerKind.RUNTIME: "Runtimes",
}


def layer_graph(plan: StackPlan, layers: Sequence[LayerPlan], locks: LockView | None) -> Graph:
    """The layer DAG: an edge from each direct dependency up to the layer that needs it."""
    chosen = {layer.env_name for layer in layers}
    nodes = []
    for layer in layers:
        state = None
        if locks is not None:
            state = "up-to-date" if locks.has_valid_lock(layer) else "stale"
        detail = {
            "kind": layer.kind.value,
            "platforms": [str(p) for p in layer.platforms],
            "sys_path_order": list(layer.dependencies),
        }
        nodes.append(Node(layer.env_name, layer.env_name, _GROUP_TITLES[layer.kind], state, detail))
    edges = tuple(
        Edge(dep, layer.env_name)
        for layer in layers
        for dep in layer.direct_dependencies
        if dep in chosen
    )
    return Graph(
        plan.spec.path.name,
        tuple(nodes),
        edges,
        tuple(_GROUP_TITLES.values()),
        legend=LOCK_LEGEND if locks is not None else (),
        note="an arrow goes from a layer to the layers built directly on it",
    )


_TASK_NOTE = "an arrow goes from a task to the tasks that need it"


def readable_task_graph(graph: Graph, *, all_edges: bool = False, legend: bool = False) -> Graph:
    """The task graph as drawn for people: without implied arrows (unless ``all_edges``), with
    a note on reading it and, when tasks carry states, the colour legend."""
    if all_edges:
        drawn, note = graph, _TASK_NOTE
    else:
        drawn = transitive_reduction(graph)
        note = f"{_TASK_NOTE}; arrows implied by others are left out (--all-edges draws them)"
    return replace(drawn, note=note, legend=TASK_LEGEND if legend else ())
