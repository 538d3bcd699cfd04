"""Canonical spellings of paths, so that state is keyed on one spelling per file. Pure (no I/O
beyond resolving symlinks)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["canonical_dir", "canonical_file"]


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
