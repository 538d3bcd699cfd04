"""End to end: the files `lock` writes under requirements/ get the modes the umask asks for."""

from __future__ import annotations

import os
import stat

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_lock_files_respect_the_umask(basic_stack: StackProject, umask: int) -> None:
    old = os.umask(umask)  # inherited by the venvstacks subprocess
    try:
        basic_stack.lock()
    finally:
        os.umask(old)
    files = [p for p in (basic_stack.root / "requirements").rglob("*") if p.is_file()]
    assert len(files) >= 5 * 4
    modes = {str(p.relative_to(basic_stack.root)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes
    folders = {
        stat.S_IMODE(p.stat().st_mode)
        for p in (basic_stack.root / "requirements").rglob("*")
        if p.is_dir()
    }
    assert folders == {0o777 & ~umask}
