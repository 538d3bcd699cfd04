"""Safe extraction of layer archives on the deployment side, and checking them against metadata.

Every member of an archive is checked before it is written: names must be plain relative
paths under the one expected root folder (no absolute paths, no ``.``/``..``/empty components, no
duplicates, nothing inside a symlink or file member); only folders, regular files, symlinks and
hard links are accepted; a hard link must name an earlier regular file; a symlink target must be
a normalised relative path that stays inside the layer, or, with ``allow_peer_links``, inside the
folder holding the layer (the deployed peer layers). A tar archive is checked member by member
as it is streamed (read once: hashed, decompressed and written, `venvstacks.deploy.stream`); a
zip archive is listed and checked whole first. Extraction goes into a temporary sibling of the
target, with tarfile's ``data`` filter on top, and the result is renamed into place only when
every check (and the archive's digest) passed, so a rejected or failed extraction leaves the
target untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from venvstacks.deploy.stream import Digest, stream_extract
from venvstacks.errors import DeployError
from venvstacks.publish.archive import (
    ARCHIVE_READ_ERRORS,
    ArchiveFormat,
    ArchiveMember,
    detect_format,
    read_archive_members,
)
from venvstacks.publish.crashpoints import crash_point
from venvstacks.publish.files import describe_os_error

__all__ = [
    "MemberRejected",
    "StreamChecker",
    "check_expansion",
    "check_members",
    "safe_extract",
    "sweep_scratch",
    "verify_archive",
]

_ACCEPTED_KINDS = frozenset({"dir", "file", "symlink", "hardlink"})
_EXTRACTING = "extracting-"
_RETIRED = "retired-"
MAX_EXPANSION_ENV = "VENVSTACKS_DEPLOY_MAX_EXPANSION"
DEFAULT_MAX_EXPANSION = 50
EXPANSION_FLOOR = 64 * 1024 * 1024


class MemberRejected(Exception):
    """One archive member failed the safety checks (turned into a DeployError by callers)."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"member {member!r}: {reason}" if member else reason)
        self.member = member
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Checking (pure: member list in, verdict out)
# ---------------------------------------------------------------------------------------------


def _name_parts(name: str) -> list[str]:
    """The components of a member name, which must be a plain relative POSIX path."""
    if not name or name.startswith("/") or (os.sep == "\\" and ("\\" in name or ":" in name)):
        raise MemberRejected(name, "absolute or drive-qualified path")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise MemberRejected(name, "path with empty, '.' or '..' components")
    return parts


def _check_link_target(parts: list[str], target: str, allow_peer_links: bool) -> None:
    """A symlink target must stay in the layer (or, if allowed, in the folder holding it)."""
    name = "/".join(parts)
    if not target or target.startswith("/") or "\\" in target or ":" in target.split("/")[0]:
        raise MemberRejected(name, f"symlink to absolute or empty path {target!r}")
    if posixpath.normpath(target) != target:
        # Only leading '..' may climb, so the climb is over real folders, never other links.
        raise MemberRejected(name, f"symlink target {target!r} is not a normalised path")
    components = target.split("/")
    climbs = len(components) - len([part for part in components if part != ".."])
    depth = len(parts) - 2  # folders between the layer root and the symlink
    if climbs <= depth:
        return
    if allow_peer_links and climbs == depth + 1 and climbs < len(components):
        return
    where = "the deployment folder" if allow_peer_links else "the layer"
    raise MemberRejected(name, f"symlink target {target!r} escapes {where}")


def _check_tree(members: Sequence[ArchiveMember], kinds: dict[str, str]) -> None:
    """No member may sit inside a member that is not a folder."""
    for member in members:
        parts = member.name.split("/")
        for end in range(1, len(parts)):
            ancestor = "/".join(parts[:end])
            if kinds.get(ancestor, "dir") != "dir":
                raise MemberRejected(member.name, f"inside {kinds[ancestor]} member {ancestor!r}")


def _check_member(
    member: ArchiveMember, root: str, seen: dict[str, str], allow_peer_links: bool
) -> None:
    parts = _name_parts(member.name)
    if member.kind not in _ACCEPTED_KINDS:
        raise MemberRejected(member.name, f"{member.kind} members are not allowed")
    if parts[0] != root:
        raise MemberRejected(member.name, f"outside the archive root folder {root!r}")
    if len(parts) == 1 and member.kind != "dir":
        raise MemberRejected(member.name, "the archive root must be a folder")
    if member.name in seen:
        raise MemberRejected(member.name, "duplicate member")
    if member.kind == "symlink":
        _check_link_target(parts, member.linkname, allow_peer_links)
    elif member.kind == "hardlink" and seen.get(member.linkname) != "file":
        raise MemberRejected(
            member.name, f"hard link to {member.linkname!r}, not an earlier regular file"
        )


