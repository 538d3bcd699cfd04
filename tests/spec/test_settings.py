"""The `[tool.venvstacks]` table: accepted values and one problem line per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from venvstacks.spec.settings import ARCHIVE_FORMATS, ToolSettings, parse_tool_settings

SPEC_DIR = Path("/stack")

VALID: list[tuple[dict[str, Any], ToolSettings]] = [
    ({}, ToolSettings()),
    (
        {"runtime-archives": "archives"},
        ToolSettings(runtime_archives=(Path("/stack/archives"),)),
    ),
    (
        {"runtime-archives": ["a", "/abs/b"]},
        ToolSettings(runtime_archives=(Path("/stack/a"), Path("/abs/b"))),
    ),
    ({"runtime-fallback": "host"}, ToolSettings(runtime_fallback="host")),
    ({"runtime-fallback": "none"}, ToolSettings(runtime_fallback="none")),
    *(({"archive-format": f}, ToolSettings(archive_format=f)) for f in ARCHIVE_FORMATS),
    ({"compression-level": 0}, ToolSettings(compression_level=0)),
    ({"compression-level": 22}, ToolSettings(compression_level=22)),
    ({"build-dir": "b"}, ToolSettings(build_dir=Path("/stack/b"))),
    ({"output-dir": "/out"}, ToolSettings(output_dir=Path("/out"))),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_settings(raw: dict[str, Any], expected: ToolSettings) -> None:
    problems: list[str] = []
    assert parse_tool_settings(raw, SPEC_DIR, problems) == expected
    assert problems == []


def test_paths_expand_the_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    problems: list[str] = []
    settings = parse_tool_settings({"build-dir": "~/b"}, SPEC_DIR, problems)
    assert settings.build_dir == Path("/home/me/b")


W = "[tool.venvstacks]"
INVALID: list[tuple[object, list[str]]] = [
    ("text", [f"{W} must be a table"]),
    ({"build_dir": "b"}, [f"{W}: unknown key 'build_dir' (did you mean 'build-dir'?)"]),
    ({"zzz": 1}, [f"{W}: unknown key 'zzz'"]),
    ({"runtime-archives": 3}, [f"{W}: runtime-archives must be a path or an array of paths"]),
    ({"runtime-archives": ["a", 1]}, [f"{W}: runtime-archives must be a path or an array of paths"]),
    (
        {"runtime-fallback": "download"},
        [f"{W}: runtime-fallback must be one of ['none', 'host'], not 'download'"],
    ),
    (
        {"archive-format": "rar"},
        [f"{W}: archive-format must be one of ['tar.xz', 'tar.gz', 'tar.zst', 'zip'], not 'rar'"],
    ),
    ({"compression-level": 23}, [f"{W}: compression-level must be a whole number from 0 to 22, not 23"]),
    ({"compression-level": -1}, [f"{W}: compression-level must be a whole number from 0 to 22, not -1"]),
    (
        {"compression-level": True},
        [f"{W}: compression-level must be a whole number from 0 to 22, not True"],
    ),
    (
        {"compression-level": "9"},
        [f"{W}: compression-level must be a whole number from 0 to 22, not '9'"],
    ),
    ({"build-dir": ""}, [f"{W}: build-dir must be a path"]),
    ({"output-dir": 5}, [f"{W}: output-dir must be a path"]),
    (
        {"build-dir": 1, "output-dir": [], "typo": 0},
        [f"{W}: unknown key 'typo'", f"{W}: build-dir must be a path", f"{W}: output-dir must be a path"],
    ),
]


@pytest.mark.parametrize(("raw", "expected"), INVALID)
def test_invalid_settings_report_every_problem(raw: object, expected: list[str]) -> None:
    problems: list[str] = []
    settings = parse_tool_settings(raw, SPEC_DIR, problems)
    assert problems == expected
    assert isinstance(settings, ToolSettings)


def test_invalid_values_fall_back_to_defaults() -> None:
    problems: list[str] = []
    settings = parse_tool_settings(
        {"runtime-fallback": "x", "compression-level": 99, "archive-format": "rar"},
        SPEC_DIR,
        problems,
    )
    assert settings == ToolSettings()
    assert len(problems) == 3
