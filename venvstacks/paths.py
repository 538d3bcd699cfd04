"""Canonical spellings of paths, so that state is keyed on one spelling per file, and the one
location of venvstacks' user cache. Pure (no I/O beyond resolving symlinks)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "canonical_dir", "canonical_file", "default_cache_dir"]

CACHE_DIR_ENV = "VENVSTACKS_CACHE_DIR"


def canonical_dir(path: Path | str) -> Path:
    """One spelling per folder: absolute, ``~`` expanded, ``..`` and symlinks resolved.

    Every piece of state (the task database's file keys, lock file paths, relative wheel paths
    in locks, archive settings) is keyed on these, so ``other/../proj`` and a symlink to
    ``proj`` are the same stack. The folder need not exist.
    """
    return Path(os.path.realpath(Path(path).expanduser().absolute()))


def canonical_file(path: Path | str) -> Path:
    """`canonical_dir` of the file's folder, with the file's own name kept.

    A spec file that is itself a symlink keeps its folder (its `requirements/`, its relative
    paths), as a symlinked file is used where it is linked.
    """
    absolute = Path(path).expanduser().absolute()
    return canonical_dir(absolute.parent) / absolute.name


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$VENVSTACKS_CACHE_DIR`, else `$XDG_CACHE_HOME/venvstacks`, else `~/.cache/venvstacks`.

    A relative `XDG_CACHE_HOME` is ignored, as the XDG base directory specification says.
    The layer cache and the registry mount record both live here.
    """
    env = os.environ if environ is None else environ
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV]).expanduser().absolute()
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "venvstacks"
    return Path.home() / ".cache" / "venvstacks"