def check_members(
    members: Sequence[ArchiveMember], *, expected_root: str | None, allow_peer_links: bool = False
) -> str:
    """Check every member for safe extraction; the archive's root folder name if all pass.

    Without ``expected_root``, the first member's first component is the root. Raises
    MemberRejected for the first offending member.
    """
    if not members:
        raise MemberRejected("", "the archive is empty")
    root = expected_root if expected_root is not None else _name_parts(members[0].name)[0]
    seen: dict[str, str] = {}
    for member in members:
        _check_member(member, root, seen, allow_peer_links)
        seen[member.name] = member.kind
    _check_tree(members, seen)
    return root


class _NoRoom(MemberRejected):
    """The declared sizes so far do not fit in the free space (not the archive's fault)."""


class StreamChecker:
    """`check_members` one member at a time, as a tar stream is read, with the size limits.

    Every member is checked before it is written: the same rules as `check_members` (a member
    met after members inside it must be a folder), the declared sizes summed against the
    expansion limit (`check_expansion`) and against the free space (`check_free_space`).
    """

    def __init__(
        self,
        *,
        expected_root: str | None,
        allow_peer_links: bool,
        archive_size: int,
        folder: Path,
    ) -> None:
        self.root = expected_root
        self._allow_peer_links = allow_peer_links
        self._archive_size = archive_size
        self._limit = max(EXPANSION_FLOOR, _max_expansion() * archive_size)
        self._folder = folder
        self._free = shutil.disk_usage(folder).free
        self._seen: dict[str, str] = {}
        self._parents: set[str] = set()
        self._declared = 0
        self._needed = 0

    def __call__(self, member: ArchiveMember) -> None:
        if self.root is None:
            self.root = _name_parts(member.name)[0]
        _check_member(member, self.root, self._seen, self._allow_peer_links)
        parts = member.name.split("/")
        for end in range(1, len(parts)):
            ancestor = "/".join(parts[:end])
            kind = self._seen.get(ancestor, "dir")
            if kind != "dir":
                raise MemberRejected(member.name, f"inside {kind} member {ancestor!r}")
            self._parents.add(ancestor)
        if member.kind != "dir" and member.name in self._parents:
            raise MemberRejected(member.name, f"a {member.kind} member over earlier members")
        self._seen[member.name] = member.kind
        self._count(member)

    def _count(self, member: ArchiveMember) -> None:
        if member.kind == "file":
            self._declared += member.size
        if self._declared > self._limit:
            raise MemberRejected(
                member.name,
                f"the archive declares over {_mb(self._declared - 1)} of files from "
                f"{_mb(self._archive_size)} (over {_max_expansion()} times its size; raise "
                f"${MAX_EXPANSION_ENV} if this is real)",
            )
        self._needed += member.size + 4096
        if self._needed > self._free:
            raise _NoRoom(
                "",
                f"extracting needs over {_mb(self._needed - 1)}, only {_mb(self._free)} free "
                f"in {self._folder}",
            )

    def finish(self) -> None:
        if not self._seen:
            raise MemberRejected("", "the archive is empty")


# ---------------------------------------------------------------------------------------------
# Extracting
# ---------------------------------------------------------------------------------------------


_TarFilter = Callable[[tarfile.TarInfo, str], "tarfile.TarInfo | None"]


def _tar_filter(allow_peer_links: bool) -> _TarFilter | None:
    """tarfile's ``data`` filter, relaxed for peer symlinks (already checked by check_members)."""
    if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: check_members is the only guard
        return None

    def layer_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.LinkOutsideDestinationError:
            if not (allow_peer_links and member.issym()):
                raise
        member = tarfile.tar_filter(member, dest)
        # None means "leave unset" to tarfile (as the data filter does); typeshed says int/str.
        unset: Any = None
        return member.replace(uid=unset, gid=unset, uname=unset, gname=unset, deep=False)

    return layer_filter


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as source:
        for info in source.infolist():
            target = dest.joinpath(*info.filename.rstrip("/").split("/"))
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                target.symlink_to(source.read(info).decode("utf-8"))
                continue
            with source.open(info) as content, target.open("wb") as out:
                shutil.copyfileobj(content, out)
            target.chmod(0o755 if mode & 0o100 else 0o644)


