"""Reports about a stack: the `show` status and tree, its JSON, and the layer graph.

Lock state comes from a fake `LockView`, so valid locks and deployed names (`name@N`) can be shown
without locking anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from venvstacks.plan.layers import LayerPlan, StackPlan, plan_stack
from venvstacks.report.render import Edge, render_text
from venvstacks.report.show import LockView, layer_graph, show_json, show_tree, stack_status
from venvstacks.spec.stack import load_stack_spec, parse_stack_spec

SPECS = Path(__file__).parents[1] / "data" / "specs"


class FakeLocks:
    """Valid locks for the named layers; versioned layers deploy as `name@<version>`."""

    def __init__(self, valid: Iterable[str] = (), versions: Mapping[str, int] | None = None):
        self.valid = set(valid)
        self.versions = dict(versions or {})

    def has_valid_lock(self, layer: LayerPlan) -> bool:
        return layer.env_name in self.valid

    def install_target(self, layer: LayerPlan) -> str | None:
        if not layer.spec.versioned:
            return layer.env_name
        if not self.has_valid_lock(layer):
            return None
        return f"{layer.env_name}@{self.versions[layer.env_name]}"


def _is_lock_view(locks: LockView) -> LockView:
    return locks


@pytest.fixture
def plan(tmp_path: Path) -> StackPlan:
    """A runtime, a versioned framework, one built on it, a disabled one and a versioned app."""
    (tmp_path / "app.py").write_text("")
    data = {
        "runtimes": [
            {"name": "cpython-3.11", "python_implementation": "cpython@3.11.7", "requirements": []},
        ],
        "frameworks": [
            {"name": "a", "runtime": "cpython-3.11", "requirements": [], "versioned": True},
            {"name": "b", "frameworks": ["a"], "requirements": []},
            {"name": "off", "runtime": "cpython-3.11", "requirements": [], "platforms": []},
        ],
        "applications": [
            {
                "name": "x",
                "frameworks": ["b"],
                "requirements": [],
                "versioned": True,
                "launch_module": "app.py",
            },
        ],
    }
    return plan_stack(parse_stack_spec(data, tmp_path / "venvstacks.toml"))


LOCKS = _is_lock_view(FakeLocks(valid=["cpython-3.11", "framework-a"], versions={"framework-a": 3}))


def _status(name: str, target: str, valid: bool, ops: list[str] | None = None) -> dict[str, object]:
    return {
        "name": name,
        "install_target": target,
        "has_valid_lock": valid,
        "selected_operations": ops,
    }


RT = _status("cpython-3.11", "cpython-3.11", True)
A = _status("framework-a", "framework-a@3", True)
B = _status("framework-b", "framework-b", False)
X = _status("app-x", "app-x@???", False)


def test_status_of_every_enabled_layer(plan: StackPlan) -> None:
    status = stack_status(plan, plan.enabled, LOCKS)
    assert status == {
        "spec_name": str(plan.spec.path),
        "runtimes": [RT],
        "frameworks": [{**A, "dependencies": [RT]}, {**B, "dependencies": [A, RT]}],
        "applications": [{**X, "dependencies": [B, A, RT]}],
    }


def test_tree_marks_unlocked_layers_and_deployed_names(plan: StackPlan) -> None:
    tree = show_tree(stack_status(plan, plan.enabled, LOCKS))
    assert tree == (
        f"{plan.spec.path}\n"
        "├── Runtimes\n"
        "│   └── cpython-3.11\n"
        "├── Frameworks\n"
        "│   ├── framework-a -> framework-a@3\n"
        "│   │   └── cpython-3.11\n"
        "│   └── *framework-b\n"
        "│       ├── framework-a -> framework-a@3\n"
        "│       └── cpython-3.11\n"
        "└── Applications\n"
        "    └── *app-x -> app-x@???\n"
        "        ├── *framework-b\n"
        "        ├── framework-a -> framework-a@3\n"
        "        └── cpython-3.11\n"
    )


def test_tree_with_selected_operations(plan: StackPlan) -> None:
    ops = {"app-x": ["lock", "build", "publish"], "framework-b": ["build-if-needed"]}
    status = stack_status(plan, [plan["framework-b"], plan["app-x"]], LOCKS, ops)
    assert status["frameworks"][0]["selected_operations"] == ["build-if-needed"]
    assert status["applications"][0]["dependencies"][1]["selected_operations"] == []
    assert show_tree(status) == (
        f"{plan.spec.path}\n"
        "├── Frameworks\n"
        "│   └── *framework-b (build-if-needed)\n"
        "│       ├── framework-a -> framework-a@3\n"
        "│       └── cpython-3.11\n"
        "└── Applications\n"
        "    └── *app-x -> app-x@??? (lock, build, publish)\n"
        "        ├── *framework-b (build-if-needed)\n"
        "        ├── framework-a -> framework-a@3\n"
        "        └── cpython-3.11\n"
    )


def test_tree_of_a_single_category_uses_the_last_branch(plan: StackPlan) -> None:
    status = stack_status(plan, [plan["cpython-3.11"]], FakeLocks())
    assert status["frameworks"] == status["applications"] == []
    assert show_tree(status) == f"{plan.spec.path}\n└── Runtimes\n    └── *cpython-3.11\n"


def test_tree_of_nothing_is_just_the_spec(plan: StackPlan) -> None:
    assert show_tree(stack_status(plan, (), LOCKS)) == f"{plan.spec.path}\n"


def test_disabled_layers_are_not_reported(plan: StackPlan) -> None:
    assert "framework-off" in plan
    status = stack_status(plan, plan.enabled, LOCKS)
    assert "framework-off" not in json.dumps(status)
    assert "framework-off" not in show_tree(status)


def test_json_is_sorted_and_indented(plan: StackPlan) -> None:
    status = stack_status(plan, plan.enabled, LOCKS)
    text = show_json(status)
    assert text == json.dumps(status, indent=2, sort_keys=True) + "\n"
    assert json.loads(text) == status
    assert list(json.loads(text)) == ["applications", "frameworks", "runtimes", "spec_name"]


def test_diamond_dependencies_in_sys_path_order() -> None:
    diamond = plan_stack(load_stack_spec(SPECS / "valid_diamond.toml"))
    locks = FakeLocks(valid=[layer.env_name for layer in diamond.layers])
    status = stack_status(diamond, diamond.enabled, locks)
    (app,) = status["applications"]
    assert [d["name"] for d in app["dependencies"]] == [
        "framework-d",
        "framework-b",
        "framework-c",
        "framework-a",
        "cpython-3.11",
    ]
    tree = show_tree(status)
    assert "*" not in tree  # every lock valid: nothing marked
    assert tree.endswith(
        "└── Applications\n"
        "    └── app-x\n"
        "        ├── framework-d\n"
        "        ├── framework-b\n"
        "        ├── framework-c\n"
        "        ├── framework-a\n"
        "        └── cpython-3.11\n"
    )


# --- layer graph -------------------------------------------------------------------------------


def test_layer_graph_nodes_edges_and_states(plan: StackPlan) -> None:
    graph = layer_graph(plan, plan.enabled, LOCKS)
    assert graph.title == "venvstacks.toml"
    assert graph.groups == ("Applications", "Frameworks", "Runtimes")
    assert [(n.id, n.label, n.group, n.state) for n in graph.nodes] == [
        ("cpython-3.11", "cpython-3.11", "Runtimes", "up-to-date"),
        ("framework-a", "framework-a", "Frameworks", "up-to-date"),
        ("framework-b", "framework-b", "Frameworks", "stale"),
        ("app-x", "app-x", "Applications", "stale"),
    ]
    # Direct dependencies only, lower -> upper.
    assert graph.edges == (
        Edge("cpython-3.11", "framework-a"),
        Edge("framework-a", "framework-b"),
        Edge("framework-b", "app-x"),
    )
    x = graph.nodes[-1]
    assert x.detail["kind"] == "application"
    assert x.detail["sys_path_order"] == ["framework-b", "framework-a", "cpython-3.11"]
    assert x.detail["platforms"] == [str(p) for p in plan["app-x"].platforms]


def test_layer_graph_without_lock_state(plan: StackPlan) -> None:
    graph = layer_graph(plan, plan.enabled, None)
    assert {n.state for n in graph.nodes} == {None}
    assert "[" not in render_text(graph)


def test_layer_graph_drops_edges_to_unselected_layers() -> None:
    diamond = plan_stack(load_stack_spec(SPECS / "valid_diamond.toml"))
    chosen = [diamond[n] for n in ("framework-b", "framework-d", "app-x")]
    graph = layer_graph(diamond, chosen, None)
    assert [n.id for n in graph.nodes] == ["framework-b", "framework-d", "app-x"]
    assert graph.edges == (
        Edge("framework-b", "framework-d"),
        Edge("framework-d", "app-x"),
        Edge("framework-b", "app-x"),
    )


def test_diamond_layer_graph_edges() -> None:
    diamond = plan_stack(load_stack_spec(SPECS / "valid_diamond.toml"))
    graph = layer_graph(diamond, diamond.enabled, FakeLocks())
    assert [(e.source, e.target) for e in graph.edges] == [
        ("cpython-3.11", "framework-a"),
        ("framework-a", "framework-b"),
        ("framework-a", "framework-c"),
        ("framework-b", "framework-d"),
        ("framework-c", "framework-d"),
        ("framework-d", "app-x"),
        ("framework-b", "app-x"),
    ]
