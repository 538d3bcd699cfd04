"""`venvstacks cache` in process: sizes, empty caches, errors and usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from venvstacks.cli.cache import human_size, parse_size
from venvstacks.cli.main import main


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("123", 123),
        ("10K", 10240),
        ("1.5M", 1572864),
        ("2G", 2 << 30),
        ("3gib", 3 << 30),
        ("7kB", 7168),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "10X", "M", "1.2.3"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_size(text)


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(5 << 30) == "5.0 GiB"


def test_empty_cache(isolated_layer_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"location": str(isolated_layer_cache), "entries": 0, "size": 0}
    assert main(["cache", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "is empty" in captured.err
    assert main(["cache", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["cache", "prune", "--max-size", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == []


def test_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "prune"]) == 2
    assert main(["cache", "prune", "--max-size", "lots"]) == 2
    assert main(["cache", "prune", "--older-than", "-3"]) == 2
    capsys.readouterr()
    assert main(["cache", "info", "ab"]) == 1
    assert (
        capsys.readouterr().err
        == "error: digest prefix 'ab' is too short (give at least 4 hex digits)\n"
    )


def test_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VENVSTACKS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["location"] == str(tmp_path / "venvstacks")
