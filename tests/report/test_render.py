"""The graph model and its renderers (text, DOT, Mermaid, JSON), checked by independent parsers.

DOT is read back by pydot and by Graphviz itself (names, edges, and the texts it draws); Mermaid by
Mermaid's own parser through tests/tools/check_mermaid.mjs. Those checks skip when the tool is
missing; the structural checks here always run.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tools.graph_checks import dot_json, dot_svg_texts, dot_unquote, mermaid_parse, parse_dot

from venvstacks.report.render import (
    GRAPH_FORMATS,
    Edge,
    Graph,
    Node,
    render,
    render_dot,
    render_json,
    render_mermaid,
    render_text,
    subgraph,
)

COLOURS = {
    "stale": "#f4a261",
    "missing": "#e76f51",
    "up-to-date": "#8ecae6",
    "disabled": "#dddddd",
}


def _graph(
    title: str,
    nodes: list[tuple[str, str, str | None]],
    edges: list[tuple[str, str]],
    groups: tuple[str, ...],
    *,
    labels: dict[str, str] | None = None,
) -> Graph:
    labels = labels or {}
    return Graph(
        title,
        tuple(Node(i, labels.get(i, i), g, s) for i, g, s in nodes),
        tuple(Edge(a, b) for a, b in edges),
        groups,
    )


# A small stack: every lock state, an unknown state (drawn uncoloured) and no state at all.
STACK = _graph(
    "venvstacks.toml",
    [
        ("app-x", "Applications", "missing"),
        ("app-y", "Applications", None),
        ("framework-a", "Frameworks", "up-to-date"),
        ("framework-b", "Frameworks", "stale"),
        ("cpython-3.11", "Runtimes", "disabled"),
        ("cpython-3.12", "Runtimes", "weird"),
    ],
    [
        ("cpython-3.11", "framework-a"),
        ("framework-a", "framework-b"),
        ("framework-b", "app-x"),
        ("framework-a", "app-x"),
        ("cpython-3.12", "app-y"),
    ],
    ("Applications", "Frameworks", "Empty", "Runtimes"),
)

# Names and labels with characters that need escaping in DOT, Mermaid or HTML labels.
ODD_IDS = [
    "app-x@1",
    "framework-numpy.v2",
    'say "hi"',
    "it's",
    "a&b",
    "AT&amp;T",
    "#quot;",
    "hash #35; tag",
    "semi;colon",
    "a b",
    "-->",
    "[x]",
    "{y}",
    "end",
    "subgraph",
    "node",
    "digraph",
    "cluster_0",
    "style",
    "ünïcödé",
    "back\\slash",
    "trailing\\",
    "<i>not html</i>",
    "`tick`",
]
ODD = _graph(
    'odd "title" & more',
    [
        (i, 'group "one" & <two>' if n % 2 else "group #35;", "up-to-date")
        for n, i in enumerate(ODD_IDS)
    ]
    + [("plain", "group #35;", None)],
    [(ODD_IDS[n], ODD_IDS[n + 1]) for n in range(len(ODD_IDS) - 1)] + [(ODD_IDS[0], "plain")],
    ("group #35;", 'group "one" & <two>'),
    # A label in backticks would be a Markdown string to Mermaid.
    labels={**{i: f"label of {i}" for i in ODD_IDS}, "`tick`": "`tick`"},
)

# Two ids that differ only in characters Mermaid ids cannot hold must stay two nodes.
CLASHING = _graph(
    "clash",
    [("a-b", "G", None), ("a.b", "G", None), ("a_b", "G", None), ("a@b", "G", None)],
    [("a-b", "a.b"), ("a.b", "a_b"), ("a_b", "a@b")],
    ("G",),
)

GRAPHS = {"stack": STACK, "odd": ODD, "clashing": CLASHING}


def _non_empty_groups(graph: Graph) -> list[str]:
    return [g for g in graph.groups if graph.members(g)]


# --- model -------------------------------------------------------------------------------------


def test_members_keep_node_order() -> None:
    assert [n.id for n in STACK.members("Frameworks")] == ["framework-a", "framework-b"]
    assert STACK.members("Empty") == ()


def test_subgraph_keeps_only_chosen_nodes_and_their_edges() -> None:
    part = subgraph(STACK, ["framework-a", "framework-b", "app-x"])
    assert [n.id for n in part.nodes] == ["app-x", "framework-a", "framework-b"]
    assert part.edges == (
        Edge("framework-a", "framework-b"),
        Edge("framework-b", "app-x"),
        Edge("framework-a", "app-x"),
    )
    assert part.groups == STACK.groups
    assert part.title == STACK.title


def test_render_dispatches_every_text_format() -> None:
    assert render(STACK, "text") == render_text(STACK)
    assert render(STACK, "dot") == render_dot(STACK)
    assert render(STACK, "mermaid") == render_mermaid(STACK)
    assert render(STACK, "json") == render_json(STACK)
    assert set(GRAPH_FORMATS) == {"text", "dot", "mermaid", "json", "svg"}
    with pytest.raises(KeyError):
        render(STACK, "svg")  # drawn from DOT by the command, not here


# --- text --------------------------------------------------------------------------------------


def test_text_lists_groups_nodes_states_and_needs() -> None:
    assert render_text(STACK) == (
        "venvstacks.toml\n"
        "Applications:\n"
        "  app-x [missing]\n"
        "    <- framework-b\n"
        "    <- framework-a\n"
        "  app-y\n"
        "    <- cpython-3.12\n"
        "Frameworks:\n"
        "  framework-a [up-to-date]\n"
        "    <- cpython-3.11\n"
        "  framework-b [stale]\n"
        "    <- framework-a\n"
        "Runtimes:\n"
        "  cpython-3.11 [disabled]\n"
        "  cpython-3.12 [weird]\n"
    )


def test_text_uses_labels_not_ids() -> None:
    graph = _graph(
        "t",
        [("x", "G", None), ("y", "G", None)],
        [("x", "y")],
        ("G",),
        labels={"x": "X!", "y": "Y?"},
    )
    assert render_text(graph) == "t\nG:\n  X!\n  Y?\n    <- X!\n"


# --- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_json_round_trips_the_graph(name: str) -> None:
    graph = GRAPHS[name]
    data = json.loads(render_json(graph))
    assert data["title"] == graph.title
    assert data["groups"] == list(graph.groups)
    assert data["nodes"] == [
        {"id": n.id, "label": n.label, "group": n.group, "state": n.state} for n in graph.nodes
    ]
    assert data["edges"] == [{"from": e.source, "to": e.target} for e in graph.edges]


def test_json_includes_node_details() -> None:
    graph = Graph(
        "t", (Node("a", "a", "G", None, {"kind": "runtime", "platforms": ["x"]}),), (), ("G",)
    )
    (node,) = json.loads(render_json(graph))["nodes"]
    assert node == {
        "id": "a",
        "label": "a",
        "group": "G",
        "state": None,
        "kind": "runtime",
        "platforms": ["x"],
    }


# --- DOT ---------------------------------------------------------------------------------------


def test_dot_structure_without_tools() -> None:
    text = render_dot(STACK)
    assert text.startswith('digraph "venvstacks.toml" {\n')
    assert text.endswith("}\n")
    assert "rankdir=BT;" in text
    assert text.count("subgraph cluster_") == 3  # the empty group is left out
    assert text.count("->") == len(STACK.edges)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_dot_parsed_by_pydot(name: str) -> None:
    graph = GRAPHS[name]
    dot = parse_dot(render_dot(graph))
    assert dot.get_type() == "digraph"
    assert dot_unquote(dot.get_name()) == graph.title
    assert dot.get("rankdir") == "BT"
    clusters = dot.get_subgraphs()
    assert [_drawn_label(c.get("label")) for c in clusters] == _non_empty_groups(graph)
    assert all(c.get_name().startswith("cluster_") for c in clusters)
    seen: dict[str, Any] = {}
    for cluster in clusters:
        group = _drawn_label(cluster.get("label"))
        for node in cluster.get_nodes():
            seen[dot_unquote(node.get_name())] = (group, node)
    ordered = [n for g in _non_empty_groups(graph) for n in graph.members(g)]
    assert list(seen) == [_dot_name(n.id) for n in ordered]
    for n in graph.nodes:
        group, node = seen[_dot_name(n.id)]
        assert group == n.group
        assert _drawn_label(node.get("label")) == n.label
        fill = node.get("fillcolor")
        if n.state in COLOURS:
            assert dot_unquote(fill) == COLOURS[n.state]
        else:
            assert fill is None  # the default white from the node defaults
    edges = [
        (dot_unquote(e.get_source()), dot_unquote(e.get_destination())) for e in dot.get_edges()
    ]
    assert edges == [(_dot_name(e.source), _dot_name(e.target)) for e in graph.edges]


def _dot_name(node_id: str) -> str:
    """The node name DOT readers see: quoted strings keep backslashes, so they come out doubled."""
    return node_id.replace("\\", "\\\\")


def _drawn_label(quoted: str) -> str:
    """A DOT label as drawn: the escString backslash escapes undone, then HTML entities."""
    text = re.sub(r"\\(.)", r"\1", dot_unquote(quoted))
    return re.sub(
        r"&(amp|lt|gt|quot);", lambda m: {"amp": "&", "lt": "<", "gt": ">", "quot": '"'}[m[1]], text
    )


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_dot_read_by_graphviz(name: str) -> None:
    graph = GRAPHS[name]
    data = dot_json(render_dot(graph))
    objects = data.get("objects", [])
    clusters = [o for o in objects if o["name"].startswith("cluster_") and "nodes" in o]
    nodes = [o for o in objects if o not in clusters]
    assert len(nodes) == len(graph.nodes), "ids must map to distinct Graphviz nodes"
    by_gvid = {o["_gvid"]: o for o in nodes}
    assert {o["name"] for o in nodes} == {_dot_name(n.id) for n in graph.nodes}
    assert {o["name"]: _drawn_label(f'"{o["label"]}"') for o in nodes} == {
        _dot_name(n.id): n.label for n in graph.nodes
    }
    drawn = [
        (by_gvid[e["tail"]]["name"], by_gvid[e["head"]]["name"]) for e in data.get("edges", [])
    ]
    # Graphviz lists edges in its own order.
    assert sorted(drawn) == sorted((_dot_name(e.source), _dot_name(e.target)) for e in graph.edges)
    assert sorted(_drawn_label(f'"{c["label"]}"') for c in clusters) == sorted(
        _non_empty_groups(graph)
    )


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_dot_svg_draws_labels_as_written(name: str) -> None:
    graph = GRAPHS[name]
    drawn = dot_svg_texts(render_dot(graph))
    expected = [n.label for n in graph.nodes] + _non_empty_groups(graph) + [graph.title]
    assert sorted(drawn) == sorted(expected)


# --- Mermaid -----------------------------------------------------------------------------------

_MERMAID_LINE = re.compile(
    r"""^(?:
        flowchart\ BT
      | \ \ classDef\ (?P<cls>\w+)\ fill:\#[0-9a-f]{6}
      | \ \ subgraph\ (?P<sub>\w+)\["[^"]*"\]
      | \ \ \ \ (?P<node>\w+)\["[^"]*"\](?::::(?P<use>\w+))?
      | \ \ end
      | \ \ (?P<src>\w+)\ -->\ (?P<dst>\w+)
    )$""",
    re.VERBOSE,
)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_mermaid_structure_without_tools(name: str) -> None:
    """Every line has one of the expected shapes; ids are plain words; labels hold no raw quote."""
    graph = GRAPHS[name]
    lines = render_mermaid(graph).splitlines()
    assert lines[0] == "flowchart BT"
    classes: set[str] = set()
    nodes: list[str] = []
    depth = 0
    for line in lines:
        m = _MERMAID_LINE.match(line)
        assert m, f"unexpected Mermaid line: {line!r}"
        if m["cls"]:
            classes.add(m["cls"])
        if m["sub"]:
            depth += 1
        if line == "  end":
            depth -= 1
        if m["node"]:
            assert depth == 1
            nodes.append(m["node"])
            assert m["use"] is None or m["use"] in classes
        if m["src"]:
            assert m["src"] in nodes and m["dst"] in nodes
    assert depth == 0
    assert len(nodes) == len(set(nodes)) == len(graph.nodes)
    assert not {"end", "subgraph", "graph", "flowchart"} & set(nodes)


# Two hand-written flowcharts that show the checker really parses (one node run for all).
CHECKER_SAMPLES = {
    "bad": 'flowchart BT\n  a["x"]]]\n',
    "good": 'flowchart BT\n  a["x"] --> b\n',
}


@pytest.fixture(scope="module")
def mermaid_results() -> dict[str, dict[str, Any]]:
    """Mermaid's reading of every sample graph's rendering and of the checker samples."""
    sources = {name: render_mermaid(graph) for name, graph in GRAPHS.items()} | CHECKER_SAMPLES
    return dict(zip(sources, mermaid_parse(*sources.values()), strict=True))


def test_mermaid_parsed_by_mermaid(mermaid_results: dict[str, dict[str, Any]]) -> None:
    for name in sorted(GRAPHS):
        parsed = mermaid_results[name]
        graph = GRAPHS[name]
        assert parsed["ok"], f"{name}: {parsed.get('error')}\n{render_mermaid(graph)}"
        assert parsed["direction"] == "BT"
        vertices = parsed["vertices"]
        # One vertex per node, in node order (a group's members, group by group).
        ordered = [n for g in _non_empty_groups(graph) for n in graph.members(g)]
        assert [v["text"] for v in vertices] == [n.label for n in ordered], name
        vid = {n.id: v["id"] for n, v in zip(ordered, vertices, strict=True)}
        assert len(set(vid.values())) == len(vid)
        for n, v in zip(ordered, vertices, strict=True):
            expected = [n.state.replace("-", "_")] if n.state in COLOURS else []
            assert v["classes"] == expected, (name, n)
        assert [(e["start"], e["end"]) for e in parsed["edges"]] == [
            (vid[e.source], vid[e.target]) for e in graph.edges
        ]
        assert {e["type"] for e in parsed["edges"]} <= {"arrow_point"}
        subgraphs = sorted(parsed["subgraphs"], key=lambda s: s["id"])
        assert [s["title"] for s in subgraphs] == _non_empty_groups(graph)
        for s in subgraphs:
            members = [vid[n.id] for n in graph.members(s["title"])]
            assert sorted(s["nodes"]) == sorted(members)
        used = {n.state for n in graph.nodes if n.state in COLOURS}
        assert parsed["classes"] == {s.replace("-", "_"): [f"fill:{COLOURS[s]}"] for s in used}


def test_mermaid_check_rejects_broken_flowcharts(
    mermaid_results: dict[str, dict[str, Any]],
) -> None:
    """The checker really parses: broken input is reported, not waved through."""
    bad, good = mermaid_results["bad"], mermaid_results["good"]
    assert not bad["ok"]
    assert "Parse error" in bad["error"]
    assert good["ok"]
