"""Task states propagated downstream, their reasons in words, the task graph and the status table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from venvstacks.report.render import Edge, render_json
from venvstacks.tasks.engine import TaskDict, TaskState
from venvstacks.tasks.view import (
    TaskView,
    describe_reasons,
    render_status,
    task_graph,
    task_needs,
    task_view,
)

# ---------------------------------------------------------------------------------------------
# Fake task graphs: only the fields taskview reads (no actions are ever run)
# ---------------------------------------------------------------------------------------------


def _task(name: str, task_dep: tuple[str, ...] = (), file_dep: tuple[str, ...] = (),
          targets: tuple[str, ...] = ()) -> TaskDict:
    basename, _, sub = name.partition(":")
    return {
        "basename": basename,
        "name": sub,
        "task_dep": list(task_dep),
        "file_dep": list(file_dep),
        "targets": list(targets),
    }


# Each graph: task name -> tasks it depends on (by task_dep).
GRAPHS: dict[str, dict[str, tuple[str, ...]]] = {
    "chain": {"lock:a": (), "lock:b": ("lock:a",), "lock:c": ("lock:b",)},
    "diamond": {
        "lock:a": (),
        "lock:b": ("lock:a",),
        "lock:c": ("lock:a",),
        "lock:d": ("lock:b", "lock:c"),
    },
    "independent": {"lock:x": (), "lock:y": (), "lock:z": ()},
}

# (graph, tasks doit says will run) -> expected propagated state of every task.
PROPAGATION = [
    ("chain", set(), {"lock:a": "up-to-date", "lock:b": "up-to-date", "lock:c": "up-to-date"}),
    ("chain", {"lock:a"}, {"lock:a": "stale", "lock:b": "waiting", "lock:c": "waiting"}),
    ("chain", {"lock:b"}, {"lock:a": "up-to-date", "lock:b": "stale", "lock:c": "waiting"}),
    ("chain", {"lock:c"}, {"lock:a": "up-to-date", "lock:b": "up-to-date", "lock:c": "stale"}),
    ("chain", {"lock:a", "lock:c"}, {"lock:a": "stale", "lock:b": "waiting", "lock:c": "stale"}),
    (
        "diamond",
        {"lock:a"},
        {"lock:a": "stale", "lock:b": "waiting", "lock:c": "waiting", "lock:d": "waiting"},
    ),
    (
        "diamond",
        {"lock:c"},
        {"lock:a": "up-to-date", "lock:b": "up-to-date", "lock:c": "stale", "lock:d": "waiting"},
    ),
    (
        "diamond",
        {"lock:b", "lock:c"},
        {"lock:a": "up-to-date", "lock:b": "stale", "lock:c": "stale", "lock:d": "waiting"},
    ),
    (
        "diamond",
        {"lock:d"},
        {"lock:a": "up-to-date", "lock:b": "up-to-date", "lock:c": "up-to-date", "lock:d": "stale"},
    ),
    ("independent", {"lock:y"}, {"lock:x": "up-to-date", "lock:y": "stale", "lock:z": "up-to-date"}),
    ("independent", {"lock:x", "lock:z"}, {"lock:x": "stale", "lock:y": "up-to-date",
                                           "lock:z": "stale"}),
]


def _scenario(graph: str, running: set[str]) -> tuple[list[TaskDict], list[TaskState]]:
    deps = GRAPHS[graph]
    tasks = [_task(name, task_dep=needs) for name, needs in deps.items()]
    states = [
        TaskState(name, "run" if name in running else "up-to-date",
                  {"uptodate_false": [("f", [], {})]} if name in running else {})
        for name in deps
    ]
    return tasks, states


@pytest.mark.parametrize(("graph", "running", "expected"), PROPAGATION)
def test_states_propagate_downstream(
    graph: str, running: set[str], expected: dict[str, str]
) -> None:
    tasks, states = _scenario(graph, running)
    views = task_view(tasks, states)
    assert {v.name: v.state for v in views} == expected


def test_views_keep_the_order_of_the_states() -> None:
    tasks, states = _scenario("diamond", {"lock:a"})
    reordered = [states[3], states[1], states[0], states[2]]
    assert [v.name for v in task_view(tasks, reordered)] == [s.name for s in reordered]


def test_waiting_names_what_it_waits_for() -> None:
    tasks, states = _scenario("diamond", {"lock:b", "lock:c"})
    views = {v.name: v for v in task_view(tasks, states)}
    assert views["lock:d"].why == ("after lock:b, lock:c",)
    assert views["lock:a"].why == ()
    assert views["lock:b"].why == ("its inputs or settings changed",)


def test_waiting_on_a_waiting_task_names_the_nearer_one() -> None:
    tasks, states = _scenario("chain", {"lock:a"})
    views = {v.name: v for v in task_view(tasks, states)}
    assert views["lock:b"].why == ("after lock:a",)
    assert views["lock:c"].why == ("after lock:b",)


def test_error_status_counts_as_stale() -> None:
    tasks = [_task("install:a", file_dep=("/x/pylock.toml",))]
    states = [TaskState("install:a", "error", {"missing_file_dep": ["/x/pylock.toml"]})]
    [view] = task_view(tasks, states)
    assert view.state == "stale"


def test_extra_reasons_replace_doits_reasons() -> None:
    tasks, states = _scenario("chain", {"lock:a"})
    views = task_view(tasks, states, extra_reasons={"lock:a": ["requirements changed"]})
    assert views[0].why == ("requirements changed",)


def test_empty_extra_reasons_fall_back_to_doits() -> None:
    tasks, states = _scenario("chain", {"lock:a"})
    views = task_view(tasks, states, extra_reasons={"lock:a": []})
    assert views[0].why == ("its inputs or settings changed",)


def test_needs_come_from_task_dep_and_produced_file_deps() -> None:
    tasks = [
        _task("runtime:r", targets=("/b/r.json",)),
        _task("lock:r", task_dep=("runtime:r",), targets=("/req/r.toml", "/req/r.json")),
        _task("install:r", file_dep=("/req/r.toml", "/b/r.json", "/elsewhere/x")),
        # a file_dep on its own target, and a task_dep repeating a file producer
        _task("link:r", task_dep=("install:r", "lock:r"), file_dep=("/req/r.json", "/s/link")),
        _task("self:s", file_dep=("/self",), targets=("/self",)),
    ]
    assert task_needs(tasks) == {
        "runtime:r": (),
        "lock:r": ("runtime:r",),
        "install:r": ("lock:r", "runtime:r"),
        "link:r": ("install:r", "lock:r"),
        "self:s": (),
    }


def test_a_changed_produced_file_makes_its_consumer_wait() -> None:
    tasks = [
        _task("lock:r", targets=("/req/r.toml",)),
        _task("install:r", file_dep=("/req/r.toml",)),
    ]
    states = [
        TaskState("lock:r", "run", {"missing_target": ["/req/r.toml"]}),
        TaskState("install:r", "up-to-date", {}),
    ]
    views = {v.name: v for v in task_view(tasks, states)}
    assert views["install:r"].state == "waiting"
    assert views["install:r"].needs == ("lock:r",)


def test_needs_outside_the_states_are_ignored_for_propagation() -> None:
    tasks = [_task("lock:a"), _task("lock:b", task_dep=("lock:a",))]
    [view] = task_view(tasks, [TaskState("lock:b", "up-to-date", {})])
    assert view.state == "up-to-date"
    assert view.needs == ("lock:a",)


# ---------------------------------------------------------------------------------------------
# describe_reasons: doit's keys in words
# ---------------------------------------------------------------------------------------------

BASE = Path("/stack")


class _Check:
    """Stands in for an up-to-date check that says what it found (as FolderIntact does)."""

    def __init__(self, why: str) -> None:
        self.why = why


REASONS: list[tuple[dict[str, Any], list[str]]] = [
    ({"missing_target": ["/stack/_build/x.json"]}, ["not built yet: _build/x.json"]),
    ({"missing_target": ["/elsewhere/x.json"]}, ["not built yet: /elsewhere/x.json"]),
    (
        {"changed_file_dep": ["/stack/app.py", "/stack/requirements/a/pylock.a.toml"]},
        ["changed: app.py, requirements/a/pylock.a.toml"],
    ),
    ({"uptodate_false": [("f", [], {})]}, ["its inputs or settings changed"]),
    (
        {"uptodate_false": [(_Check("environment changed: bin/python missing"), [], {})]},
        ["environment changed: bin/python missing"],
    ),
    (
        {"uptodate_false": [(_Check("environment changed: x added"), [], {}), ("f", [], {})]},
        ["environment changed: x added", "its inputs or settings changed"],
    ),
    ({"has_no_dependencies": True}, ["never ran"]),
    ({"never_run": True}, ["never ran"]),
    ({"checker_changed": ("TimestampChecker", "MD5Checker")}, ["dependency checker changed"]),
    ({"something_new": 3}, ["something_new: 3"]),
    (
        {"changed_file_dep": ["/stack/z.py", "/stack/a.py"]},
        ["changed: a.py, z.py"],  # sorted: doit's file_dep is a set
    ),
    (
        {"missing_file_dep": ["/stack/requirements/a/pylock.a.toml"]},
        ["missing inputs: requirements/a/pylock.a.toml"],
    ),
    ({"added_file_dep": ["/stack/new.py"]}, ["new inputs: new.py"]),
    ({"removed_file_dep": ["/stack/old.py"]}, ["inputs no longer used: old.py"]),
    (
        {"uptodate_false": [("f", [], {})], "changed_file_dep": ["/stack/d"]},
        ["its inputs or settings changed", "changed: d"],
    ),
    # A task that never ran: every input "changed" and every check false; only its missing
    # target and inputs are worth saying.
    (
        {
            "uptodate_false": [("f", [], {})],
            "missing_target": ["/stack/t"],
            "missing_file_dep": ["/stack/m"],
            "changed_file_dep": ["/stack/d"],
        },
        ["not built yet: t", "missing inputs: m"],
    ),
    ({}, []),
]


@pytest.mark.parametrize(("reasons", "expected"), REASONS)
def test_describe_reasons(reasons: dict[str, Any], expected: list[str]) -> None:
    assert describe_reasons(reasons, BASE) == expected


def test_describe_reasons_without_base_keeps_full_paths() -> None:
    assert describe_reasons({"changed_file_dep": ["/stack/app.py"]}) == ["changed: /stack/app.py"]


# ---------------------------------------------------------------------------------------------
# render_status and task_graph
# ---------------------------------------------------------------------------------------------

VIEWS = [
    TaskView("runtime:cpython-3.11", "up-to-date", (), ()),
    TaskView("lock:app-a", "stale", ("requirements changed",), ("runtime:cpython-3.11",)),
    TaskView("install:app-a", "waiting", ("after lock:app-a",), ("lock:app-a",)),
    TaskView("link:app-a", "waiting", ("after install:app-a", "x"), ("install:app-a",)),
]


def test_render_status() -> None:
    assert render_status(VIEWS) == (
        "runtime:cpython-3.11  up-to-date\n"
        "lock:app-a            stale       requirements changed\n"
        "install:app-a         waiting     after lock:app-a\n"
        "link:app-a            waiting     after install:app-a; x\n"
        "4 tasks: 1 stale, 2 waiting on them, 1 up to date\n"
    )


def test_render_status_of_nothing() -> None:
    assert render_status([]) == "0 tasks: 0 stale, 0 waiting on them, 0 up to date\n"


def test_task_graph_nodes_edges_and_groups() -> None:
    graph = task_graph("stack tasks", VIEWS, ["cpython-3.11", "app-a"])
    assert graph.title == "stack tasks"
    assert graph.groups == ("cpython-3.11", "app-a")
    assert [(n.id, n.group, n.state) for n in graph.nodes] == [
        ("runtime:cpython-3.11", "cpython-3.11", "up-to-date"),
        ("lock:app-a", "app-a", "stale"),
        ("install:app-a", "app-a", "waiting"),
        ("link:app-a", "app-a", "waiting"),
    ]
    assert graph.nodes[1].detail == {"why": ["requirements changed"]}
    assert graph.edges == (
        Edge("runtime:cpython-3.11", "lock:app-a"),
        Edge("lock:app-a", "install:app-a"),
        Edge("install:app-a", "link:app-a"),
    )


def test_task_graph_drops_edges_to_tasks_not_shown() -> None:
    graph = task_graph("t", VIEWS[1:], ["app-a"])
    assert Edge("runtime:cpython-3.11", "lock:app-a") not in graph.edges
    assert len(graph.edges) == 2
    assert '"state": "stale"' in render_json(graph)
