"""A root filesystem's names, kinds and symlinks, built from image layers (whiteouts applied).

Used to check that a base image provides the libraries a runtime needs, without unpacking it:
paths resolve through symlinks as the kernel would (`/lib` -> `usr/lib` on merged-/usr systems),
and libraries are looked up the way glibc's loader does (the file's RUNPATH/RPATH with `$ORIGIN`,
`LD_LIBRARY_PATH`, the folders in `/etc/ld.so.conf`, then the default folders).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["RootFs"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40
_DEFAULT_LIB_DIRS = {64: ("/lib64", "/usr/lib64", "/lib", "/usr/lib"), 32: ("/lib", "/usr/lib")}


def _clean(name: str) -> str:
    """A member or path name as an absolute, normalised POSIX path."""
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath("/" + name.lstrip("/"))


def _is_loader_config(path: str) -> bool:
    return path == "/etc/ld.so.conf" or path.startswith("/etc/ld.so.conf.d/")


@dataclass
class RootFs:
    """Paths of a root filesystem: kind ('dir', 'file', 'symlink') and symlink targets."""

    kinds: dict[str, str] = field(default_factory=lambda: {"/": "dir"})
    links: dict[str, str] = field(default_factory=dict)
    host_paths: dict[str, Path] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    # --- building ---------------------------------------------------------------------------

    def apply_layer(self, tar: tarfile.TarFile) -> None:
        """Apply one layer (a tar stream): whiteouts remove lower content, entries are added."""
        added: list[tuple[str, str, str]] = []
        texts: dict[str, str] = {}
        for member in tar:
            path = _clean(member.name)
            folder, base = posixpath.split(path)
            if base == _OPAQUE:
                self._remove_below(folder)
            elif base.startswith(_WHITEOUT):
                self._remove(posixpath.join(folder, base[len(_WHITEOUT) :]))
            elif member.issym():
                added.append((path, "symlink", member.linkname))
            elif member.isdir():
                added.append((path, "dir", ""))
            else:
                added.append((path, "file", ""))
                if member.isfile() and _is_loader_config(path) and member.size < 1 << 16:
                    content = tar.extractfile(member)
                    if content is not None:
                        texts[path] = content.read().decode("utf-8", "replace")
        for path, kind, target in added:
            self._add(path, kind, target)
        self.texts.update(texts)

    def add_tree(self, mount: PurePosixPath, folder: Path) -> None:
        """Add a host folder's content at `mount` (its files stay readable through host_path)."""
        self._add(str(mount), "dir", "")
        for current, dirs, files in os.walk(folder):
            rel = Path(current).relative_to(folder).as_posix()
            base = posixpath.normpath(posixpath.join(str(mount), rel))
            for name in [*dirs, *files]:
                host = Path(current) / name
                path = posixpath.join(base, name)
                if host.is_symlink():
                    self._add(path, "symlink", host.readlink().as_posix())
                elif host.is_dir():
                    self._add(path, "dir", "")
                else:
                    self._add(path, "file", "")
                    self.host_paths[path] = host

    def _add(self, path: str, kind: str, target: str) -> None:
        parent = posixpath.dirname(path)
        while parent not in self.kinds:
            self.kinds[parent] = "dir"
            parent = posixpath.dirname(parent)
        if self.kinds.get(path) == "dir" and kind != "dir":
            self._remove_below(path)
        self.kinds[path] = kind
        self.texts.pop(path, None)
        if kind == "symlink":
            self.links[path] = target
        else:
            self.links.pop(path, None)

    def _remove(self, path: str) -> None:
        self._remove_below(path)
        self.kinds.pop(path, None)
        self.links.pop(path, None)
        self.host_paths.pop(path, None)
        self.texts.pop(path, None)

    def _remove_below(self, folder: str) -> None:
        prefix = folder.rstrip("/") + "/"
        for name in [n for n in self.kinds if n.startswith(prefix)]:
            self.kinds.pop(name, None)
            self.links.pop(name, None)
            self.host_paths.pop(name, None)
            self.texts.pop(name, None)

    # --- looking up -------------------------------------------------------------------------

    def resolve(self, path: str) -> str | None:
        """The path with every symlink followed, or None when it does not exist."""
        parts = [p for p in _clean(path).split("/") if p]
        current = "/"
        hops = 0
        while parts:
            part = parts.pop(0)
            candidate = (
                posixpath.join(current, part) if part != ".." else posixpath.dirname(current)
            )
            kind = self.kinds.get(candidate)
            if kind is None:
                return None
            if kind == "symlink":
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = self.links[candidate]
                start = "/" if target.startswith("/") else current
                parts = [p for p in posixpath.join(start, target).split("/") if p] + parts
                current = "/"
                continue
            if parts and kind != "dir":
                return None
            current = candidate
        return current

    def exists(self, path: str) -> bool:
        return self.resolve(path) is not None

    def host_path(self, path: str) -> Path | None:
        """Where a file added with add_tree lives on this machine (symlinks followed)."""
        resolved = self.resolve(path)
        return self.host_paths.get(resolved) if resolved is not None else None

    def is_dir(self, path: str) -> bool:
        resolved = self.resolve(path)
        return resolved is not None and self.kinds.get(resolved) == "dir"

    def list_dir(self, path: str) -> list[str]:
        resolved = self.resolve(path)
        if resolved is None or self.kinds.get(resolved) != "dir":
            return []
        prefix = resolved.rstrip("/") + "/"
        return sorted(
            n[len(prefix) :]
            for n in self.kinds
            if n.startswith(prefix) and "/" not in n[len(prefix) :]
        )

    def read_text(self, path: str) -> str | None:
        """Text of a loader config file (the only file content kept from the layers)."""
        resolved = self.resolve(path)
        return self.texts.get(resolved) if resolved is not None else None

    # --- the dynamic loader's search --------------------------------------------------------

    def loader_dirs(self, bits: int) -> list[str]:
        """Library folders from /etc/ld.so.conf (with its includes), then the default folders."""
        found: list[str] = []
        self._read_ld_conf("/etc/ld.so.conf", found, depth=0)
        for folder in _DEFAULT_LIB_DIRS[bits]:
            if folder not in found:
                found.append(folder)
        return found

    def _read_ld_conf(self, path: str, found: list[str], depth: int) -> None:
        text = self.read_text(path)
        if text is None or depth > 8:
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                for pattern in line.split()[1:]:
                    pattern = (
                        pattern
                        if pattern.startswith("/")
                        else posixpath.join(posixpath.dirname(path), pattern)
                    )
                    folder, glob = posixpath.split(pattern)
                    for name in self.list_dir(folder):
                        if fnmatch.fnmatchcase(name, glob):
                            self._read_ld_conf(posixpath.join(folder, name), found, depth + 1)
            elif line.startswith("/") and line not in found:
                found.append(line)

    def find_library(self, name: str, folders: Sequence[str]) -> str | None:
        """The first `folder/name` that exists (a name with a slash is taken as a path)."""
        if "/" in name:
            return self.resolve(name)
        for folder in folders:
            resolved = self.resolve(posixpath.join(folder, name))
            if resolved is not None and self.kinds.get(resolved) == "file":
                return resolved
        return None
