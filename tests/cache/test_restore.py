"""Restoring entries: hard links vs copies, and relocation to another build folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from venvstacks.cache.layers import always_copy
from venvstacks.cache.manifest import Relocation, scan_tree
from venvstacks.cache.restore import RestoreFailed, restore_tree
from venvstacks.cache.store import LayerCache

DIGEST = "sha256:" + "d" * 64


def venv_like(root: Path, build_dir: str) -> Path:
    """What an installed venv layer holds that names its build folder."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(f"{build_dir}/cpython-3.11/bin/python3")
    (root / "bin" / "python3").symlink_to("python")
    (root / "pyvenv.cfg").write_text(
        f"home = {build_dir}/cpython-3.11/bin\ncommand = python -m venv {build_dir}/.frame.new\n"
    )
    site = root / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("X = 1\n")
    (site / "pkg" / "native.so").write_bytes(b"\x7fELF\0\0" + b"x" * 100)
    (site / "sitecustomize.py").write_text("# from a package\n")
    return root


def test_scan_finds_the_files_holding_a_build_path(tmp_path: Path) -> None:
    build = str(tmp_path / "A" / "_build")
    tree = venv_like(tmp_path / "env", build)
    entries = {e.path: e for e in scan_tree(tree, [build])}
    assert entries["pyvenv.cfg"].relocate and not entries["pyvenv.cfg"].binary
    assert not entries["lib/python3.11/site-packages/pkg/__init__.py"].relocate
    assert entries["bin/python"].kind == "l"


def test_a_needle_split_across_read_chunks_is_found(tmp_path: Path) -> None:
    from venvstacks.cache import manifest

    needle = "/some/build/dir"
    data = b"x" * (manifest._CHUNK - 5) + needle.encode() + b"y" * 10
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "big.txt").write_bytes(data)
    (entry,) = scan_tree(tmp_path / "t", [needle])
    assert entry.relocate


def test_restore_elsewhere_rewrites_paths_and_copies_what_is_rewritten_later(
    tmp_path: Path,
) -> None:
    old, new = str(tmp_path / "A" / "_build"), str(tmp_path / "B" / "other")
    cache = LayerCache(tmp_path / "cache")
    source = venv_like(tmp_path / "A" / "_build" / "frame", old)
    entry = cache.insert(
        "env",
        DIGEST,
        source,
        layer="frame",
        inputs={},
        origin={"build_dir": [old]},
        always_copy=always_copy,
    )
    assert entry is not None
    dest = tmp_path / "B" / "other" / "frame"
    restore_tree(entry.tree, entry.entries, dest, Relocation.between([old], [new]), always_copy)
    cfg = (dest / "pyvenv.cfg").read_text()
    assert old not in cfg and f"home = {new}/cpython-3.11/bin" in cfg
    assert str((dest / "bin" / "python").readlink()) == f"{new}/cpython-3.11/bin/python3"
    assert (dest / "bin" / "python3").readlink() == Path("python")
    site = "lib/python3.11/site-packages"
    # Package files are hard links to the cache; files rewritten after installing are copies.
    assert (dest / site / "pkg" / "__init__.py").stat().st_ino == (
        entry.tree / site / "pkg" / "__init__.py"
    ).stat().st_ino
    for copied in ("pyvenv.cfg", f"{site}/sitecustomize.py"):
        assert (dest / copied).stat().st_ino != (entry.tree / copied).stat().st_ino, copied
        assert (source / copied).stat().st_ino != (entry.tree / copied).stat().st_ino, copied
    # A write to a copied file reaches neither the cache nor the source.
    (dest / site / "sitecustomize.py").write_text("# rewritten by the link step\n")
    assert cache.lookup("env", DIGEST) is not None


def test_binary_files_holding_the_build_path_only_restore_in_place(tmp_path: Path) -> None:
    old = str(tmp_path / "A")
    tree = tmp_path / "A" / "env"
    tree.mkdir(parents=True)
    (tree / "lib.so").write_bytes(b"\0ELF" + old.encode() + b"\0")
    cache = LayerCache(tmp_path / "cache")
    entry = cache.insert("env", DIGEST, tree, layer="x", inputs={}, origin={"build_dir": [old]})
    assert entry is not None
    with pytest.raises(RestoreFailed, match="binary file"):
        restore_tree(entry.tree, entry.entries, tmp_path / "B", Relocation.between([old], ["/b"]))
    restore_tree(entry.tree, entry.entries, tmp_path / "C", Relocation.between([old], [old]))
    assert (tmp_path / "C" / "lib.so").read_bytes() == (tree / "lib.so").read_bytes()


def test_relocation_maps_longest_prefix_first() -> None:
    moves = Relocation.between(["/src", "/src/_build"], ["/dst", "/elsewhere/b"])
    assert moves.apply_bytes(b"/src/_build/x and /src/y") == b"/elsewhere/b/x and /dst/y"
    assert moves.apply_link("/src/_build/rt/bin/python") == "/elsewhere/b/rt/bin/python"
    assert moves.apply_link("/srcother/x") == "/srcother/x"
    assert moves.apply_link("relative/x") == "relative/x"
    assert Relocation.between(["/a"], ["/a"]).identity


def test_restore_keeps_modes_and_times(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "ro").mkdir(parents=True)
    (tree / "ro" / "f").write_text("x")
    (tree / "ro" / "f").chmod(0o444)
    os.utime(tree / "ro" / "f", ns=(1, 1_000_000_000))
    (tree / "ro").chmod(0o555)
    entries = scan_tree(tree)
    try:
        restore_tree(tree, entries, tmp_path / "out", Relocation(()), lambda p: True)
        info = (tmp_path / "out" / "ro" / "f").stat()
        assert info.st_mode & 0o777 == 0o444 and info.st_mtime_ns == 1_000_000_000
        assert (tmp_path / "out" / "ro").stat().st_mode & 0o777 == 0o555
    finally:
        (tree / "ro").chmod(0o755)
        if (tmp_path / "out" / "ro").exists():
            (tmp_path / "out" / "ro").chmod(0o755)
