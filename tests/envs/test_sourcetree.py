"""Launch/support modules: 0.8.0-compatible hashes, source filtering and copying."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from venvstacks.envs.sourcetree import (
    GitIgnoreFilter,
    SourceFilter,
    copy_module,
    default_source_filter,
    exclude_pycache,
    find_git_root,
    hash_module,
    module_name,
    walk_source_tree,
)

GIT = shutil.which("git")


def _write_tree(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _included_files(top: Path, source_filter: SourceFilter) -> set[str]:
    return {
        (this_dir / name).relative_to(top).as_posix()
        for this_dir, _dirs, files in walk_source_tree(top, source_filter)
        for name in files
    }


@pytest.fixture
def outside_git(tmp_path: Path) -> Path:
    if find_git_root(tmp_path) is not None:
        pytest.skip("the temporary directory is inside a git work tree")
    return tmp_path


# --- hashing -----------------------------------------------------------------------------------


def test_file_hash_covers_name_and_content(tmp_path: Path) -> None:
    module = tmp_path / "launch.py"
    module.write_bytes(b"print('hi')\n")
    inner = "sha256:" + _hex(b"print('hi')\n")
    expected = "sha256:" + _hex(b"launch.py" + inner.encode())
    assert hash_module(module, source_filter=exclude_pycache) == expected


def test_directory_hash_follows_the_080_algorithm(outside_git: Path) -> None:
    top = outside_git / "app"
    _write_tree(
        top,
        {
            "__init__.py": "A",
            "main.py": "B",
            "sub/z.py": "C",
            "sub/a.txt": "D",
            "empty/": "",
            "__pycache__/main.cpython-311.pyc": "junk",
        },
    )
    # Top-down, sorted: every dir's name, then each file's name and "sha256:<content hex>".
    chunks = [
        b"app",
        b"__init__.py",
        f"sha256:{_hex(b'A')}".encode(),
        b"main.py",
        f"sha256:{_hex(b'B')}".encode(),
        b"empty",
        b"sub",
        b"a.txt",
        f"sha256:{_hex(b'D')}".encode(),
        b"z.py",
        f"sha256:{_hex(b'C')}".encode(),
    ]
    expected = "sha256/" + _hex(b"".join(chunks))
    assert hash_module(top, source_filter=exclude_pycache) == expected


def test_directory_hash_is_stable_across_locations(outside_git: Path) -> None:
    files = {"__init__.py": "x = 1\n", "pkg/mod.py": "y = 2\n"}
    _write_tree(outside_git / "one" / "app", files)
    _write_tree(outside_git / "two" / "app", files)
    one = hash_module(outside_git / "one" / "app", source_filter=exclude_pycache)
    two = hash_module(outside_git / "two" / "app", source_filter=exclude_pycache)
    assert one == two
    assert hash_module(outside_git / "one" / "app", source_filter=exclude_pycache) == one


@pytest.mark.parametrize(
    "change",
    ["edit content", "rename file", "add empty dir", "rename top dir"],
)
def test_directory_hash_changes_with_the_tree(outside_git: Path, change: str) -> None:
    top = outside_git / "app"
    _write_tree(top, {"__init__.py": "x = 1\n"})
    before = hash_module(top, source_filter=exclude_pycache)
    if change == "edit content":
        (top / "__init__.py").write_text("x = 2\n")
    elif change == "rename file":
        (top / "__init__.py").rename(top / "other.py")
    elif change == "add empty dir":
        (top / "data").mkdir()
    else:
        top = top.rename(outside_git / "renamed")
    assert hash_module(top, source_filter=exclude_pycache) != before


def test_pycache_does_not_change_the_hash(outside_git: Path) -> None:
    top = outside_git / "app"
    _write_tree(top, {"__init__.py": "x = 1\n"})
    before = hash_module(top, source_filter=exclude_pycache)
    _write_tree(top, {"__pycache__/__init__.cpython-311.pyc": "bytecode"})
    assert hash_module(top, source_filter=exclude_pycache) == before


def test_module_name_is_the_stem(tmp_path: Path) -> None:
    assert module_name(tmp_path / "launch.py") == "launch"
    assert module_name(tmp_path / "app_pkg") == "app_pkg"


# --- filtering ---------------------------------------------------------------------------------

REPO_TREE = {
    ".gitignore": "*.log\nbuild/\n/anchored.txt\n!keep.log\ngenerated/\n!generated/wanted.py\n",
    ".github/workflow.yml": "ci",
    ".gitattributes": "* text=auto",
    "anchored.txt": "ignored at the root only",
    "keep.log": "re-included",
    "debug.log": "ignored",
    "app/__init__.py": "",
    "app/anchored.txt": "not anchored here",
    "app/trace.log": "ignored",
    "app/build/out.py": "ignored dir",
    "app/build.py": "a file, not the build/ dir",
    "app/generated/wanted.py": "cannot be re-included below an ignored dir",
    "app/__pycache__/x.pyc": "not ignored by git rules",
    "app/nested/.gitignore": "!important.log\n*.tmp\n",
    "app/nested/important.log": "re-included by the deeper file",
    "app/nested/scratch.tmp": "ignored",
    "app/nested/deeper/other.tmp": "ignored via the parent nested file",
    "app/nested/deeper/code.py": "",
    "app/.git-notes": "always excluded",
    "app/info/skip.me": "excluded via .git/info/exclude",
}

EXPECTED_APP_FILES = {
    "__init__.py",
    "anchored.txt",
    "build.py",
    "__pycache__/x.pyc",
    "nested/important.log",
    "nested/deeper/code.py",
}


def _make_repo(root: Path, *, use_git: bool) -> None:
    if use_git:
        assert GIT is not None
        subprocess.run([GIT, "init", "-q", str(root)], check=True, env=_git_env(root))
    else:
        (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("*.me\n")
    _write_tree(root, REPO_TREE)


def _git_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }


@pytest.mark.parametrize("use_git", [False, True], ids=["no-git-binary", "git-init"])
def test_gitignore_rules_apply_to_module_dirs(tmp_path: Path, use_git: bool) -> None:
    if use_git and GIT is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=use_git)
    source_filter = default_source_filter(repo / "app")
    assert isinstance(source_filter, GitIgnoreFilter)
    assert _included_files(repo / "app", source_filter) == EXPECTED_APP_FILES


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_filter_agrees_with_git_itself(tmp_path: Path) -> None:
    assert GIT is not None
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=True)
    listed = subprocess.run(
        [GIT, "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        env=_git_env(tmp_path),
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    git_view = {
        p for p in listed if p and not any(part.startswith(".git") for part in p.split("/"))
    }
    assert _included_files(repo, GitIgnoreFilter(repo)) == git_view


def test_filter_works_without_a_git_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=False)
    source_filter = default_source_filter(repo)
    assert _included_files(repo / "app", source_filter) == EXPECTED_APP_FILES


def test_gitignore_matters_for_directory_hashes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=False)
    source_filter = default_source_filter(repo)
    before = hash_module(repo / "app", source_filter=source_filter)
    (repo / "app" / "more.log").write_text("ignored, so no hash change")
    assert hash_module(repo / "app", source_filter=source_filter) == before
    (repo / "app" / "more.py").write_text("included")
    assert hash_module(repo / "app", source_filter=GitIgnoreFilter(repo)) != before


def test_paths_outside_the_repository_are_excluded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=False)
    outside = tmp_path / "elsewhere"
    _write_tree(outside, {"mod.py": "x"})
    source_filter = GitIgnoreFilter(repo)
    assert not source_filter(outside / "mod.py")
    assert list(walk_source_tree(outside, source_filter)) == []
    assert hash_module(outside, source_filter=source_filter) == "sha256/" + _hex(b"")


def test_git_file_is_not_a_repository(outside_git: Path) -> None:
    (outside_git / ".git").write_text("gitdir: elsewhere\n")
    assert find_git_root(outside_git) is None
    assert default_source_filter(outside_git) is exclude_pycache


def test_find_git_root_searches_ancestors(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    assert find_git_root(tmp_path / "repo" / "a" / "b") == tmp_path / "repo"


# --- copying -----------------------------------------------------------------------------------


def test_copy_file_module_copies_bytes_only(tmp_path: Path) -> None:
    src = tmp_path / "src" / "launch.py"
    _write_tree(tmp_path / "src", {"launch.py": "print('hi')\n"})
    src.chmod(0o755)
    os.utime(src, (1_000_000, 1_000_000))
    site_packages = tmp_path / "site-packages"
    copied = copy_module(src, site_packages, source_filter=exclude_pycache)
    assert copied == site_packages / "launch.py"
    assert copied.read_bytes() == src.read_bytes()
    assert copied.stat().st_mtime != 1_000_000
    assert not copied.stat().st_mode & 0o111


def test_copy_directory_module_is_filtered_and_replaces_old_copy(outside_git: Path) -> None:
    src = outside_git / "src" / "app"
    _write_tree(
        src,
        {"__init__.py": "x", "sub/mod.py": "y", "empty/": "", "__pycache__/c.pyc": "z"},
    )
    site_packages = outside_git / "site-packages"
    _write_tree(site_packages / "app", {"stale.py": "from an older build"})
    copied = copy_module(src, site_packages, source_filter=exclude_pycache)
    assert copied == site_packages / "app"
    assert _included_files(copied, exclude_pycache) == {"__init__.py", "sub/mod.py"}
    assert (copied / "empty").is_dir()
    assert not (copied / "__pycache__").exists()
    assert hash_module(copied, source_filter=exclude_pycache) == hash_module(
        src, source_filter=exclude_pycache
    )


def test_copy_directory_module_applies_gitignore(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _make_repo(repo, use_git=False)
    site_packages = tmp_path / "site-packages"
    copied = copy_module(repo / "app", site_packages, source_filter=GitIgnoreFilter(repo))
    copied_files = _included_files(copied, lambda _path: True)
    assert copied_files == EXPECTED_APP_FILES
