"""Reproducible layer archives: venvstacks.publish.archive."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from venvstacks.errors import PublishError
from venvstacks.publish import archive, xz
from venvstacks.publish.archive import (
    ArchiveFormat,
    ArchiveMember,
    archive_suffix,
    detect_format,
    exclude_paths,
    read_archive_members,
    sha256_file,
    write_archive,
)

CLAMP = 1_700_000_000
ALL_FORMATS = list(ArchiveFormat)
LONG_NAME = "a_module_with_a_very_long_name_" + "x" * 90 + ".py"
EXCLUDE = exclude_paths("pyvenv.cfg", "lib/site-packages/sitecustomize.py")

EXPECTED_NAMES = [
    "layer",
    "layer/bin",
    "layer/bin/python",
    "layer/bin/python3",
    "layer/bin/tool",
    "layer/empty",
    "layer/lib",
    "layer/lib/site-packages",
    f"layer/lib/site-packages/{LONG_NAME}",
    "layer/lib/site-packages/big.txt",
    "layer/lib/site-packages/big_hardlink.txt",
    "layer/lib/site-packages/data_link",
    "layer/lib/site-packages/pkg",
    "layer/lib/site-packages/pkg/__init__.py",
    "layer/lib/site-packages/pkg/data.bin",
    "layer/lib/site-packages/pkg/ünïcode.txt",
    "layer/share",
    "layer/share/venv",
    "layer/share/venv/dynlib",
    "layer/share/venv/dynlib/libdemo.so",
]


@pytest.fixture(autouse=True)
def small_xz_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks so that test trees are compressed as several xz blocks."""
    monkeypatch.setattr(xz, "XZ_CHUNK_SIZE", 256 * 1024)


def make_layer(root: Path, *, noise: int = 0, hardlink: bool = True) -> Path:
    """A small layer tree; ``noise`` varies mtimes and permission bits that must not matter."""
    site = root / "lib" / "site-packages"
    (site / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "empty").mkdir()
    (root / "share" / "venv" / "dynlib").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "data.bin").write_bytes(bytes(range(256)) * 64)
    (site / "pkg" / "ünïcode.txt").write_text("text\n", encoding="utf-8")
    (site / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"pyc")
    (site / "stray.pyc").write_bytes(b"pyc")
    (site / LONG_NAME).write_text("# long\n")
    (site / "big.txt").write_text("".join(f"line {n}\n" for n in range(150_000)))
    if hardlink:
        os.link(site / "big.txt", site / "big_hardlink.txt")
    else:
        shutil.copyfile(site / "big.txt", site / "big_hardlink.txt")
    (site / "sitecustomize.py").write_text("# build-time only\n")
    (root / "pyvenv.cfg").write_text("home = /somewhere\n")
    (root / "bin" / "python").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "python3").symlink_to("python")
    (site / "data_link").symlink_to(site / "pkg")  # absolute, inside the tree: made relative
    (root / "share" / "venv" / "dynlib" / "libdemo.so").symlink_to(
        "../../../lib/site-packages/pkg/data.bin"
    )
    _add_noise(root, noise)
    return root


def _add_noise(root: Path, noise: int) -> None:
    file_modes = [0o644, 0o600, 0o664, 0o640]
    exec_modes = [0o755, 0o700, 0o775, 0o711]
    dir_modes = [0o755, 0o700, 0o775, 0o750]
    for index, path in enumerate(sorted(root.rglob("*"))):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(dir_modes[(index + noise) % 4])
        elif path.parent.name == "bin":
            path.chmod(exec_modes[(index + noise) % 4])
        else:
            path.chmod(file_modes[(index + noise) % 4])
        stamp = 1_000_000_000 + noise * 7_777_777 + index * 13.25
        os.utime(path, (stamp, stamp))
    if noise and hasattr(os, "geteuid") and os.geteuid() == 0:
        os.lchown(root / "bin" / "tool", 1234, 4321)
    os.utime(root, (2_000_000_000.5, 2_000_000_000.5))  # newer than the clamp: still clamped