def _move_into_place(extracted: Path, target_dir: Path, replace: bool) -> None:
    """Rename the extracted folder to ``target_dir`` (moving an old one aside first)."""
    if not target_dir.exists():
        extracted.rename(target_dir)
        return
    if not replace:
        raise DeployError(f"{target_dir} appeared while extracting; not replaced")
    retired = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.{_RETIRED}", dir=target_dir.parent))
    target_dir.rename(retired / target_dir.name)
    extracted.rename(target_dir)
    shutil.rmtree(retired, ignore_errors=True)


def _checked_members(
    archive: Path, expected_root: str | None, allow_peer_links: bool
) -> tuple[str, list[ArchiveMember]]:
    try:
        members = read_archive_members(archive)
        root = check_members(
            members, expected_root=expected_root, allow_peer_links=allow_peer_links
        )
        check_expansion(members, archive.stat().st_size)
        return root, members
    except MemberRejected as exc:
        raise DeployError(f"{archive}: refusing to extract {exc}") from None
    except DeployError:
        raise
    except ARCHIVE_READ_ERRORS as exc:
        raise DeployError(f"{archive}: cannot read archive: {exc}") from None


def safe_extract(
    archive: Path,
    target_dir: Path,
    *,
    expected_root: str | None,
    allow_peer_links: bool = False,
    replace: bool = False,
    size: int | None = None,
    sha256: str | None = None,
    external: bool = True,
) -> Path:
    """Extract the layer archive's root folder as ``target_dir``; returns ``target_dir``.

    Every member is checked (see the module docs) before it is written; any rejection raises
    DeployError naming the archive and the member. ``allow_peer_links`` accepts symlinks to the
    layer's peers (``../<other layer>/...``), never beyond ``target_dir.parent``. An existing
    ``target_dir`` is an error unless ``replace`` is true. With ``size`` and ``sha256``, the
    bytes read must be the published ones. A tar archive is read once, hashed and decompressed
    as it is extracted (`venvstacks.deploy.stream`; ``external`` allows the system
    decompressors); a zip archive is verified, listed and checked first. Extraction happens in a
    temporary sibling that is renamed into place only when everything passed, so ``target_dir``
    is never left half-written.
    """
    if target_dir.exists() and not replace:
        raise DeployError(f"cannot extract {archive}: {target_dir} already exists")
    fmt = _format(archive)
    if fmt is ArchiveFormat.ZIP:
        if sha256 is not None:
            verify_archive(archive, size if size is not None else archive.stat().st_size, sha256)
        root, members = _checked_members(archive, expected_root, allow_peer_links)
    layer = f"layer {target_dir.name}: "
    new_parent = not target_dir.parent.exists()
    scratch = _scratch(archive, target_dir)
    try:
        if fmt is ArchiveFormat.ZIP:
            check_free_space(members, target_dir.parent)
            _extract_zip(archive, scratch)
        else:
            root, digest = _stream_tar(
                archive, fmt, scratch, allow_peer_links, expected_root, external
            )
            _check_digest(archive, digest, size, sha256)
        crash_point("deploy-unpacked")
        _move_into_place(scratch / root, target_dir, replace)
    except _NoRoom as exc:
        raise DeployError(f"{layer}{exc.reason}") from None
    except MemberRejected as exc:
        raise DeployError(f"{archive}: refusing to extract {exc}") from None
    except DeployError:
        raise
    except OSError as exc:
        if exc.errno is None:  # a damaged compressed stream, not the file system
            raise DeployError(f"{archive}: cannot read archive: {exc}") from None
        raise DeployError(
            f"{layer}cannot extract {archive.name} into {target_dir}: {describe_os_error(exc)}"
            f" ({_mb(_free(target_dir.parent))} free)"
        ) from None
    except ARCHIVE_READ_ERRORS as exc:
        raise DeployError(f"{archive}: cannot read archive: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if new_parent and not target_dir.exists():
            with contextlib.suppress(OSError):
                target_dir.parent.rmdir()  # made for this extraction, which failed
    return target_dir


def _format(archive: Path) -> ArchiveFormat:
    try:
        return detect_format(archive)
    except OSError as exc:
        raise DeployError(f"cannot read {archive}: {describe_os_error(exc)}") from None


def _scratch(archive: Path, target_dir: Path) -> Path:
    try:
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(prefix=f".{target_dir.name}.{_EXTRACTING}", dir=target_dir.parent)
        )
    except OSError as exc:
        raise DeployError(
            f"layer {target_dir.name}: cannot extract into {target_dir.parent}: "
            f"{describe_os_error(exc)}"
        ) from None


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _stream_tar(
    archive: Path,
    fmt: ArchiveFormat,
    scratch: Path,
    allow_peer_links: bool,
    expected_root: str | None,
    external: bool,
) -> tuple[str, Digest]:
    checker = StreamChecker(
        expected_root=expected_root,
        allow_peer_links=allow_peer_links,
        archive_size=archive.stat().st_size,
        folder=scratch.parent,
    )
    digest = stream_extract(
        archive, fmt, scratch, checker, _tar_filter(allow_peer_links), external=external
    )
    checker.finish()
    return checker.root or "", digest


