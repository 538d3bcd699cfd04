"""The stack's `[tool.uv]` table and each layer's index list and sources."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from venvstacks.spec.indexes import (
    IndexSpec,
    UvConfig,
    check_layer_indexes,
    layer_index_list,
    layer_sources,
    merge_package_indexes,
    parse_timestamp,
    parse_uv_config,
)

ORIGIN = "spec.toml [tool.uv]"

PYPI = {"name": "pypi", "url": "https://pypi.org/simple", "default": True}
TORCH = {"name": "torch", "url": "https://download.pytorch.org/whl/cpu", "explicit": True}
MIRROR = {"name": "mirror", "url": "https://mirror.example/simple"}
UNNAMED = {"url": "https://unnamed.example/simple"}
PRIVATE = {"name": "private", "url": "https://private.example/simple", "explicit": True}


def _config(table: dict[str, Any]) -> UvConfig:
    problems: list[str] = []
    config = parse_uv_config(table, ORIGIN, problems)
    assert problems == []
    return config


# ---------------------------------------------------------------------------------------------
# parse_uv_config
# ---------------------------------------------------------------------------------------------


def test_settings_pass_through_and_indexes_are_parsed() -> None:
    config = _config(
        {
            "index-strategy": "unsafe-best-match",
            "index": [PYPI, TORCH, UNNAMED],
            "sources": {"Torch_Vision": {"index": "torch"}},
        }
    )
    assert config.settings == {"index-strategy": "unsafe-best-match"}
    assert config.origin == ORIGIN
    assert config.indexes == (
        IndexSpec("pypi", PYPI["url"], False, True, PYPI),  # type: ignore[arg-type]
        IndexSpec("torch", TORCH["url"], True, False, TORCH),  # type: ignore[arg-type]
        IndexSpec(None, UNNAMED["url"], False, False, UNNAMED),  # type: ignore[arg-type]
    )
    assert config.sources == {"torch-vision": "torch"}
    assert set(config.named_indexes) == {"pypi", "torch"}
    assert config.exclude_newer is None


@pytest.mark.parametrize(
    ("entry", "common"),
    [
        (PYPI, True),
        (MIRROR, True),
        (UNNAMED, True),
        (TORCH, False),
        ({**TORCH, "default": True}, True),
    ],
)
def test_common_indexes(entry: dict[str, Any], common: bool) -> None:
    [index] = _config({"index": [entry]}).indexes
    assert index.is_common is common


def test_empty_table() -> None:
    assert _config({}) == UvConfig(origin=ORIGIN)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00+02:00", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        (datetime(2024, 5, 1, 12), datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=-1))),
            datetime(2024, 5, 1, 13, tzinfo=UTC),
        ),
        (date(2024, 5, 1), datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_exclude_newer(value: object, expected: datetime) -> None:
    config = _config({"exclude-newer": value})
    assert config.exclude_newer == expected
    assert config.exclude_newer.tzinfo is UTC  # type: ignore[union-attr]
    assert config.settings == {"exclude-newer": value}


BAD_TABLES: list[tuple[dict[str, Any], list[str]]] = [
    ({"index": {"url": "x"}}, [f"{ORIGIN}: 'index' must be an array of tables"]),
    ({"index": ["x"]}, [f"{ORIGIN}: index entry 0 must be a table with a 'url' string"]),
    (
        {"index": [PYPI, {"name": "n"}]},
        [f"{ORIGIN}: index entry 1 must be a table with a 'url' string"],
    ),
    ({"index": [{"url": "u", "name": 3}]}, [f"{ORIGIN}: index entry 0 has a non-string 'name'"]),
    ({"index": [PYPI, PYPI]}, [f"{ORIGIN}: index name 'pypi' is defined twice"]),
    ({"sources": []}, [f"{ORIGIN}: 'sources' must be a table"]),
    (
        {"index": [TORCH], "sources": {"torch": {"git": "https://x"}}},
        [
            (
                f"{ORIGIN}: common uv source for 'torch' must be an index reference like "
                "{ index = \"name\" }, not {'git': 'https://x'}"
            )
        ],
    ),
    (
        {"index": [TORCH], "sources": {"torch": {"index": "nope"}}},
        [f"{ORIGIN}: source for 'torch' references unknown index 'nope'"],
    ),
    (
        {"index": [TORCH], "sources": {"Torch": {"index": "torch"}, "torch": {"index": "torch"}}},
        [f"{ORIGIN}: sources name 'torch' twice after normalization"],
    ),
    (
        {"exclude-newer": "last tuesday"},
        [f"{ORIGIN}: exclude-newer must be an ISO 8601 timestamp, not 'last tuesday'"],
    ),
    (
        {"index": "x", "sources": 1, "exclude-newer": "?"},
        [
            f"{ORIGIN}: 'index' must be an array of tables",
            f"{ORIGIN}: 'sources' must be a table",
            f"{ORIGIN}: exclude-newer must be an ISO 8601 timestamp, not '?'",
        ],
    ),
]


@pytest.mark.parametrize(("table", "expected"), BAD_TABLES)
def test_bad_tables_report_every_problem(table: dict[str, Any], expected: list[str]) -> None:
    problems: list[str] = []
    parse_uv_config(table, ORIGIN, problems)
    assert problems == expected


def test_parse_timestamp_appends_to_existing_problems() -> None:
    problems = ["earlier"]
    assert parse_timestamp("nope", "X", problems) is None
    assert problems == ["earlier", "X must be an ISO 8601 timestamp, not 'nope'"]


# ---------------------------------------------------------------------------------------------
# merge_package_indexes
# ---------------------------------------------------------------------------------------------

# (own, overrides, inherited, expected merge, problems)
MERGES: list[
    tuple[dict[str, str], dict[str, str], list[dict[str, str]], dict[str, str], list[str]]
] = [
    ({}, {}, [], {}, []),
    ({"torch": "cpu"}, {}, [], {"torch": "cpu"}, []),
    ({}, {}, [{"torch": "cpu"}, {"numpy": "mirror"}], {"torch": "cpu", "numpy": "mirror"}, []),
    ({}, {}, [{"torch": "cpu"}, {"torch": "cpu"}], {"torch": "cpu"}, []),
    ({"torch": "cpu"}, {}, [{"torch": "cpu"}], {"torch": "cpu"}, []),
    (
        {},
        {},
        [{"torch": "cpu"}, {"torch": "cuda"}],
        {"torch": "cpu"},
        [
            (
                "app-x: depends on layers with inconsistent package indexes for 'torch' "
                "('cpu' and 'cuda'; set index_overrides = { cuda = \"cpu\" } to accept)"
            )
        ],
    ),
    ({}, {"cuda": "cpu"}, [{"torch": "cpu"}, {"torch": "cuda"}], {"torch": "cpu"}, []),
    (
        {"torch": "cuda"},
        {},
        [{"torch": "cpu"}],
        {"torch": "cuda"},
        [
            (
                "app-x: declares package index 'cuda' for 'torch', but a lower layer uses 'cpu' "
                '(set index_overrides = { cpu = "cuda" } to accept)'
            )
        ],
    ),
    ({"torch": "cuda"}, {"cpu": "cuda"}, [{"torch": "cpu"}], {"torch": "cuda"}, []),
]


@pytest.mark.parametrize(("own", "overrides", "inherited", "expected", "problems"), MERGES)
def test_merge_package_indexes(
    own: dict[str, str],
    overrides: dict[str, str],
    inherited: list[dict[str, str]],
    expected: dict[str, str],
    problems: list[str],
) -> None:
    found: list[str] = []
    assert merge_package_indexes("app-x", own, overrides, inherited, found) == expected
    assert found == problems


def test_first_inherited_layer_wins_for_the_merge() -> None:
    merged = merge_package_indexes("a", {}, {"y": "x"}, [{"p": "x"}, {"p": "y"}], problems := [])
    assert merged == {"p": "x"}
    assert problems == []


# ---------------------------------------------------------------------------------------------
# check_layer_indexes
# ---------------------------------------------------------------------------------------------


def test_check_layer_indexes() -> None:
    config = _config({"index": [PYPI, TORCH, UNNAMED]})
    problems: list[str] = []
    check_layer_indexes("framework-f", {"torch": "torch"}, ["pypi"], config, problems)
    assert problems == []
    check_layer_indexes("framework-f", {"torch": "cuda"}, ["pypi", "gone"], config, problems)
    assert problems == [
        "framework-f: package_indexes maps 'torch' to unknown index 'cuda'",
        "framework-f: priority_indexes names unknown index 'gone'",
    ]


# ---------------------------------------------------------------------------------------------
# layer_index_list and layer_sources: what uv sees for one layer
# ---------------------------------------------------------------------------------------------

FULL = {
    "index": [PYPI, TORCH, MIRROR, PRIVATE, UNNAMED],
    "sources": {"Shared": {"index": "private"}},
}

# (package_indexes, priority) -> index names in order (None for the unnamed one)
INDEX_LISTS: list[tuple[dict[str, str], list[str], list[str | None]]] = [
    ({}, [], ["pypi", "mirror", None]),
    ({"torch": "torch"}, [], ["torch", "pypi", "mirror", None]),
    ({"torch": "torch", "torchvision": "torch"}, [], ["torch", "pypi", "mirror", None]),
    ({}, ["mirror"], ["mirror", "pypi", None]),
    ({"torch": "torch"}, ["torch"], ["torch", "pypi", "mirror", None]),
    ({"x": "private", "torch": "torch"}, ["mirror"], ["mirror", "private", "torch", "pypi", None]),
    ({"numpy": "mirror"}, [], ["pypi", "mirror", None]),  # common already, not repeated
]


@pytest.mark.parametrize(("package_indexes", "priority", "names"), INDEX_LISTS)
def test_layer_index_list_order(
    package_indexes: dict[str, str], priority: list[str], names: list[str | None]
) -> None:
    indexes = layer_index_list(_config(FULL), package_indexes, priority)
    assert [i.get("name") for i in indexes] == names


def test_priority_indexes_are_made_non_explicit() -> None:
    [first, *_] = layer_index_list(_config(FULL), {}, ["torch"])
    assert first == {**TORCH, "explicit": False}
    assert TORCH["explicit"] is True, "the configuration itself is not changed"


def test_index_tables_are_copied_verbatim() -> None:
    indexes = layer_index_list(_config(FULL), {"torch": "torch"}, [])
    assert indexes[0] == TORCH
    assert indexes[1] == PYPI
    indexes[0]["url"] = "changed"
    assert layer_index_list(_config(FULL), {"torch": "torch"}, [])[0] == TORCH


@pytest.mark.parametrize(
    ("package_indexes", "expected"),
    [
        ({}, {"shared": {"index": "private"}}),
        (
            {"torch": "torch"},
            {"shared": {"index": "private"}, "torch": {"index": "torch"}},
        ),
        ({"shared": "mirror"}, {"shared": {"index": "mirror"}}),  # the layer's choice wins
    ],
)
def test_layer_sources(package_indexes: dict[str, str], expected: dict[str, Any]) -> None:
    sources = layer_sources(_config(FULL), package_indexes)
    assert sources == expected
    assert list(sources) == sorted(sources)


def test_layer_sources_without_any() -> None:
    assert layer_sources(_config({}), {}) == {}


def test_common_sources_need_valid_distribution_names() -> None:
    from venvstacks.spec.indexes import parse_uv_config

    problems: list[str] = []
    parse_uv_config(
        {
            "index": [{"name": "extra", "url": "https://x.example/simple"}],
            "sources": {"框架": {"index": "extra"}},
        },
        "[tool.uv]",
        problems,
    )
    assert problems == ["[tool.uv]: sources: '框架' is not a valid distribution name"]
