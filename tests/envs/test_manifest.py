"""Folder manifests: recorded after a task, re-checked by lstat, differences named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from venvstacks.envs.manifest import check_folder, describe_changes, record_folder, scan_folder


@pytest.fixture
def env(tmp_path: Path) -> Path:
    root = tmp_path / "env"
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "site").mkdir(parents=True)
    (root / "bin" / "python3.11").write_bytes(b"\x7fELF" + b"\0" * 100)
    (root / "bin" / "python3.11").chmod(0o755)
    (root / "bin" / "python").symlink_to("python3.11")
    (root / "lib" / "site" / "pkg.py").write_text("VALUE = 1\n")
    (root / "lib" / "site" / "extra.pth").write_text("import x\n")
    (root / ".lock").write_text("")  # uv's lock file at the top: not part of the layer
    return root


@pytest.fixture
def manifest(env: Path, tmp_path: Path) -> Path:
    path = tmp_path / "state" / "env.json"
    record_folder(env, path)
    return path


def test_scan_lists_kinds_modes_sizes_and_link_targets(env: Path) -> None:
    listing = dict(scan_folder(env))
    assert set(listing) == {
        "bin", "bin/python3.11", "bin/python", "lib", "lib/site", "lib/site/pkg.py",
        "lib/site/extra.pth",
    }
    assert listing["bin"] == "d755"
    assert listing["bin/python"] == "lpython3.11"
    assert listing["bin/python3.11"].startswith("f755:104:")


def test_an_untouched_folder_matches(env: Path, manifest: Path) -> None:
    assert check_folder(env, manifest) is None


def test_bytecode_caches_and_reading_do_not_count(env: Path, manifest: Path) -> None:
    cache = env / "lib" / "site" / "__pycache__"
    cache.mkdir()
    (cache / "pkg.cpython-311.pyc").write_bytes(b"pyc")
    (env / "lib" / "site" / "pkg.py").read_text()
    (env / ".lock").write_text("touched")
    assert check_folder(env, manifest) is None


def test_hard_links_coming_and_going_do_not_count(env: Path, manifest: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    os.link(env / "bin" / "python3.11", other)
    other.unlink()
    assert check_folder(env, manifest) is None


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda e: (e / "bin" / "python").unlink(), "bin/python missing"),
        (lambda e: (e / "bin" / "python3.11").chmod(0o644), "bin/python3.11 mode changed"),
        (lambda e: (e / "bin" / "python3.11").write_bytes(b""), "bin/python3.11 modified"),
        (lambda e: (e / "lib" / "site" / "pkg.py").write_text("VALUE = 2\n"),
         "lib/site/pkg.py modified"),
        (lambda e: (e / "lib" / "site" / "new.pth").write_text("import evil\n"),
         "lib/site/new.pth added"),
        (lambda e: _relink(e / "bin" / "python", "/usr/bin/python3"),
         "bin/python link target changed"),
        (lambda e: _replace_by_folder(e / "lib" / "site" / "extra.pth"),
         "lib/site/extra.pth replaced"),
    ],
)
def test_damage_is_detected_and_named(
    env: Path, manifest: Path, damage: object, expected: str
) -> None:
    assert callable(damage)
    damage(env)
    assert check_folder(env, manifest) == expected


def test_a_byte_flip_with_the_old_mtime_kept_is_still_caught_when_the_size_changes(
    env: Path, manifest: Path
) -> None:
    target = env / "lib" / "site" / "pkg.py"
    before = target.stat()
    target.write_text("VALUE = 10\n")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert check_folder(env, manifest) == "lib/site/pkg.py modified"


def test_a_removed_folder_is_named_once(env: Path, manifest: Path) -> None:
    for path in (env / "lib" / "site").iterdir():
        path.unlink()
    (env / "lib" / "site").rmdir()
    assert check_folder(env, manifest) == "lib/site missing"


def test_many_changes_are_counted(env: Path, manifest: Path) -> None:
    for n in range(5):
        (env / f"new{n}.txt").write_text("x")
    assert check_folder(env, manifest) == "new0.txt added, new1.txt added, new2.txt added and 2 more"


def test_missing_folder_and_missing_or_damaged_record(env: Path, manifest: Path, tmp_path: Path) -> None:
    assert check_folder(tmp_path / "nowhere", manifest) == "nowhere missing"
    assert check_folder(env, tmp_path / "no-record.json") == "not recorded"
    manifest.write_text("garbage")
    assert check_folder(env, manifest) == "its record is damaged"


def test_recording_again_accepts_the_new_state(env: Path, manifest: Path) -> None:
    (env / "bin" / "python").unlink()
    record_folder(env, manifest)
    assert check_folder(env, manifest) is None
    assert not list(manifest.parent.glob(".*.tmp"))


def test_describe_changes_is_empty_for_equal_listings() -> None:
    assert describe_changes({"a": "d755"}, {"a": "d755"}) == ""


def _relink(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


def _replace_by_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
