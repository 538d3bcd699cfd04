"""Tests never share results through ~/.cache: every test gets its own empty layer cache.

Module- and session-scoped fixtures (built template stacks) run before any test's own fixtures,
so the whole session first gets a private cache folder; each test then gets a fresh one. Tests
that want builds to share a cache point `VENVSTACKS_CACHE_DIR` at one folder themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["isolated_layer_cache", "session_layer_cache"]

CACHE_ENV = "VENVSTACKS_CACHE_DIR"


@pytest.fixture(scope="session", autouse=True)
def session_layer_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("session-layer-cache")
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(autouse=True)
def isolated_layer_cache(
    session_layer_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh `VENVSTACKS_CACHE_DIR` for this test (inherited by the CLI subprocesses)."""
    folder = tmp_path / "layer-cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder
