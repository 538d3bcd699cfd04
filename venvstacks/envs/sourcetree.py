"""Application launch and support modules: source filtering, content hashing and copying.

A launch or support module is a single ``.py`` file or a package directory that lives next to
the stack specification and gets copied into an application layer's site-packages.

Source filtering
    When the spec directory (or one of its ancestors) holds a ``.git`` *directory*, a module
    directory is filtered with ``.gitignore`` semantics: every ``.gitignore`` file in the
    repository tree applies to its own directory and below (deeper files take precedence, the
    last matching line within a file wins, nothing can be re-included below an ignored
    directory), ``.git/info/exclude`` applies with the lowest precedence, and any entry whose
    name starts with ``.git`` is always excluded. Paths outside the repository are excluded
    entirely. Without a repository only ``__pycache__`` directories are excluded.

    The git rules are evaluated in-process with ``pathspec.GitIgnoreSpec`` rather than by
    running ``git check-ignore --stdin``: builds must work on machines without a git binary,
    a subprocess per walk (or a long-lived pipe) is more fragile than a pure function, and the
    result cannot depend on the user's global git configuration (``core.excludesFile``), which
    would make module hashes differ between machines for the same checkout.

Hashing (compatible with venvstacks 0.8.0, quirks included)
    * file: ``"sha256:" + sha256(name + "sha256:" + sha256(content).hex()).hex()``
    * directory: ``"sha256/" + hex`` (a ``/`` separator, not ``:``, exactly as 0.8.0 wrote it)
      of one incremental sha256 over a filtered top-down walk with sorted sub-directories; for
      each directory visited its name is fed in, then for each of its files (sorted) the file
      name followed by ``"sha256:" + sha256(content).hex()``. Empty directories still
      contribute their names. Names are encoded as UTF-8.

Symlinked directories inside a module are followed (the copy holds their content, as the
module's importers would see it), but a directory already visited is never entered twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


__all__ = [
    "GitIgnoreFilter",
    "SourceFilter",
    "copy_module",
    "default_source_filter",
    "exclude_pycache",
    "find_git_root",
    "hash_module",
    "module_name",
    "walk_source_tree",
]

_GIT_PREFIX = ".git"
_PYCACHE = "__pycache__"


class SourceFilter(Protocol):
    """Decides whether a path belongs to a module's source tree (``True`` = include it)."""

    def __call__(self, path: Path, /) -> bool:
        """Return whether ``path`` (a file or a directory) is part of the source tree."""
        ...


def exclude_pycache(path: Path, /) -> bool:
    """The filter used outside git repositories: only ``__pycache__`` directories are left out."""
    return not (path.name == _PYCACHE and path.is_dir())


def _absolute(path: Path) -> Path:
    """Absolute and normalised, but lexical: unlike `Path.resolve`, symlinks are kept."""
    return Path(os.path.normpath(path.absolute()))


def find_git_root(start: Path) -> Path | None:
    """Return the nearest of ``start`` and its ancestors that contains a ``.git`` directory."""
    here = _absolute(start)
    for candidate in (here, *here.parents):
        if (candidate / _GIT_PREFIX).is_dir():
            return candidate
    return None


def _read_ignore_spec(path: Path) -> GitIgnoreSpec | None:
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    from pathspec import GitIgnoreSpec  # only when there are rules (a costly import)

    return GitIgnoreSpec.from_lines(text.splitlines())


class GitIgnoreFilter:
    """A `SourceFilter` applying the ``.gitignore`` rules of one repository (see module docs)."""

    def __init__(self, repo_root: Path) -> None:
        """Filter paths against the ignore files of the repository rooted at ``repo_root``."""
        self.repo_root = _absolute(repo_root)
        self._real_root = Path(os.path.realpath(self.repo_root))
        self._specs: dict[PurePosixPath, GitIgnoreSpec | None] = {}
        self._dir_ignored: dict[PurePosixPath, bool] = {}
        self._info_exclude = _read_ignore_spec(self.repo_root / ".git" / "info" / "exclude")

    def __call__(self, path: Path, /) -> bool:
        """Return ``True`` when git would neither ignore ``path`` nor any directory above it."""
        rel = self._relative(path)
        if rel is None:
            return False
        if not rel.parts:
            return True
        if any(part.startswith(_GIT_PREFIX) for part in rel.parts):
            return False
        if any(self._is_dir_ignored(parent) for parent in reversed(rel.parents[:-1])):
            return False
        return not self._is_ignored(rel, is_dir=path.is_dir())

    def _relative(self, path: Path) -> PurePosixPath | None:
        absolute = _absolute(path)
        for root, candidate in (
            (self.repo_root, absolute),
            (self._real_root, Path(os.path.realpath(absolute.parent)) / absolute.name),
        ):
            try:
                return PurePosixPath(candidate.relative_to(root).as_posix())
            except ValueError:
                continue
        return None

    def _spec_for(self, rel_dir: PurePosixPath) -> GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            fs_dir = self.repo_root.joinpath(*rel_dir.parts)
            self._specs[rel_dir] = _read_ignore_spec(fs_dir / ".gitignore")
        return self._specs[rel_dir]

    def _is_dir_ignored(self, rel_dir: PurePosixPath) -> bool:
        if rel_dir not in self._dir_ignored:
            self._dir_ignored[rel_dir] = self._is_ignored(rel_dir, is_dir=True)
        return self._dir_ignored[rel_dir]

    def _is_ignored(self, rel: PurePosixPath, *, is_dir: bool) -> bool:
        """Apply the ignore files that govern ``rel`` itself, deepest (highest precedence) first."""
        suffix = "/" if is_dir else ""
        for base in rel.parents:  # parent, grandparent, ..., PurePosixPath(".")
            spec = self._spec_for(base)
            if spec is None:
                continue
            verdict = spec.check_file(rel.relative_to(base).as_posix() + suffix).include
            if verdict is not None:
                return verdict
        if self._info_exclude is not None:
            verdict = self._info_exclude.check_file(rel.as_posix() + suffix).include
            if verdict is not None:
                return verdict
        return False


