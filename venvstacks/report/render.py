"""A small directed-graph model and its renderings: text, DOT, Mermaid and JSON. Pure.

Both the layer graph (`venvstacks graph`) and the task graph (`venvstacks graph --tasks`) are built
as a `Graph` and drawn by the same renderers. Edges point from the lower node to the upper one (what
is needed → what needs it), so drawings put runtimes at the bottom.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Edge", "Graph", "Node", "render_dot", "render_json", "render_mermaid", "render_text"]

GRAPH_FORMATS = ("text", "dot", "mermaid", "json", "svg")


@dataclass(frozen=True)
class Node:
    """A node: `group` clusters nodes (layer kind, or layer for tasks); `state` colours it."""

    id: str
    label: str
    group: str
    state: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str


@dataclass(frozen=True)
class Graph:
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    groups: tuple[str, ...]

    def members(self, group: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.group == group)


_STATE_COLOURS = {
    "stale": "#f4a261",
    "waiting": "#ffe8a3",
    "missing": "#e76f51",
    "up-to-date": "#8ecae6",
    "disabled": "#dddddd",
}


def render_text(graph: Graph) -> str:
    """A readable listing: each group, its nodes, and what each node needs."""
    needs: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for edge in graph.edges:
        needs[edge.target].append(edge.source)
    labels = {n.id: n.label for n in graph.nodes}
    lines = [graph.title]
    for group in graph.groups:
        members = graph.members(group)
        if not members:
            continue
        lines.append(f"{group}:")
        for node in members:
            state = f" [{node.state}]" if node.state else ""
            lines.append(f"  {node.label}{state}")
            for dep in needs[node.id]:
                lines.append(f"    <- {labels[dep]}")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(text: str) -> str:
    """A quoted label: Graphviz reads HTML entities in labels, so a literal '&' is escaped too."""
    return _dot_id(text.replace("&", "&amp;"))


def render_dot(graph: Graph) -> str:
    """Graphviz DOT: one cluster per group, lower layers at the bottom."""
    lines = [
        f"digraph {_dot_id(graph.title)} {{",
        "  rankdir=BT;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for n, group in enumerate(graph.groups):
        members = graph.members(group)
        if not members:
            continue
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={_dot_label(group)};")
        for node in members:
            attrs = [f"label={_dot_label(node.label)}"]
            if node.state in _STATE_COLOURS:
                attrs.append(f'fillcolor="{_STATE_COLOURS[node.state]}"')
            lines.append(f"    {_dot_id(node.id)} [{', '.join(attrs)}];")
        lines.append("  }")
    for edge in graph.edges:
        lines.append(f"  {_dot_id(edge.source)} -> {_dot_id(edge.target)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(text: str, ids: dict[str, str]) -> str:
    if text not in ids:
        ids[text] = f"n{len(ids)}_" + re.sub(r"[^A-Za-z0-9_]", "_", text)
    return ids[text]


def _mermaid_label(text: str) -> str:
    """A quoted label; characters Mermaid or HTML would interpret become '#NN;' entity codes."""
    return '"' + re.sub(r'["#&<>`]', lambda m: f"#{ord(m[0])};", text) + '"'


def render_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart, bottom to top, with one subgraph per group."""
    ids: dict[str, str] = {}
    lines = ["flowchart BT"]
    states = sorted({n.state for n in graph.nodes if n.state in _STATE_COLOURS}, key=str)
    for state in states:
        lines.append(f"  classDef {state.replace('-', '_')} fill:{_STATE_COLOURS[str(state)]}")
    for n, group in enumerate(graph.groups):
        members = graph.members(group)
        if not members:
            continue
        lines.append(f"  subgraph g{n}[{_mermaid_label(group)}]")
        for node in members:
            cls = f":::{node.state.replace('-', '_')}" if node.state in _STATE_COLOURS else ""
            lines.append(f"    {_mermaid_id(node.id, ids)}[{_mermaid_label(node.label)}]{cls}")
        lines.append("  end")
    for edge in graph.edges:
        lines.append(f"  {_mermaid_id(edge.source, ids)} --> {_mermaid_id(edge.target, ids)}")
    return "\n".join(lines) + "\n"


def render_json(graph: Graph) -> str:
    data = {
        "title": graph.title,
        "groups": list(graph.groups),
        "nodes": [
            {"id": n.id, "label": n.label, "group": n.group, "state": n.state, **n.detail}
            for n in graph.nodes
        ],
        "edges": [{"from": e.source, "to": e.target} for e in graph.edges],
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render(graph: Graph, fmt: str) -> str:
    """Render in any text format (svg is drawn from DOT by the caller)."""
    renderers = {
        "text": render_text,
        "dot": render_dot,
        "mermaid": render_mermaid,
        "json": render_json,
    }
    return renderers[fmt](graph)


def subgraph(graph: Graph, keep: Sequence[str]) -> Graph:
    """Only the nodes in `keep` and the edges between them."""
    wanted = set(keep)
    return Graph(
        graph.title,
        tuple(n for n in graph.nodes if n.id in wanted),
        tuple(e for e in graph.edges if e.source in wanted and e.target in wanted),
        graph.groups,
    )
