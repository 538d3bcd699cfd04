"""Every path of a stack, computed from the spec path and the build dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.plan.layout import (
    BuildLayout,
    LockPaths,
    canonical_dir,
    canonical_file,
    relative_to_common,
)
from venvstacks.plan.names import EnvName

SPEC = Path("/work/stack/venvstacks.toml")


@pytest.mark.parametrize(
    ("build_dir", "expected"),
    [
        (None, Path("/work/stack/_build")),
        ("out", Path("/work/stack/out")),
        (Path("../elsewhere/b"), Path("/work/elsewhere/b")),
        ("/abs/build", Path("/abs/build")),
        (Path("/abs/build"), Path("/abs/build")),
    ],
)
def test_build_dir_is_taken_from_the_spec_folder(
    build_dir: str | Path | None, expected: Path
) -> None:
    layout = BuildLayout.for_spec(SPEC, build_dir)
    assert layout.build_dir == expected
    assert layout.spec_path == SPEC
    assert layout.spec_dir == SPEC.parent


def test_build_dir_expands_the_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert BuildLayout.for_spec(SPEC, "~/b").build_dir == Path("/home/someone/b")


def test_relative_spec_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    layout = BuildLayout.for_spec(Path("sub/venvstacks.toml"))
    assert layout.spec_path == tmp_path / "sub" / "venvstacks.toml"
    assert layout.build_dir == tmp_path / "sub" / "_build"


def test_state_paths_live_in_the_build_dir() -> None:
    layout = BuildLayout.for_spec(SPEC)
    state = Path("/work/stack/_build/.venvstacks")
    assert layout.state_dir == state
    assert layout.task_db == state / "tasks.db"
    assert layout.lock_file == state / "build.lock"
    assert layout.runtime_cache == state / "runtimes"
    assert layout.resolve_dir(EnvName("app-a")) == state / "resolve" / "app-a"
    assert layout.stamp("link", EnvName("app-a")) == state / "stamps" / "link.app-a.json"
    assert layout.env_dir(EnvName("framework-f")) == Path("/work/stack/_build/framework-f")


def test_lock_files_stay_beside_the_spec_whatever_the_build_dir() -> None:
    layout = BuildLayout.for_spec(SPEC, "/tmp/b")
    assert layout.requirements_dir == Path("/work/stack/requirements")


# env name -> (requirements.in, pylock, meta, summary) file names
LOCK_NAMES = {
    "app-a": (
        "requirements-app-a.in",
        "pylock.app-a.toml",
        "pylock.app-a.meta.json",
        "packages-app-a.txt",
    ),
    # periods are not allowed in pylock.<name>.toml: runtimes' names become cpython-3_11
    "cpython-3.11": (
        "requirements-cpython-3_11.in",
        "pylock.cpython-3_11.toml",
        "pylock.cpython-3_11.meta.json",
        "packages-cpython-3.11.txt",
    ),
}


@pytest.mark.parametrize("env", sorted(LOCK_NAMES))
def test_lock_paths(env: str) -> None:
    paths = BuildLayout.for_spec(SPEC).lock(EnvName(env))
    folder = Path("/work/stack/requirements") / env
    assert paths.folder == folder
    assert tuple(p.name for p in paths.all) == LOCK_NAMES[env]
    assert all(p.parent == folder for p in paths.all)
    assert paths == LockPaths.for_env(Path("/work/stack/requirements"), EnvName(env))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, Path("/work/stack/_artifacts")),
        ("dist", Path("/work/stack/dist")),
        ("/abs/out", Path("/abs/out")),
    ],
)
def test_output_dir(given: str | None, expected: Path) -> None:
    assert BuildLayout.for_spec(SPEC).output_dir(given, "_artifacts") == expected


def test_relative_to_common_for_several_paths() -> None:
    paths = [Path("/a/req/x/p.toml"), Path("/a/req/y/q.toml")]
    assert relative_to_common(paths) == (Path("/a/req"), [Path("x/p.toml"), Path("y/q.toml")])


def test_relative_to_common_for_one_path_keeps_its_name() -> None:
    assert relative_to_common([Path("/a/req/x/p.toml")]) == (Path("/a/req/x"), [Path("p.toml")])


def test_relative_to_common_for_no_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert relative_to_common([]) == (tmp_path, [])


def test_canonical_paths_resolve_dots_and_symlinked_folders(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (real / "venvstacks.toml").write_text("")
    (real / "alias.toml").symlink_to(real / "venvstacks.toml")
    for spelling in (real, tmp_path / "other" / ".." / "real", tmp_path / "link"):
        assert canonical_dir(spelling) == real.resolve()
        assert canonical_file(spelling / "venvstacks.toml") == real.resolve() / "venvstacks.toml"
        layout = BuildLayout.for_spec(spelling / "venvstacks.toml", "../link/_build")
        assert layout.build_dir == real.resolve() / "_build"
        assert layout.output_dir("../other/../real/out", "_artifacts") == real.resolve() / "out"
    # A symlinked spec file keeps its name (and its folder): it is used where it is linked.
    assert canonical_file(tmp_path / "link" / "alias.toml") == real.resolve() / "alias.toml"