def build(
    tmp_path: Path, name: str, fmt: ArchiveFormat, *, noise: int = 0, **options: Any
) -> archive.ArchiveInfo:
    """Archive a fresh ``make_layer`` tree (with the standard exclusions) as ``name``."""
    source = make_layer(tmp_path / f"src-{name}", noise=noise)
    dest = tmp_path / f"{name}{archive_suffix(fmt)}"
    return write_archive(
        source, "layer", dest, fmt=fmt, clamp_mtime=CLAMP, exclude=EXCLUDE, **options
    )


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_same_content_gives_identical_bytes_despite_noise(
    tmp_path: Path, fmt: ArchiveFormat
) -> None:
    first = make_layer(tmp_path / "one", noise=0, hardlink=True)
    second = make_layer(tmp_path / "two", noise=3, hardlink=False)
    a = write_archive(
        first, "layer", tmp_path / "a.out", fmt=fmt, clamp_mtime=CLAMP, exclude=EXCLUDE
    )
    b = write_archive(
        second, "layer", tmp_path / "b.out", fmt=fmt, clamp_mtime=CLAMP, exclude=EXCLUDE
    )
    assert a.path.read_bytes() == b.path.read_bytes()
    assert (a.size, a.sha256) == (b.size, b.sha256)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_thread_count_does_not_change_bytes(tmp_path: Path, fmt: ArchiveFormat) -> None:
    source = make_layer(tmp_path / "src")
    outputs = {
        write_archive(
            source, "layer", tmp_path / f"t{threads}", fmt=fmt, clamp_mtime=CLAMP, threads=threads
        ).sha256
        for threads in (1, 2, 3, 0)
    }
    assert len(outputs) == 1


def test_clamp_time_changes_the_bytes(tmp_path: Path) -> None:
    source = make_layer(tmp_path / "src")
    one = write_archive(
        source, "layer", tmp_path / "a", fmt=ArchiveFormat.TAR_GZ, clamp_mtime=CLAMP
    )
    two = write_archive(
        source, "layer", tmp_path / "b", fmt=ArchiveFormat.TAR_GZ, clamp_mtime=CLAMP + 1
    )
    assert one.sha256 != two.sha256


# ---------------------------------------------------------------------------------------------
# Entry metadata
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_entries_are_sorted_filtered_and_normalised(tmp_path: Path, fmt: ArchiveFormat) -> None:
    info = build(tmp_path, "layer", fmt, noise=2)
    members = read_archive_members(info.path)
    assert [m.name for m in members] == EXPECTED_NAMES
    for member in members:
        assert member.mtime == CLAMP, member
        assert (member.uid, member.gid) == (0, 0), member
        if fmt is not ArchiveFormat.ZIP:
            assert (member.uname, member.gname) == ("root", "root"), member
    by_name = {m.name: m for m in members}
    assert by_name["layer"].kind == "dir"
    assert all(m.mode == 0o755 for m in members if m.kind in ("dir", "symlink"))
    assert by_name["layer/bin/tool"].mode == 0o755
    assert by_name["layer/bin/python"].mode == 0o755
    assert by_name["layer/lib/site-packages/pkg/__init__.py"].mode == 0o644


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_symlinks_kept_and_hard_links_become_files(tmp_path: Path, fmt: ArchiveFormat) -> None:
    members = {m.name: m for m in read_archive_members(build(tmp_path, "layer", fmt).path)}
    assert members["layer/bin/python3"] == _symlink("layer/bin/python3", "python", members)
    assert members["layer/lib/site-packages/data_link"].linkname == "pkg"
    assert members["layer/share/venv/dynlib/libdemo.so"].kind == "symlink"
    assert members["layer/share/venv/dynlib/libdemo.so"].linkname == (
        "../../../lib/site-packages/pkg/data.bin"
    )
    hard = members["layer/lib/site-packages/big_hardlink.txt"]
    assert hard.kind == "file"
    assert hard.size == members["layer/lib/site-packages/big.txt"].size
    assert not any(m.kind == "hardlink" for m in members.values())


def _symlink(name: str, target: str, members: dict[str, ArchiveMember]) -> ArchiveMember:
    found = members[name]
    assert found.kind == "symlink"
    assert found.linkname == target
    return found


def test_peer_symlinks_outside_the_folder_are_kept_relative(tmp_path: Path) -> None:
    layer = tmp_path / "deploy" / "app"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "python_").symlink_to("../../cpython-3.11/bin/python")
    info = write_archive(layer, "app", tmp_path / "a.tar.xz", clamp_mtime=CLAMP)
    members = {m.name: m for m in read_archive_members(info.path)}
    assert members["app/bin/python_"].linkname == "../../cpython-3.11/bin/python"


def test_absolute_symlink_outside_the_folder_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "escape").symlink_to("/etc/passwd")
    with pytest.raises(PublishError, match="points outside the layer"):
        write_archive(source, "layer", tmp_path / "a.tar.gz", clamp_mtime=CLAMP)
    assert list(tmp_path.iterdir()) == [source]


def test_exclude_callback_prunes_whole_folders(tmp_path: Path) -> None:
    source = make_layer(tmp_path / "src")
    info = write_archive(
        source,
        "layer",
        tmp_path / "a.tar.gz",
        fmt=ArchiveFormat.TAR_GZ,
        clamp_mtime=CLAMP,
        exclude=lambda path: path == PurePosixPath("lib") or path.name == "pyvenv.cfg",
    )
    names = [m.name for m in read_archive_members(info.path)]
    assert not any(name.startswith("layer/lib") for name in names)
    assert "layer/pyvenv.cfg" not in names
    assert "layer/bin/python" in names


