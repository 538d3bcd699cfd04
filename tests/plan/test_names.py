"""Layer names, kinds, build names and lock file stems."""

from __future__ import annotations

import pytest

from venvstacks.plan.names import (
    EnvName,
    LayerKind,
    LayerName,
    env_name_for,
    lock_file_stem,
    match_layer_names,
    spec_name_of,
)

KINDS = [
    (LayerKind.RUNTIME, "runtimes", "", "cpython-3.11", "cpython-3.11"),
    (LayerKind.FRAMEWORK, "frameworks", "framework-", "numpy", "framework-numpy"),
    (LayerKind.APPLICATION, "applications", "app-", "demo", "app-demo"),
]


@pytest.mark.parametrize(("kind", "category", "prefix", "name", "env"), KINDS)
def test_kind_names(kind: LayerKind, category: str, prefix: str, name: str, env: str) -> None:
    assert kind.category == category
    assert kind.prefix == prefix
    assert env_name_for(kind, LayerName(name)) == env


def test_kinds_are_in_build_order() -> None:
    assert list(LayerKind) == [LayerKind.RUNTIME, LayerKind.FRAMEWORK, LayerKind.APPLICATION]
    assert [str(k) for k in LayerKind] == ["runtime", "framework", "application"]


@pytest.mark.parametrize(
    ("env", "stem"),
    [
        ("app-demo", "app-demo"),
        ("cpython-3.11", "cpython-3_11"),
        ("framework-a.b.c", "framework-a_b_c"),
        ("cpython@3.12", "cpython@3_12"),
    ],
)
def test_lock_file_stem(env: str, stem: str) -> None:
    assert lock_file_stem(EnvName(env)) == stem


@pytest.mark.parametrize(
    ("env", "name"),
    [("framework-web", "web"), ("app-x@2", "x@2"), ("cpython-3.11", "cpython-3.11")],
)
def test_spec_name_of(env: str, name: str) -> None:
    assert spec_name_of(env) == name


LAYERS = {
    "cpython-3.11": (("cpython-3.11",), "cpython-3.11"),
    "framework-web": (("framework-web",), "web"),
    "app-web": (("app-web", "app-web@2"), "web"),
    "app-x": (("app-x",), "x"),
}


@pytest.mark.parametrize(
    ("patterns", "chosen", "unmatched"),
    [
        (["framework-web"], ["framework-web"], ()),
        (["app-web@2"], ["app-web"], ()),
        (["web"], ["framework-web", "app-web"], ()),
        (["app-*"], ["app-web", "app-x"], ()),
        (["x", "nope"], ["app-x"], ("nope",)),
        (["*"], list(LAYERS), ()),
    ],
)
def test_match_layer_names(
    patterns: list[str], chosen: list[str], unmatched: tuple[str, ...]
) -> None:
    assert match_layer_names(patterns, LAYERS) == (chosen, unmatched)
