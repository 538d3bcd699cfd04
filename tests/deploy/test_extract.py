"""Safe extraction of layer archives: venvstacks.deploy.extract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_archives import HOSTILE, Spec, make_tar, make_zip

from venvstacks.deploy.extract import MemberRejected, check_members, safe_extract, verify_archive
from venvstacks.errors import DeployError
from venvstacks.publish.archive import ArchiveFormat, ArchiveMember, archive_suffix, write_archive

CLAMP = 1_700_000_000

# ---------------------------------------------------------------------------------------------
# Hand-made archives (hostile ones cannot come from write_archive)
# ---------------------------------------------------------------------------------------------

GOOD: list[Spec] = [
    ("layer", "dir", ""),
    ("layer/bin", "dir", ""),
    ("layer/bin/python3", "symlink", "python"),
    ("layer/bin/python", "file", "#!/bin/sh\n"),
    ("layer/lib", "dir", ""),
    ("layer/lib/mod.py", "file", "X = 1\n"),
    ("layer/lib/mod_copy.py", "hardlink", "layer/lib/mod.py"),
    ("layer/lib/up", "symlink", "../bin/python"),
]


def assert_untouched(deploy: Path, before: list[str]) -> None:
    assert sorted(p.name for p in deploy.iterdir()) == before


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, object]:
    result: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            result[rel] = ("link", str(path.readlink()))
        elif path.is_dir():
            result[rel] = ("dir",)
        else:
            result[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o111 != 0)
    return result


@pytest.mark.parametrize("fmt", list(ArchiveFormat))
def test_round_trip_restores_the_tree(tmp_path: Path, fmt: ArchiveFormat) -> None:
    source = tmp_path / "build" / "app"
    (source / "bin").mkdir(parents=True)
    (source / "lib").mkdir()
    (source / "bin" / "python").write_text("#!/bin/sh\n")
    (source / "bin" / "python").chmod(0o755)
    (source / "bin" / "python3").symlink_to("python")
    (source / "bin" / "python_").symlink_to("../../cpython/bin/python3")
    (source / "lib" / "mod.py").write_text("X = 1\n")
    dest = tmp_path / f"app{archive_suffix(fmt)}"
    info = write_archive(source, "app@2", dest, fmt=fmt, clamp_mtime=CLAMP)
    verify_archive(dest, info.size, info.sha256)
    target = tmp_path / "deploy" / "app@2"
    result = safe_extract(dest, target, expected_root="app@2", allow_peer_links=True)
    assert result == target
    assert _tree(target) == _tree(source)
    assert (target / "lib" / "mod.py").stat().st_mtime == CLAMP or fmt is ArchiveFormat.ZIP
    assert sorted(p.name for p in target.parent.iterdir()) == ["app@2"]  # no scratch left


@pytest.mark.parametrize("mode", ["w:gz", "w:xz"])
def test_hand_made_good_archive_extracts(tmp_path: Path, mode: str) -> None:
    archive = make_tar(tmp_path / "good.tar", GOOD, mode)
    target = safe_extract(archive, tmp_path / "deploy" / "layer", expected_root="layer")
    assert (target / "lib" / "mod_copy.py").read_text() == "X = 1\n"
    assert (target / "lib" / "up").resolve() == (target / "bin" / "python").resolve()


def test_root_is_inferred_without_expected_root(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    target = safe_extract(archive, tmp_path / "elsewhere", expected_root=None)
    assert (target / "lib" / "mod.py").is_file()


def test_extract_renames_the_root_to_the_target(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    target = safe_extract(archive, tmp_path / "deploy" / "renamed", expected_root="layer")
    assert target.name == "renamed"
    assert (target / "bin" / "python").is_file()


# ---------------------------------------------------------------------------------------------
# Hostile archives
# ---------------------------------------------------------------------------------------------


def _one_line_error(excinfo: pytest.ExceptionInfo[DeployError], archive: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(archive) in message
    return message


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("fmt", ["w:gz", "w:xz"])
def test_hostile_tar_is_refused_before_writing(tmp_path: Path, case: str, fmt: str) -> None:
    members, expected = HOSTILE[case]
    archive = make_tar(tmp_path / "hostile.tar", members, fmt)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "peer").mkdir()
    with pytest.raises(DeployError) as excinfo:
        safe_extract(archive, deploy / "layer", expected_root="layer")
    assert expected in _one_line_error(excinfo, archive)
    assert_untouched(deploy, ["peer"])


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("../../peer/bin/python", True),
        ("../../layer/bin/python", True),
        ("../../../outside/bin/python", False),
        ("../..", False),
        ("../../peer/../../x", False),
    ],
)
def test_peer_links_only_when_allowed_and_never_beyond_the_deployment(
    tmp_path: Path, link: str, allowed: bool
) -> None:
    members: list[Spec] = [
        ("layer", "dir", ""),
        ("layer/bin", "dir", ""),
        ("layer/bin/l", "symlink", link),
    ]
    archive = make_tar(tmp_path / "peer.tar.gz", members)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    if allowed:
        target = safe_extract(
            archive, deploy / "layer", expected_root="layer", allow_peer_links=True
        )
        assert str((target / "bin" / "l").readlink()) == link
        return
    with pytest.raises(DeployError, match="layer/bin/l"):
        safe_extract(archive, deploy / "layer", expected_root="layer", allow_peer_links=True)
    assert_untouched(deploy, [])


def test_wrong_expected_root_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    with pytest.raises(DeployError, match="outside the archive root folder 'other'"):
        safe_extract(archive, tmp_path / "other", expected_root="other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("case", "members"),
    [
        ("parent traversal", [("layer", "dir", ""), ("layer/../evil", "file", "x")]),
        ("escaping symlink", [("layer", "dir", ""), ("layer/l", "symlink", "../../etc")]),
    ],
)
def test_hostile_zip_is_refused(tmp_path: Path, case: str, members: list[Spec]) -> None:
    archive = make_zip(tmp_path / "hostile.zip", members)
    with pytest.raises(DeployError, match="refusing to extract"):
        safe_extract(archive, tmp_path / "deploy" / "layer", expected_root="layer")
    assert not (tmp_path / "deploy").exists()


def test_truncated_archive_is_a_clean_error(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "good.tar.xz", [*GOOD, ("layer/big", "file", "x" * 100_000)], "w:xz"
    )
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DeployError, match="cannot read archive"):
        safe_extract(archive, tmp_path / "deploy" / "layer", expected_root="layer")
    assert not (tmp_path / "deploy").exists()


def test_unknown_format_is_a_clean_error(tmp_path: Path) -> None:
    archive = tmp_path / "plain.tar"
    make_tar(archive, GOOD, "w")
    with pytest.raises(DeployError, match=r"not a tar\.xz, tar\.gz, tar\.zst or zip"):
        safe_extract(archive, tmp_path / "layer", expected_root="layer")


def test_existing_target_needs_replace(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    target = tmp_path / "deploy" / "layer"
    (target / "old").mkdir(parents=True)
    with pytest.raises(DeployError, match="already exists"):
        safe_extract(archive, target, expected_root="layer")
    assert (target / "old").is_dir()
    safe_extract(archive, target, expected_root="layer", replace=True)
    assert not (target / "old").exists()
    assert (target / "lib" / "mod.py").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["layer"]


# ---------------------------------------------------------------------------------------------
# The pure member check
# ---------------------------------------------------------------------------------------------


def _member(name: str, kind: str = "file", linkname: str = "") -> ArchiveMember:
    return ArchiveMember(name, kind, 0o644, CLAMP, 0, 0, "", "", 0, linkname)  # type: ignore[arg-type]


def test_check_members_returns_the_root() -> None:
    members = [_member("r", "dir"), _member("r/a"), _member("r/b", "symlink", "a")]
    assert check_members(members, expected_root=None) == "r"


def test_check_members_names_the_offender() -> None:
    with pytest.raises(MemberRejected) as excinfo:
        check_members([_member("r", "dir"), _member("r/x/../../y")], expected_root="r")
    assert excinfo.value.member == "r/x/../../y"


# ---------------------------------------------------------------------------------------------
# Verifying published hashes
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, int, str]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("content\n")
    info = write_archive(source, "layer", tmp_path / "layer.tar.xz", clamp_mtime=CLAMP)
    return info.path, info.size, info.sha256


Tamper = Callable[[Path, int, str], tuple[Path, int, str]]
TAMPERING: dict[str, tuple[Tamper, str]] = {
    "wrong hash": (lambda p, n, h: (p, n, "0" * 64), "sha256"),
    "wrong size": (lambda p, n, h: (p, n + 1, h), "size"),
    "missing file": (lambda p, n, h: (p.with_name("gone.tar.xz"), n, h), "cannot verify"),
}


def test_verify_accepts_the_published_values(published: tuple[Path, int, str]) -> None:
    path, size, digest = published
    verify_archive(path, size, digest)
    verify_archive(path, size, f"sha256:{digest.upper()}")


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_verify_rejects_tampering(published: tuple[Path, int, str], case: str) -> None:
    tamper, expected = TAMPERING[case]
    with pytest.raises(DeployError, match=expected):
        verify_archive(*tamper(*published))


def test_verify_rejects_modified_content(published: tuple[Path, int, str]) -> None:
    path, size, digest = published
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DeployError, match="sha256"):
        verify_archive(path, size, digest)