def test_pycache_and_pyc_are_never_archived(tmp_path: Path) -> None:
    names = [m.name for m in read_archive_members(build(tmp_path, "l", ArchiveFormat.TAR_GZ).path)]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_empty_folder_archives_as_its_root(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    info = write_archive(tmp_path / "empty", "e", tmp_path / "e.tar.xz", clamp_mtime=CLAMP)
    assert [m.name for m in read_archive_members(info.path)] == ["e"]


# ---------------------------------------------------------------------------------------------
# Formats on the wire
# ---------------------------------------------------------------------------------------------


def test_xz_output_is_one_stream_of_several_blocks_readable_everywhere(tmp_path: Path) -> None:
    info = build(tmp_path, "layer", ArchiveFormat.TAR_XZ, threads=2)
    expected = EXPECTED_NAMES
    with tarfile.open(info.path, "r:xz") as tar:
        assert [m.name for m in tar.getmembers()] == expected
    with tarfile.open(info.path, "r|xz") as tar:  # streaming readers need a single xz stream
        assert [m.name for m in tar] == expected
    if shutil.which("xz") is None or shutil.which("tar") is None:
        pytest.skip("xz/tar command line tools not installed")
    subprocess.run(["xz", "-t", str(info.path)], check=True)
    listing = subprocess.run(
        ["xz", "--robot", "-l", str(info.path)], check=True, capture_output=True, text=True
    ).stdout
    totals = next(line.split("\t") for line in listing.splitlines() if line.startswith("totals"))
    streams, blocks = int(totals[1]), int(totals[2])
    assert streams == 1
    assert blocks > 1
    names = subprocess.run(
        ["tar", "-tJf", str(info.path)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert [name.rstrip("/") for name in names] == expected


def test_gzip_header_has_no_name_and_no_time(tmp_path: Path) -> None:
    info = build(tmp_path, "layer", ArchiveFormat.TAR_GZ)
    header = info.path.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0  # no FNAME, no FCOMMENT, no FEXTRA
    assert header[4:8] == b"\x00\x00\x00\x00"  # mtime
    with gzip.open(info.path) as stream:
        assert stream.read(512)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd command line tool not installed")
def test_zstd_output_is_readable_by_the_zstd_tool(tmp_path: Path) -> None:
    info = build(tmp_path, "layer", ArchiveFormat.TAR_ZST)
    subprocess.run(["zstd", "-q", "-t", str(info.path)], check=True)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_format_is_detected_from_content(tmp_path: Path, fmt: ArchiveFormat) -> None:
    info = build(tmp_path, "layer", fmt)
    assert detect_format(info.path) is fmt
    assert info.path.name.endswith(archive_suffix(fmt))


def test_archive_suffixes() -> None:
    assert [archive_suffix(fmt) for fmt in ArchiveFormat] == [
        ".tar.xz",
        ".tar.gz",
        ".tar.zst",
        ".zip",
    ]
    assert ArchiveFormat("tar.xz") is ArchiveFormat.TAR_XZ


# ---------------------------------------------------------------------------------------------
# Writing safely
# ---------------------------------------------------------------------------------------------


def test_archive_info_matches_the_file(tmp_path: Path) -> None:
    info = build(tmp_path, "layer", ArchiveFormat.TAR_XZ)
    assert info.size == info.path.stat().st_size
    assert info.sha256 == sha256_file(info.path)
    assert info.path.stat().st_mode & 0o777 == 0o644


def test_progress_reports_every_file_byte(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    build(
        tmp_path,
        "layer",
        ArchiveFormat.TAR_GZ,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0][0] == 0
    assert calls[-1][0] == calls[-1][1] > 0
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP])
def test_failure_leaves_no_partial_archive(tmp_path: Path, fmt: ArchiveFormat) -> None:
    source = make_layer(tmp_path / "src")
    os.mkfifo(source / "zz_fifo")
    dest = tmp_path / "out" / f"layer{archive_suffix(fmt)}"
    dest.parent.mkdir()
    dest.write_bytes(b"previous archive")
    with pytest.raises(PublishError, match="special file"):
        write_archive(source, "layer", dest, fmt=fmt, clamp_mtime=CLAMP)
    assert dest.read_bytes() == b"previous archive"
    assert list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize("root_name", ["", "a/b", ".", ".."])
def test_invalid_root_names_are_refused(tmp_path: Path, root_name: str) -> None:
    with pytest.raises(PublishError, match="root folder name"):
        write_archive(tmp_path, root_name, tmp_path / "x.tar.xz", clamp_mtime=CLAMP)


def test_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="not a folder"):
        write_archive(tmp_path / "nope", "layer", tmp_path / "x.tar.xz", clamp_mtime=CLAMP)
