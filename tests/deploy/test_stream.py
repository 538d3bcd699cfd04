"""One-pass extraction of tar layer archives: venvstacks.deploy.stream (through safe_extract)."""

from __future__ import annotations

import hashlib
import io
import lzma
import shutil
import tarfile
from pathlib import Path

import pytest
from fixtures_archives import HOSTILE as FULL_HOSTILE
from fixtures_archives import Spec, make_tar

from venvstacks.deploy.extract import StreamChecker, safe_extract
from venvstacks.deploy.stream import decompressor_command
from venvstacks.errors import DeployError
from venvstacks.publish.archive import ArchiveFormat, ArchiveMember, archive_suffix, write_archive

CLAMP = 1_700_000_000
TAR_FORMATS = [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_GZ, ArchiveFormat.TAR_ZST]
DECOMPRESSORS = [pytest.param(True, id="system"), pytest.param(False, id="python")]

GOOD: list[Spec] = [
    ("layer", "dir", ""),
    ("layer/lib", "dir", ""),
    ("layer/lib/mod.py", "file", "X = 1\n"),
]
# The full set is checked in test_extract.py (through the same code); these cover each kind.
HOSTILE = {
    case: FULL_HOSTILE[case]
    for case in (
        "parent traversal",
        "outside the root",
        "escaping symlink",
        "hardlink to non-member",
        "fifo",
        "write through a symlink",
        "duplicate member",
        "empty archive",
    )
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _layer(tmp_path: Path, fmt: ArchiveFormat) -> Path:
    source = tmp_path / "src"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "tool").write_text("#!/bin/sh\n")
    (source / "bin" / "tool").chmod(0o755)
    (source / "bin" / "alias").symlink_to("tool")
    (source / "lib").mkdir()
    (source / "lib" / "data.bin").write_bytes(bytes(range(256)) * 4096)
    archive = tmp_path / f"app@2{archive_suffix(fmt)}"
    write_archive(source, "app@2", archive, fmt=fmt, clamp_mtime=CLAMP)
    return archive


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("external", DECOMPRESSORS)
@pytest.mark.parametrize("fmt", TAR_FORMATS)
def test_one_pass_checks_the_published_digest(
    tmp_path: Path, fmt: ArchiveFormat, external: bool
) -> None:
    if external and decompressor_command(fmt) is None:
        pytest.skip(f"no system decompressor for {fmt.value}")
    archive = _layer(tmp_path, fmt)
    target = tmp_path / "deploy" / "app@2"
    safe_extract(
        archive, target, expected_root="app@2", size=archive.stat().st_size,
        sha256=_sha256(archive), external=external,
    )  # fmt: skip
    assert (target / "lib" / "data.bin").read_bytes() == bytes(range(256)) * 4096
    assert (target / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (target / "bin" / "alias").readlink() == Path("tool")
    assert _leftovers(target.parent) == ["app@2"]


@pytest.mark.parametrize("external", DECOMPRESSORS)
@pytest.mark.parametrize("fmt", TAR_FORMATS)
def test_a_substituted_archive_is_extracted_but_never_put_in_place(
    tmp_path: Path, fmt: ArchiveFormat, external: bool
) -> None:
    """The file changed after it was verified (a publish replaced it): the digest read while
    extracting is not the published one, so the scratch folder goes and nothing is in place."""
    archive = _layer(tmp_path, fmt)
    target = tmp_path / "deploy" / "app@2"
    target.parent.mkdir()
    with pytest.raises(DeployError, match=r"sha256 [0-9a-f]{64}, expected 0{64}") as excinfo:
        safe_extract(
            archive, target, expected_root="app@2", size=archive.stat().st_size,
            sha256="0" * 64, external=external,
        )  # fmt: skip
    assert str(archive) in str(excinfo.value)
    assert _leftovers(target.parent) == []
    with pytest.raises(DeployError, match="size"):
        safe_extract(
            archive, target, expected_root="app@2", size=archive.stat().st_size + 1,
            sha256=_sha256(archive), external=external,
        )  # fmt: skip
    assert _leftovers(target.parent) == []


def test_an_old_copy_survives_a_failed_replacement(tmp_path: Path) -> None:
    archive = _layer(tmp_path, ArchiveFormat.TAR_XZ)
    target = tmp_path / "deploy" / "app@2"
    safe_extract(archive, target, expected_root="app@2")
    (target / "marker").write_text("old")
    with pytest.raises(DeployError, match="sha256"):
        safe_extract(archive, target, expected_root="app@2", replace=True, sha256="1" * 64)
    assert (target / "marker").read_text() == "old"
    assert _leftovers(target.parent) == ["app@2"]


@pytest.mark.parametrize("external", DECOMPRESSORS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_by_both_decompressors(
    tmp_path: Path, case: str, external: bool
) -> None:
    members, expected = HOSTILE[case]
    archive = make_tar(tmp_path / "evil.tar.xz", members, "w:xz")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    with pytest.raises(DeployError) as excinfo:
        safe_extract(archive, deploy / "layer", expected_root="layer", external=external)
    assert expected in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert _leftovers(deploy) == []
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("external", DECOMPRESSORS)
def test_bytes_after_the_tar_end_are_hashed_not_extracted(tmp_path: Path, external: bool) -> None:
    """Whatever follows the tar end marker (here 3 MB of zeros, more than the drain) is part of
    the published bytes: hashed, never written."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, kind, payload in GOOD:
            if kind == "dir":
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload.encode()))
    archive = tmp_path / "layer.tar.xz"
    archive.write_bytes(lzma.compress(plain.getvalue() + bytes(3 << 20)))
    target = tmp_path / "deploy" / "layer"
    safe_extract(archive, target, expected_root="layer", sha256=_sha256(archive), external=external)
    assert (target / "lib" / "mod.py").read_text() == "X = 1\n"


@pytest.mark.parametrize("external", DECOMPRESSORS)
def test_a_bomb_is_refused_at_its_header(tmp_path: Path, external: bool) -> None:
    """A member declaring far more than the archive could hold stops the stream at its header:
    nothing of it is written, and the scratch folder is removed."""
    archive = tmp_path / "bomb.tar.xz"
    with lzma.open(archive, "wb", preset=1) as raw, tarfile.open(fileobj=raw, mode="w|") as tar:
        info = tarfile.TarInfo("layer")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        info = tarfile.TarInfo("layer/zeros.bin")
        info.size = 200 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    with pytest.raises(DeployError, match=r"'layer/zeros.bin': the archive declares over"):
        safe_extract(archive, deploy / "layer", expected_root="layer", external=external)
    assert _leftovers(deploy) == []


def _member(name: str, kind: str = "file", size: int = 0, link: str = "") -> ArchiveMember:
    return ArchiveMember(name, kind, 0o644, CLAMP, 0, 0, "", "", size, link)  # type: ignore[arg-type]


def test_checker_refuses_a_link_over_earlier_members(tmp_path: Path) -> None:
    checker = StreamChecker(
        expected_root=None, allow_peer_links=False, archive_size=1000, folder=tmp_path
    )
    checker(_member("layer", "dir"))
    checker(_member("layer/d/x"))
    with pytest.raises(Exception, match="a symlink member over earlier members"):
        checker(_member("layer/d", "symlink", link="."))
    assert checker.root == "layer"


def test_checker_counts_free_space(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    checker = StreamChecker(
        expected_root="layer", allow_peer_links=False, archive_size=free, folder=tmp_path
    )
    checker(_member("layer", "dir"))
    with pytest.raises(Exception, match=r"extracting needs over .* free in"):
        checker(_member("layer/huge", size=free))
