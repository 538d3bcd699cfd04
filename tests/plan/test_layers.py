"""The layer graph: C3 order, platforms, selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.errors import GraphError, SelectionError, SpecError
from venvstacks.plan.layers import (
    c3_linearise,
    plan_stack,
    require_matches,
    select_layers,
    unmatched_layers,
)
from venvstacks.spec.stack import load_stack_spec, parse_stack_spec

SPECS = Path(__file__).parents[1] / "data" / "specs"


def _linearise_all(deps: dict[str, list[str]]) -> dict[str, list[str]]:
    lin: dict[str, list[str]] = {}
    for name, bases in deps.items():
        lin[name] = c3_linearise(name, bases, lin)
    return lin


def _mro(deps: dict[str, list[str]]) -> dict[str, list[str]]:
    """Python's own MRO for classes with the same bases (object and the class itself removed)."""
    classes: dict[str, type] = {}
    for name, bases in deps.items():
        classes[name] = type(name, tuple(classes[b] for b in bases) or (object,), {})
    return {n: [c.__name__ for c in k.__mro__[1:-1]] for n, k in classes.items()}


C3_CASES = {
    "diamond": {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]},
    "deep_chain": {"A": [], "B": ["A"], "C": ["B"], "D": ["C"], "E": ["D"]},
    "two_diamonds": {
        "A": [],
        "B": ["A"],
        "C": ["A"],
        "D": ["B", "C"],
        "E": ["A"],
        "F": ["D", "E"],
        "G": ["F", "C"],
    },
    "wide": {"A": [], "B": [], "C": [], "D": ["A", "B", "C"], "E": ["D", "B"]},
}


@pytest.mark.parametrize("case", sorted(C3_CASES))
def test_c3_matches_python_mro(case: str) -> None:
    deps = C3_CASES[case]
    assert _linearise_all(deps) == _mro(deps)


def test_c3_failure_names_the_sequences() -> None:
    lin = _linearise_all({"A": [], "B": [], "C": ["A", "B"], "D": ["B", "A"]})
    with pytest.raises(ValueError, match="remaining sequences"):
        c3_linearise("E", ["C", "D"], lin)


def test_stack_sys_path_order() -> None:
    plan = plan_stack(load_stack_spec(SPECS / "valid_diamond.toml"))
    assert plan["framework-d"].dependencies == (
        "framework-b",
        "framework-c",
        "framework-a",
        "cpython-3.11",
    )
    assert plan["app-x"].dependencies == (
        "framework-d",
        "framework-b",
        "framework-c",
        "framework-a",
        "cpython-3.11",
    )
    assert plan["app-x"].direct_dependencies == ("framework-d", "framework-b")
    assert plan["cpython-3.11"].dependencies == ()


def _plan(layers: dict[str, list[dict[str, object]]]):  # type: ignore[no-untyped-def]
    return plan_stack(parse_stack_spec(layers, Path("/nowhere/venvstacks.toml")))


def test_platforms_are_inferred_and_narrowed() -> None:
    plan = _plan(
        {
            "runtimes": [
                {
                    "name": "rt",
                    "python_implementation": "cpython@3.11",
                    "requirements": [],
                    "platforms": ["linux_x86_64", "win_amd64", "macosx_arm64"],
                }
            ],
            "frameworks": [
                {
                    "name": "f",
                    "runtime": "rt",
                    "requirements": [],
                    "platforms": ["win_amd64", "linux_x86_64"],
                },
                {"name": "g", "frameworks": ["f"], "requirements": []},
                {"name": "off", "runtime": "rt", "requirements": [], "platforms": []},
                {"name": "above_off", "frameworks": ["off"], "requirements": []},
            ],
        }
    )
    assert [str(p) for p in plan["framework-g"].platforms] == ["linux_x86_64", "win_amd64"]
    assert not plan["framework-off"].enabled
    assert not plan["framework-above_off"].enabled
    assert "framework-off" not in [l.env_name for l in plan.enabled]


STACK = {
    "runtimes": [
        {"name": "rt", "python_implementation": "cpython@3.11", "requirements": []},
        {"name": "rt2", "python_implementation": "cpython@3.12", "requirements": []},
    ],
    "frameworks": [
        {"name": "a", "runtime": "rt", "requirements": []},
        {"name": "b", "frameworks": ["a"], "requirements": []},
        {"name": "c", "runtime": "rt2", "requirements": []},
    ],
}


