"""Task graphs a person can read: the transitive reduction, the note and the colour legend.

The reduction is measured on the example stacks in specs/ (edge counts before and after) and
checked to keep every "what runs before what" relation.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tools.graph_checks import dot_svg_texts, mermaid_parse, parse_dot

from venvstacks.report.render import (
    LOCK_LEGEND,
    TASK_LEGEND,
    Edge,
    Graph,
    Node,
    render_dot,
    render_json,
    render_mermaid,
    render_text,
    transitive_reduction,
)
from venvstacks.report.show import readable_task_graph

ROOT = Path(__file__).resolve().parents[2]
VENVSTACKS = [sys.executable, "-m", "venvstacks"]

# Task edges of each example (every dependency) and after the reduction. A change here is a
# change of the task structure: check the drawing still reads well before updating the numbers.
EDGE_COUNTS = {
    "demo": (21, 13),
    "pytorch": (30, 18),
    "scientific": (41, 23),
    "two-runtimes": (24, 16),
}


def _reach(edges: tuple[Edge, ...]) -> set[tuple[str, str]]:
    successors: dict[str, set[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, set()).add(edge.target)
    pairs = set()
    for start in list(successors):
        todo, seen = [start], set()
        while todo:
            for child in successors.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        pairs |= {(start, end) for end in seen}
    return pairs


def _chain(*names: str, extra: tuple[tuple[str, str], ...] = ()) -> Graph:
    nodes = tuple(Node(n, n, "g") for n in names)
    edges = tuple(Edge(a, b) for a, b in itertools.pairwise(names))
    return Graph("t", nodes, edges + tuple(Edge(a, b) for a, b in extra), ("g",))


def test_reduction_drops_implied_edges_only() -> None:
    graph = _chain("a", "b", "c", "d", extra=(("a", "c"), ("a", "d"), ("b", "d")))
    reduced = transitive_reduction(graph)
    assert reduced.edges == (Edge("a", "b"), Edge("b", "c"), Edge("c", "d"))
    assert _reach(reduced.edges) == _reach(graph.edges)
    assert reduced.nodes == graph.nodes


def test_reduction_keeps_parallel_paths_and_duplicates_once() -> None:
    diamond = Graph(
        "t",
        tuple(Node(n, n, "g") for n in "abcd"),
        (Edge("a", "b"), Edge("a", "c"), Edge("b", "d"), Edge("c", "d"), Edge("a", "d"),
         Edge("a", "b")),
        ("g",),
    )  # fmt: skip
    assert transitive_reduction(diamond).edges == (
        Edge("a", "b"), Edge("a", "c"), Edge("b", "d"), Edge("c", "d")
    )  # fmt: skip


def test_reduction_terminates_on_a_cycle() -> None:
    cycle = _chain("a", "b", "c", extra=(("c", "a"),))
    assert len(transitive_reduction(cycle).edges) <= 3


def _task_graph_json(name: str, *args: str) -> dict[str, object]:
    spec = ROOT / "specs" / name / "venvstacks.toml"
    out = subprocess.run(
        [*VENVSTACKS, "graph", str(spec), "--tasks", "--format", "json", *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("name", sorted(EDGE_COUNTS))
def test_example_task_graphs_are_reduced_by_default(name: str) -> None:
    full = _task_graph_json(name, "--all-edges")
    reduced = _task_graph_json(name)
    edges = [tuple(e.values()) for e in full["edges"]]  # type: ignore[attr-defined]
    kept = [tuple(e.values()) for e in reduced["edges"]]  # type: ignore[attr-defined]
    assert (len(edges), len(kept)) == EDGE_COUNTS[name]
    assert set(kept) <= set(edges)
    as_edges = tuple(Edge(a, b) for a, b in edges)
    assert _reach(tuple(Edge(a, b) for a, b in kept)) == _reach(as_edges)
    # the runtime task no longer points at nearly every task
    runtime_out = [e for e in kept if e[0].startswith("runtime:")]
    assert all(e[1].startswith(("lock:", "install:")) for e in runtime_out)


SAMPLE = readable_task_graph(
    Graph(
        "venvstacks.toml tasks",
        (
            Node("runtime:rt", "runtime:rt", "rt", "up-to-date"),
            Node("lock:rt", "lock:rt", "rt", "stale"),
            Node("install:rt", "install:rt", "rt", "waiting"),
        ),
        (
            Edge("runtime:rt", "lock:rt"),
            Edge("lock:rt", "install:rt"),
            Edge("runtime:rt", "install:rt"),
        ),
        ("rt",),
    ),
    legend=True,
)


def test_readable_graph_has_a_note_and_the_legend() -> None:
    assert SAMPLE.legend == TASK_LEGEND
    assert [state for state, _ in TASK_LEGEND] == ["stale", "waiting", "up-to-date", "failed"]
    assert "--all-edges" in SAMPLE.note
    assert len(SAMPLE.edges) == 2
    plain = readable_task_graph(SAMPLE, all_edges=True)
    assert plain.legend == () and "--all-edges" not in plain.note


def test_text_legend() -> None:
    text = render_text(SAMPLE)
    assert text.splitlines()[-1] == (
        "legend: [stale] will run; [waiting] runs only if a task it needs writes something new; "
        "[up-to-date] nothing to do; [failed] failed; runs again next time"
    )
    assert f"({SAMPLE.note})" in text


def test_json_legend() -> None:
    legend = json.loads(render_json(SAMPLE))["legend"]
    assert [(e["state"], e["meaning"]) for e in legend] == list(TASK_LEGEND)
    assert all(e["colour"].startswith("#") for e in legend)


def test_dot_legend_is_drawn_by_graphviz() -> None:
    dot = render_dot(SAMPLE)
    parse_dot(dot)  # pydot reads it
    drawn = dot_svg_texts(dot)
    for state, meaning in TASK_LEGEND:
        assert state in drawn and meaning in drawn
    assert "colours" in drawn


def test_mermaid_legend_parses() -> None:
    text = render_mermaid(SAMPLE)
    for state, meaning in TASK_LEGEND:
        assert f"{state}: {meaning}" in text
    assert "classDef failed fill:" in text
    (parsed,) = mermaid_parse(text)
    assert parsed.get("ok", True), parsed


def test_layer_graph_legend_explains_lock_colours() -> None:
    data = json.loads(
        subprocess.run(
            [*VENVSTACKS, "graph", str(ROOT / "specs" / "demo" / "venvstacks.toml"), "--format",
             "json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert [(e["state"], e["meaning"]) for e in data["legend"]] == list(LOCK_LEGEND)
