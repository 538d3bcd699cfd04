"""A lock's local wheels at install time: venvstacks.envs.localwheels."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from venvstacks.envs.localwheels import (
    LocalWheel,
    find_local_wheels,
    missing_wheel_message,
    recorded_local_wheels,
    write_sync_lock,
)
from venvstacks.errors import BuildError

WHEEL = "vs_base-1.0-py3-none-any.whl"


def _lock(folder: Path, path: str, sha256: str) -> Path:
    lock = folder / "requirements" / "cpython-3.11" / "pylock.cpython-3_11.toml"
    lock.parent.mkdir(parents=True)
    lock.write_text(
        "# Locked requirements (DO NOT EDIT)\n"
        'lock-version = "1.0"\n\n'
        "[[packages]]\n"
        'name = "vs-base"\nversion = "1.0"\n'
        f'wheels = [{{ path = "{path}", hashes = {{ sha256 = "{sha256}" }} }}]\n\n'
        "[[packages]]\n"
        'name = "other"\nversion = "2.0"\n'
        'wheels = [{ url = "https://example.org/other-2.0-py3-none-any.whl", '
        'hashes = { sha256 = "00" } }]\n'
    )
    return lock


def _wheel(folder: Path, content: bytes = b"wheel bytes") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WHEEL).write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_recorded_local_wheels_are_the_path_entries() -> None:
    packages = [
        {"wheels": [{"path": "../w/a-1-py3-none-any.whl", "hashes": {"sha256": "ab"}}]},
        {"wheels": [{"url": "https://x/b-1-py3-none-any.whl"}]},
        {"name": "shared, no wheels"},
    ]
    assert recorded_local_wheels(packages) == [
        LocalWheel("../w/a-1-py3-none-any.whl", "a-1-py3-none-any.whl", "ab")
    ]


def test_wheel_at_its_recorded_path_is_used_as_is(tmp_path: Path) -> None:
    sha = _wheel(tmp_path / "wheels")
    lock = _lock(tmp_path, f"../../wheels/{WHEEL}", sha)
    (found,) = find_local_wheels("cpython-3.11", lock, [])
    assert found.found == tmp_path / "wheels" / WHEEL and not found.elsewhere


def test_wheel_moved_is_found_by_name_in_the_local_wheel_folders(tmp_path: Path) -> None:
    sha = _wheel(tmp_path / "elsewhere")
    _wheel(tmp_path / "decoy", b"same name, other bytes")
    lock = _lock(tmp_path / "copy", f"../../../wheels/{WHEEL}", sha)
    folders = [tmp_path / "empty", tmp_path / "decoy", tmp_path / "elsewhere"]
    (found,) = find_local_wheels("cpython-3.11", lock, folders)
    assert found.found == tmp_path / "elsewhere" / WHEEL and found.elsewhere
    assert found.tried == (
        str(tmp_path / "wheels" / WHEEL),
        str(tmp_path / "empty" / WHEEL),
        f"{tmp_path / 'decoy' / WHEEL} (sha256 differs from the lock)",
    )
    # uv gets a copy naming the wheel by absolute path; the lock itself is untouched.
    before = lock.read_bytes()
    copy = write_sync_lock(lock, [found], tmp_path / "sync")
    assert copy == tmp_path / "sync" / lock.name and lock.read_bytes() == before
    packages = tomllib.loads(copy.read_text())["packages"]
    assert packages[0]["wheels"][0] == {"path": str(found.found), "hashes": {"sha256": sha}}
    assert packages[1] == tomllib.loads(lock.read_text())["packages"][1]
    assert copy.read_text().startswith("# Locked requirements")


def test_missing_wheel_is_one_line_naming_layer_lock_and_paths(tmp_path: Path) -> None:
    lock = _lock(tmp_path, f"../../wheels/{WHEEL}", "ab" * 32)
    with pytest.raises(BuildError) as caught:
        find_local_wheels("cpython-3.11", lock, [tmp_path / "w"])
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"layer cpython-3.11: local wheel {WHEEL} not found: {lock} records it as "
        f"'../../wheels/{WHEEL}'; tried {tmp_path / 'wheels' / WHEEL}, {tmp_path / 'w' / WHEEL} "
        "(pass --local-wheels DIR with the folder holding it, or relock: venvstacks lock "
        "--reset-lock cpython-3.11 --local-wheels DIR)"
    )


def test_missing_wheel_message_without_folders_and_several_missing(tmp_path: Path) -> None:
    wheels = [
        LocalWheel("../a.whl", "a.whl", None, tried=("/x/a.whl",)),
        LocalWheel("b", "b", None),
    ]
    message = missing_wheel_message("app-x", tmp_path / "pylock.app-x.toml", wheels, [])
    assert message.startswith("local wheel a.whl not found (and 1 more local wheel(s)): ")
    assert "tried /x/a.whl; no --local-wheels folder was given to look for it by name" in message


def test_unreadable_lock_is_a_build_error(tmp_path: Path) -> None:
    bad = tmp_path / "pylock.x.toml"
    bad.write_text("not = [toml")
    with pytest.raises(BuildError, match=f"layer x: cannot read {bad}"):
        find_local_wheels("x", bad, [])
