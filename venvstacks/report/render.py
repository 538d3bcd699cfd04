"""A small directed-graph model and its renderings: text, DOT, Mermaid and JSON. Pure.

Both the layer graph (`venvstacks graph`) and the task graph (`venvstacks graph --tasks`) are built
as a `Graph` and drawn by the same renderers. Edges point from the lower node to the upper one (what
is needed → what needs it), so drawings put runtimes at the bottom.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "LOCK_LEGEND",
    "TASK_LEGEND",
    "Edge",
    "Graph",
    "Node",
    "render_dot",
    "render_json",
    "render_mermaid",
    "render_text",
    "transitive_reduction",
]

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
    """Nodes in groups, edges from what is needed to what needs it, and how to read it."""

    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    groups: tuple[str, ...]
    legend: tuple[tuple[str, str], ...] = ()
    """``(state, meaning)`` for each colour to explain, in order."""
    note: str = ""
    """One line on how to read the drawing (what an arrow means)."""

    def members(self, group: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.group == group)


_STATE_COLOURS = {
    "stale": "#f4a261",
    "waiting": "#ffe8a3",
    "missing": "#e76f51",
    "failed": "#e63946",
    "up-to-date": "#8ecae6",
    "disabled": "#dddddd",
}

TASK_LEGEND = (
    ("stale", "will run"),
    ("waiting", "runs only if a task it needs writes something new"),
    ("up-to-date", "nothing to do"),
    ("failed", "failed; runs again next time"),
)
"""What the colours of a task graph mean."""
LOCK_LEGEND = (
    ("up-to-date", "lock is valid"),
    ("stale", "needs locking"),
)
"""What the colours of a layer graph mean."""


def transitive_reduction(graph: Graph) -> Graph:
    """The same graph without the edges implied by others (``a -> c`` when ``a -> b -> c``).

    Reachability is unchanged, so the drawing says the same with far fewer arrows. The graph
    must be acyclic (task and layer graphs are); edge order is kept.
    """
    successors: dict[str, list[str]] = {}
    for edge in graph.edges:
        successors.setdefault(edge.source, []).append(edge.target)
    reach: dict[str, set[str]] = {}

    def reachable(node: str) -> set[str]:
        if node not in reach:
            reach[node] = set()  # a cycle stops here instead of recursing forever
            found: set[str] = set()
            for child in successors.get(node, ()):
                found.add(child)
                found |= reachable(child)
            reach[node] = found
        return reach[node]

    def implied(edge: Edge) -> bool:
        others = (c for c in successors.get(edge.source, ()) if c != edge.target)
        return any(edge.target in reachable(c) for c in others)

    kept = tuple(dict.fromkeys(e for e in graph.edges if not implied(e)))
    return replace(graph, edges=kept)


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
    if graph.note:
        lines.append(f"({graph.note})")
    if graph.legend:
        lines.append("legend: " + "; ".join(f"[{state}] {text}" for state, text in graph.legend))
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(text: str) -> str:
    """A quoted label: Graphviz reads HTML entities in labels, so a literal '&' is escaped too."""
    return _dot_id(text.replace("&", "&amp;"))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dot_legend(legend: Sequence[tuple[str, str]]) -> str:
    """One plain node holding a table: a coloured cell per state and what it means."""
    rows = "".join(
        f'<tr><td bgcolor="{_STATE_COLOURS.get(state, "#ffffff")}">{_html(state)}</td>'
        f'<td align="left">{_html(text)}</td></tr>'
        for state, text in legend
    )
    table = (
        '<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
        f'<tr><td colspan="2"><b>colours</b></td></tr>{rows}</table>'
    )
    return f'"legend" [shape=plaintext, style="", label=<{table}>];'


def render_dot(graph: Graph) -> str:
    """Graphviz DOT: one cluster per group, lower layers at the bottom."""
    title = graph.title + (f"\n{graph.note}" if graph.note else "")
    lines = [
        f"digraph {_dot_id(graph.title)} {{",
        "  rankdir=BT;",
        f'  label={_dot_label(title)}; labelloc=t; fontname="Helvetica";',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    if graph.legend:
        lines.append(f"  {_dot_legend(graph.legend)}")
    for n, group in enumerate(graph.groups):
        members = graph.members(group)
        if not members:
            continue
        lines.append(f"  subgraph cluster_{n} {{")
        # rankdir=BT turns clusters upside down: "b" puts their titles on top
        lines.append(f'    label={_dot_label(group)}; labelloc=b; fontname="Helvetica";')
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
    used = {n.state for n in graph.nodes} | {state for state, _ in graph.legend}
    states = sorted((s for s in used if s in _STATE_COLOURS), key=str)
    for state in states:
        lines.append(f"  classDef {state.replace('-', '_')} fill:{_STATE_COLOURS[str(state)]}")
    if graph.legend:
        lines.append(f"  subgraph legend[{_mermaid_label('colours')}]")
        for state, text in graph.legend:
            cls = f":::{state.replace('-', '_')}" if state in _STATE_COLOURS else ""
            legend_id = _mermaid_id(f"legend {state}", ids)
            lines.append(f"    {legend_id}[{_mermaid_label(f'{state}: {text}')}]{cls}")
        lines.append("  end")
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
    """The graph as JSON: title, groups, nodes (with details), edges, and the legend if any."""
    data: dict[str, object] = {
        "title": graph.title,
        "groups": list(graph.groups),
        "nodes": [
            {"id": n.id, "label": n.label, "group": n.group, "state": n.state, **n.detail}
            for n in graph.nodes
        ],
        "edges": [{"from": e.source, "to": e.target} for e in graph.edges],
    }
    if graph.legend:
        data["legend"] = [
            {"state": state, "meaning": text, "colour": _STATE_COLOURS.get(state)}
            for state, text in graph.legend
        ]
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
    return replace(
        graph,
        nodes=tuple(n for n in graph.nodes if n.id in wanted),
        edges=tuple(e for e in graph.edges if e.source in wanted and e.target in wanted),
    )
