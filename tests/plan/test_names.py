"""Layer names, kinds, build names and lock file stems."""

from __future__ import annotations

import pytest

from venvstacks.plan.names import (
    EnvName,
    LayerKind,
    LayerName,
    UnmatchedNames,
    closest_name,
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


NAMES = ["cpython-3.11", "numpy", "web", "demo", "framework-numpy", "app-demo"]


@pytest.mark.parametrize(
    ("pattern", "closest"),
    [
        ("nump", "numpy"),
        ("numpyy", "numpy"),
        ("NumPy", "numpy"),  # case
        ("framework-nmpy", "framework-numpy"),
        ("app-dmo", "app-demo"),
        ("Num*", "numpy"),  # a wildcard pattern that matches only when case is ignored
        ("nmpy*", "numpy"),  # compared without its wildcards
        ("cpython-3.1", "cpython-3.11"),
        ("zz*", None),
        ("entirely-different", None),
    ],
)
def test_closest_name(pattern: str, closest: str | None) -> None:
    assert closest_name(pattern, NAMES) == closest


def _problem(*unmatched: str, known: int = 3, **kw: object) -> UnmatchedNames:
    names = ("cpython-3.11", "numpy", "demo", *(f"layer{i}" for i in range(known - 3)))
    return UnmatchedNames(
        option="--include",
        unmatched=unmatched,
        known=names,
        also_known=("framework-numpy", "app-demo"),
        source="/p/venvstacks.toml",
        **kw,  # type: ignore[arg-type]
    )


def test_unmatched_message_one_name() -> None:
    assert _problem("nump").message("pass --allow-missing to make this a warning") == (
        "/p/venvstacks.toml: --include 'nump' matches no layer (did you mean 'numpy'?); "
        "layers: cpython-3.11, numpy, demo (pass --allow-missing to make this a warning)"
    )
    assert _problem("zz*").message() == (
        "/p/venvstacks.toml: --include 'zz*' matches no layer; layers: cpython-3.11, numpy, demo"
    )


def test_unmatched_message_several_names_and_notes() -> None:
    message = _problem("nump", "nosuch", "app-dem", notes=("'x' targets no platform",)).message()
    assert message == (
        "/p/venvstacks.toml: --include 'nump', 'nosuch', 'app-dem' match no layer "
        "('nump': did you mean 'numpy'?) ('app-dem': did you mean 'app-demo'?); "
        "'x' targets no platform; layers: cpython-3.11, numpy, demo"
    )
    assert "\n" not in message


def test_unmatched_message_shortens_long_lists() -> None:
    message = _problem("q", known=25).message()
    assert message.endswith("layers: cpython-3.11, numpy, demo, layer0, layer1, layer2, layer3, "
                            "layer4, layer5, layer6 and 15 more")  # fmt: skip
    assert _problem("q", known=10).message().endswith("layer5, layer6")
    empty = UnmatchedNames(
        option="APP", unmatched=("x",), known=(), source="/d", noun="application"
    )
    assert empty.message() == "/d: APP 'x' matches no application; applications: none"


def test_unmatched_details_for_json() -> None:
    assert _problem("nump", "zz").details() == {
        "source": "/p/venvstacks.toml",
        "option": "--include",
        "unmatched": ["nump", "zz"],
        "layers": ["cpython-3.11", "numpy", "demo"],
        "suggestions": {"nump": "numpy"},
    }