@pytest.mark.parametrize(
    ("patterns", "deps", "derived", "expected"),
    [
        (["framework-a"], True, True, ["rt", "framework-a", "framework-b"]),
        (["framework-a"], False, False, ["framework-a"]),
        (["framework-b"], True, True, ["rt", "framework-a", "framework-b"]),
        (["rt2"], True, True, ["rt2", "framework-c"]),
        (["framework-*"], False, False, ["framework-a", "framework-b", "framework-c"]),
        # Spec names work too, when the pattern matches no build name.
        (["a"], False, False, ["framework-a"]),
        (["b"], True, False, ["rt", "framework-a", "framework-b"]),
        (["c*"], False, False, ["framework-c"]),
        # A pattern matching build names selects by build name only (as in 0.8.0).
        (["rt*"], False, False, ["rt", "rt2"]),
    ],
)
def test_selection(patterns: list[str], deps: bool, derived: bool, expected: list[str]) -> None:
    plan = _plan(STACK)  # type: ignore[arg-type]
    chosen, unmatched = select_layers(plan, patterns, with_dependencies=deps, with_derived=derived)
    assert [l.env_name for l in chosen] == expected
    assert unmatched == ()


def test_unmatched_patterns() -> None:
    plan = _plan(STACK)  # type: ignore[arg-type]
    _, unmatched = select_layers(plan, ["app-*", "rt"])
    assert unmatched == ("app-*",)
    with pytest.raises(SelectionError) as caught:
        require_matches(plan, unmatched, allow_missing=False)
    message = str(caught.value)
    assert message.startswith(f"{plan.spec.path}: --include 'app-*' matches no layer; ")
    assert message.endswith(
        "layers: rt, rt2, a, b, c (pass --allow-missing to make this a warning)"
    )
    assert isinstance(caught.value, GraphError)
    assert caught.value.details["unmatched"] == ["app-*"]
    warning = require_matches(plan, unmatched, allow_missing=True)
    assert warning == message.removesuffix(" (pass --allow-missing to make this a warning)")
    assert require_matches(plan, (), allow_missing=False) is None


def test_unmatched_reset_lock_names_the_option_and_the_closest_name() -> None:
    plan = _plan(STACK)  # type: ignore[arg-type]
    with pytest.raises(SelectionError, match=r"--reset-lock 'framework-cc' matches no layer \(did "
                       r"you mean 'framework-c'\?\)"):  # fmt: skip
        require_matches(plan, ["framework-cc"], allow_missing=False, option="--reset-lock")


def test_pattern_naming_only_a_disabled_layer_says_so() -> None:
    plan = _plan({**STACK, "frameworks": [*STACK["frameworks"], {"name": "off", "runtime": "rt",
                  "requirements": [], "platforms": []}]})  # type: ignore[arg-type,list-item]  # fmt: skip
    _, unmatched = select_layers(plan, ["off"])
    assert unmatched == ("off",)
    problem = unmatched_layers(plan, unmatched, "--include")
    assert problem.notes == ("'off' names off, which targets no platform",)
    assert "off" not in problem.known


def test_merged_package_indexes_are_inherited() -> None:
    plan = _plan(
        {
            "runtimes": [
                {
                    "name": "rt",
                    "python_implementation": "cpython@3.11",
                    "requirements": [],
                    "package_indexes": {"Torch": "cpu"},
                }
            ],
            "frameworks": [
                {"name": "a", "runtime": "rt", "requirements": []},
                {
                    "name": "b",
                    "frameworks": ["a"],
                    "requirements": [],
                    "package_indexes": {"torch": "cuda"},
                    "index_overrides": {"cpu": "cuda"},
                },
            ],
            "tool": {
                "uv": {
                    "index": [
                        {"name": "cpu", "url": "https://cpu.invalid", "explicit": True},
                        {"name": "cuda", "url": "https://cuda.invalid", "explicit": True},
                    ]
                }
            },
        }
    )
    assert plan["framework-a"].package_indexes == {"torch": "cpu"}
    assert plan["framework-b"].package_indexes == {"torch": "cuda"}


def test_framework_referenced_by_build_name_gets_a_hint() -> None:
    stack = {
        "runtimes": [{"name": "rt", "python_implementation": "cpython@3.11", "requirements": []}],
        "frameworks": [
            {"name": "web", "runtime": "rt", "requirements": []},
            {"name": "api", "frameworks": ["framework-web"], "requirements": []},
        ],
    }
    with pytest.raises(SpecError, match="spec name: 'web', not the build name 'framework-web'"):
        plan_stack(parse_stack_spec(stack, Path("/nowhere/venvstacks.toml")))
