"""Packing a cache entry's tree into one blob and unpacking it, checked against the manifest.

Real files, real tar and zstd streams; damage done for real (bytes flipped in the blob, a blob
cut short, manifests that disagree with the blob, a manifest placing a file under a symlink).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from venvstacks.cache.manifest import ManifestEntry, scan_tree, verify_tree
from venvstacks.cache.packing import UNPACK_ERRORS, PackError, pack_tree, unpack_tree


def make_tree(root: Path, size: int = 1000) -> Path:
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "lib" / "pkg" / "data.bin").write_bytes(os.urandom(size))
    (root / "lib" / "pkg" / "__pycache__").mkdir()
    (root / "lib" / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "link").symlink_to("tool")
    return root


def packed(tmp_path: Path, size: int = 3000) -> tuple[Path, list[ManifestEntry], Path]:
    tree = make_tree(tmp_path / "src", size)
    entries = scan_tree(tree)
    blob = tmp_path / "tree.tar.zst"
    pack_tree(tree, entries, blob)
    return tree, entries, blob


def test_round_trip_restores_modes_times_and_links(tmp_path: Path) -> None:
    tree, entries, blob = packed(tmp_path)
    dest = tmp_path / "dest"
    unpack_tree(blob, entries, dest)
    assert verify_tree(dest, entries) is None
    assert (dest / "bin" / "link").readlink() == Path("tool")
    assert (dest / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (dest / "lib" / "pkg" / "data.bin").read_bytes() == (
        tree / "lib" / "pkg" / "data.bin"
    ).read_bytes()
    assert not (dest / "lib" / "pkg" / "__pycache__").exists()  # not part of an entry


def test_packing_is_deterministic(tmp_path: Path) -> None:
    tree, entries, blob = packed(tmp_path)
    again = tmp_path / "again.tar.zst"
    assert pack_tree(tree, entries, again) == pack_tree(tree, entries, tmp_path / "third")
    assert again.read_bytes() == blob.read_bytes()


def test_a_file_changed_since_it_was_cached_is_not_packed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    entries = scan_tree(tree)
    (tree / "lib" / "pkg" / "__init__.py").write_text("VALUE = 2\n")  # same size
    with pytest.raises(PackError, match="changed since it was cached"):
        pack_tree(tree, entries, tmp_path / "blob")


def test_a_flipped_byte_in_the_blob_fails_the_unpacking(tmp_path: Path) -> None:
    _, entries, blob = packed(tmp_path, size=200_000)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(UNPACK_ERRORS):
        unpack_tree(blob, entries, tmp_path / "dest")


def test_a_truncated_blob_fails_the_unpacking(tmp_path: Path) -> None:
    _, entries, blob = packed(tmp_path, size=200_000)
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    with pytest.raises(UNPACK_ERRORS):
        unpack_tree(blob, entries, tmp_path / "dest")


def test_a_manifest_that_disagrees_with_the_blob_is_refused(tmp_path: Path) -> None:
    _, entries, blob = packed(tmp_path)
    lied = [
        dataclasses.replace(e, sha256="sha256:" + "0" * 64) if e.path.endswith("data.bin") else e
        for e in entries
    ]
    with pytest.raises(PackError, match=r"data\.bin does not match"):
        unpack_tree(blob, lied, tmp_path / "dest")
    fewer = [e for e in entries if not e.path.endswith("tool")]
    with pytest.raises(PackError, match="unexpected member"):
        unpack_tree(blob, fewer, tmp_path / "dest2")
    more = [*entries, ManifestEntry("bin/extra", "f", 0o644, 1, 0, "sha256:" + "0" * 64)]
    with pytest.raises(PackError, match="missing"):
        unpack_tree(blob, more, tmp_path / "dest3")


def test_nothing_may_be_placed_under_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [
        ManifestEntry("escape", "l", target=str(outside)),
        ManifestEntry("escape/evil", "f", 0o644, 1, 0, "sha256:" + "0" * 64),
    ]
    blob = tmp_path / "blob"
    blob.write_bytes(b"")
    with pytest.raises(PackError, match="not inside a folder"):
        unpack_tree(blob, entries, tmp_path / "dest")
    assert list(outside.iterdir()) == []