def default_source_filter(spec_dir: Path) -> SourceFilter:
    """Return the filter for modules of the stack specified in ``spec_dir``."""
    repo_root = find_git_root(spec_dir)
    if repo_root is None:
        return exclude_pycache
    return GitIgnoreFilter(repo_root)


def module_name(path: Path) -> str:
    """The importable name of a launch/support module: the stem of its source path."""
    return path.stem


def walk_source_tree(
    top: Path, source_filter: SourceFilter
) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Walk ``top`` top-down like `os.walk`, keeping only included entries, in sorted order.

    Yields ``(directory, sorted sub-directory names, sorted file names)``. Nothing is yielded
    when ``top`` itself is excluded by the filter.
    """
    top = _absolute(top)
    if not source_filter(top):
        return
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        this_dir = Path(dirpath)
        real = os.path.realpath(this_dir)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        # Pruning in place steers os.walk: excluded directories are never entered.
        dirnames[:] = sorted(d for d in dirnames if source_filter(this_dir / d))
        files = sorted(f for f in filenames if source_filter(this_dir / f))
        yield this_dir, dirnames, files


def _content_digest(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _hash_file(path: Path) -> str:
    content_ref = "sha256:" + _content_digest(path)
    digest = hashlib.sha256(path.name.encode() + content_ref.encode())
    return "sha256:" + digest.hexdigest()


def _hash_directory(path: Path, source_filter: SourceFilter) -> str:
    digest = hashlib.sha256()
    for this_dir, _subdirs, files in walk_source_tree(path, source_filter):
        digest.update(this_dir.name.encode())
        for name in files:
            digest.update(name.encode())
            digest.update(("sha256:" + _content_digest(this_dir / name)).encode())
    return "sha256/" + digest.hexdigest()


def hash_module(path: Path, *, source_filter: SourceFilter) -> str:
    """Return the venvstacks 0.8.0 compatible content hash of a launch/support module.

    A file hashes its own name together with its content digest and is never filtered. A
    directory hashes its filtered tree; the result uses the ``sha256/`` prefix, a 0.8.0 quirk
    that is kept so published metadata stays comparable (see the module docstring).
    """
    if path.is_dir():
        return _hash_directory(path, source_filter)
    return _hash_file(path)


def _remove_existing(dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()


def _copy_tree(src: Path, dest: Path, source_filter: SourceFilter) -> None:
    src = _absolute(src)
    copied_dirs = []
    for this_dir, _subdirs, files in walk_source_tree(src, source_filter):
        target_dir = dest / this_dir.relative_to(src)
        target_dir.mkdir(parents=True, exist_ok=True)
        copied_dirs.append(target_dir)
        for name in files:
            shutil.copyfile(this_dir / name, target_dir / name)
    # Writing files bumps the mtime of their directory; touch all of them afterwards so the
    # whole copied tree carries fresh, consistent timestamps (archives clamp them later).
    for target_dir in copied_dirs:
        target_dir.touch()


def copy_module(src: Path, dest_site_packages: Path, *, source_filter: SourceFilter) -> Path:
    """Copy a launch/support module into ``dest_site_packages`` and return the copy's path.

    Only file contents are copied (no permission bits or timestamps). A directory is copied
    through ``source_filter``. Any previous copy at the destination is replaced first, so files
    deleted from the source do not linger across incremental builds (0.8.0 merged into it).
    """
    dest = dest_site_packages / src.name
    _remove_existing(dest)
    if src.is_dir():
        _copy_tree(src, dest, source_filter)
        dest.mkdir(parents=True, exist_ok=True)
    else:
        dest_site_packages.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return dest
