"""End to end: how a path is spelled never changes what is up to date.

The same stack is built through ``other/../stack/venvstacks.toml``, then ``stack/venvstacks.toml``
from another folder, then through a symlinked folder, with the wheel and runtime folders spelled
differently each time: only the first run does anything. Publishing behaves the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


def _build(project: StackProject, spec: str, wheels: str, archives: str, cwd: Path) -> list[str]:
    result = project.run(
        "-v", "build", spec, "--lock-if-needed", "--no-index",
        "--local-wheels", wheels, "--runtime-archives", archives, cwd=cwd,
    )  # fmt: skip
    return project.ran_tasks(result)


def test_spelling_of_paths_reruns_nothing(basic_stack: StackProject, tmp_path: Path) -> None:
    project = basic_stack
    root = project.root
    (tmp_path / "other").mkdir()
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    wheels_link = tmp_path / "wheels-link"
    wheels_link.symlink_to(project.wheelhouse, target_is_directory=True)
    dotted = f"{tmp_path}/other/../{root.name}"

    first = _build(
        project, f"{dotted}/venvstacks.toml", f"{project.wheelhouse}/.",
        str(project.runtime_archives), cwd=tmp_path / "other",
    )  # fmt: skip
    assert "lock:app-a" in first and "link:app-a" in first
    locks = project.lock_files()

    again = _build(
        project, os.path.relpath(project.spec, tmp_path), str(wheels_link),
        f"{project.runtime_archives}/../{project.runtime_archives.name}", cwd=tmp_path,
    )  # fmt: skip
    assert again == []
    via_link = _build(
        project, "venvstacks.toml", os.path.relpath(project.wheelhouse, link),
        str(project.runtime_archives), cwd=link,
    )  # fmt: skip
    assert via_link == []
    assert project.lock_files() == locks

    published = project.run(
        "-v", "publish", f"{dotted}/venvstacks.toml", "--output-dir", f"{dotted}/_artifacts"
    )
    assert "archive:app-a" in project.ran_tasks(published)
    republished = project.run(
        "-v", "publish", str(link / "venvstacks.toml"), "--output-dir", "../link/_artifacts",
        cwd=link,
    )  # fmt: skip
    assert project.ran_tasks(republished) == []
    # The build dir given through a symlink is the same build dir.
    status = project.run(
        "status", str(link / "venvstacks.toml"), "--build-dir", str(link / "_build")
    )
    assert "0 stale, 0 waiting" in status.stdout, status.stdout