def _check_digest(archive: Path, digest: Digest, size: int | None, sha256: str | None) -> None:
    """The bytes extracted must be the published ones (the file may have changed since)."""
    if size is not None and digest.size != size:
        raise DeployError(f"{archive}: size {digest.size} bytes, expected {size}")
    actual = digest.sha256.hexdigest()
    expected = sha256.lower().removeprefix("sha256:") if sha256 is not None else actual
    if actual != expected:
        raise DeployError(f"{archive}: sha256 {actual}, expected {expected}")


def sweep_scratch(target_dir: Path, layers: Sequence[str]) -> list[Path]:
    """Remove extraction scratch and retired folders that killed deploys left in ``target_dir``.

    Call only while holding the deployment's lock. Only hidden folders named after a layer
    (``.<install target>.<anything>``) or made by `safe_extract` (``.<name>.extracting-*``,
    ``.<name>.retired-*``) are removed; nothing else in the folder is touched.
    """
    removed: list[Path] = []
    prefixes = tuple(f".{name}." for name in layers)
    try:
        entries = list(target_dir.iterdir())
    except OSError:
        return removed
    for path in entries:
        ours = path.name.startswith(prefixes) or (
            path.name.startswith(".")
            and (f".{_EXTRACTING}" in path.name or f".{_RETIRED}" in path.name)
        )
        if ours and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _max_expansion() -> int:
    value = os.environ.get(MAX_EXPANSION_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_EXPANSION


def check_expansion(members: Sequence[ArchiveMember], archive_size: int) -> None:
    """Refuse an archive whose declared content is far larger than any real layer's would be.

    The declared sizes bound what extraction writes; a sum above ``max(EXPANSION_FLOOR,
    ratio x archive size)`` (ratio ``$VENVSTACKS_DEPLOY_MAX_EXPANSION``, default 50) is taken
    for a decompression bomb (such as a 1 GB file of zeros in a few KB).
    """
    total = sum(m.size for m in members if m.kind == "file")
    ratio = _max_expansion()
    limit = max(EXPANSION_FLOOR, ratio * archive_size)
    if total > limit:
        biggest = max((m for m in members if m.kind == "file"), key=lambda m: m.size)
        raise MemberRejected(
            biggest.name,
            f"the archive declares {_mb(total)} of files from {_mb(archive_size)} "
            f"(over {ratio} times its size; raise ${MAX_EXPANSION_ENV} if this is real)",
        )


def check_free_space(members: Sequence[ArchiveMember], folder: Path) -> None:
    """Refuse to start an extraction the file system cannot hold (declared sizes + blocks)."""
    needed = sum(m.size + 4096 for m in members)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise MemberRejected(
            "", f"extracting needs about {_mb(needed)}, only {_mb(free)} free in {folder}"
        )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"


def verify_archive(path: Path, size: int, sha256: str) -> None:
    """Check an archive against its published size and SHA-256 (hex, ``sha256:`` optional)."""
    try:
        actual_size = path.stat().st_size
    except OSError as exc:
        raise DeployError(f"cannot verify {path}: {exc}") from None
    if actual_size != size:
        raise DeployError(f"{path}: size {actual_size} bytes, expected {size}")
    with path.open("rb") as stream:
        actual = hashlib.file_digest(stream, "sha256").hexdigest()
    expected = sha256.lower().removeprefix("sha256:")
    if actual != expected:
        raise DeployError(f"{path}: sha256 {actual}, expected {expected}")
