"""Does a base image provide what a stack's ELF files link against? Checked without running.

The runtime's interpreter (and everything it loads through its own RUNPATH, such as
libpython) must find every DT_NEEDED library in the image, and its program interpreter (the
dynamic loader) must exist: otherwise the image cannot start, which is an error. Extension
modules (and the shared libraries they load from the layers) whose libraries are missing only
fail when imported, so they are reported as warnings naming the module and the library.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from venvstacks.image.elf import ElfError, ElfInfo, read_elf_file
from venvstacks.image.rootfs import RootFs

__all__ = ["LibraryCheck", "Missing", "check_libraries", "module_name"]

_DYNLIB = "share/venv/dynlib"


@dataclass(frozen=True)
class Missing:
    """A library one ELF file needs (directly or through `via`) that nothing provides."""

    library: str
    via: tuple[str, ...] = ()

    def describe(self) -> str:
        chain = " -> ".join(posixpath.basename(v) for v in self.via)
        return f"{self.library} (needed by {chain})" if chain else self.library


@dataclass
class LibraryCheck:
    """The outcome: problems that refuse the image, and warnings about extension modules."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Resolver:
    def __init__(self, fs: RootFs, extra_dirs: Sequence[str], bits: int) -> None:
        self.fs = fs
        self.extra_dirs = list(extra_dirs)
        self.system_dirs = fs.loader_dirs(bits)
        self._elf: dict[str, ElfInfo | None] = {}

    def elf(self, path: str) -> ElfInfo | None:
        if path not in self._elf:
            host = self.fs.host_path(path)
            try:
                self._elf[path] = read_elf_file(host) if host is not None else None
            except (ElfError, OSError):
                self._elf[path] = None
        return self._elf[path]

    def _expand(self, folder: str, origin: str, bits: int) -> str:
        folder = folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        lib = "lib64" if bits == 64 else "lib"
        return folder.replace("${LIB}", lib).replace("$LIB", lib)

    def search_dirs(self, path: str, info: ElfInfo) -> list[str]:
        origin = posixpath.dirname(self.fs.resolve(path) or path)
        own = [self._expand(d, origin, info.bits) for d in info.search_path]
        if info.runpath:  # RUNPATH is searched after LD_LIBRARY_PATH, RPATH before it
            return [*self.extra_dirs, *own, *self.system_dirs]
        return [*own, *self.extra_dirs, *self.system_dirs]

    def missing(self, path: str) -> list[Missing]:
        """Everything `path` needs, transitively through the layers' files, that is missing."""
        found: dict[str, Missing] = {}
        seen = {self.fs.resolve(path) or path}
        pending: list[tuple[str, tuple[str, ...]]] = [(path, ())]
        while pending:
            current, via = pending.pop(0)
            info = self.elf(current)
            if info is None:
                continue
            folders = self.search_dirs(current, info)
            for name in info.needed:
                located = self.fs.find_library(name, folders)
                if located is None:
                    found.setdefault(name, Missing(name, via))
                elif located not in seen and self.fs.host_path(located) is not None:
                    seen.add(located)
                    pending.append((located, (*via, located)))
        return list(found.values())


def module_name(path: str) -> str:
    """The import name of an extension module file (`.../site-packages/a/_b.cpython-311-*.so`)."""
    for marker in ("/site-packages/", "/lib-dynload/", "/dist-packages/"):
        if marker in path:
            relative = path.split(marker, 1)[1]
            parts = relative.split("/")
            parts[-1] = parts[-1].split(".", 1)[0]
            return ".".join(parts)
    return posixpath.basename(path)


def _shared_objects(fs: RootFs, folder: str) -> Iterator[str]:
    prefix = folder.rstrip("/") + "/"
    for path in sorted(fs.host_paths):
        if not path.startswith(prefix):
            continue
        name = posixpath.basename(path)
        if name.endswith(".so") or ".so." in name:
            yield path


def _interpreter(fs: RootFs, runtime_dir: str) -> str | None:
    for name in ("bin/python3", "bin/python"):
        resolved = fs.resolve(posixpath.join(runtime_dir, name))
        if resolved is not None and fs.host_path(resolved) is not None:
            return resolved
    return None


def check_libraries(
    fs: RootFs, runtime_dir: str, layer_dirs: Sequence[str], architecture: str | None
) -> LibraryCheck:
    """Check the runtime at `runtime_dir` and the layers at `layer_dirs` against `fs`."""
    result = LibraryCheck()
    python = _interpreter(fs, runtime_dir)
    if python is None:
        result.errors.append(f"no python interpreter in {runtime_dir}/bin")
        return result
    resolver = _Resolver(fs, [], 64)
    info = resolver.elf(python)
    if info is None:
        result.errors.append(f"{python} is not an ELF executable")
        return result
    if architecture and info.machine != architecture:
        result.errors.append(
            f"the base image is for {architecture} but the runtime's {python} is {info.machine}"
        )
        return result
    resolver = _Resolver(fs, [], info.bits)
    if info.interpreter and not fs.exists(info.interpreter):
        result.errors.append(
            f"the base image lacks the dynamic loader {info.interpreter}, "
            f"which the runtime's interpreter {python} needs"
        )
    missing = resolver.missing(python)
    if missing:
        listed = ", ".join(m.describe() for m in missing)
        result.errors.append(
            f"the base image lacks {listed}, which the runtime's interpreter {python} links against"
        )
    layered = _Resolver(
        fs,
        [posixpath.join(d, _DYNLIB) for d in layer_dirs if fs.is_dir(posixpath.join(d, _DYNLIB))],
        info.bits,
    )
    for folder in [runtime_dir, *layer_dirs]:
        for path in _shared_objects(fs, folder):
            if not _is_module(path):
                continue
            gaps = (resolver if folder == runtime_dir else layered).missing(path)
            if gaps:
                result.warnings.append(
                    f"extension module {module_name(path)} ({path}) will not import: the base image "
                    f"lacks {', '.join(m.describe() for m in gaps)}"
                )
    return result


def _is_module(path: str) -> bool:
    return any(
        marker in path for marker in ("/site-packages/", "/lib-dynload/", "/dist-packages/")
    ) and (posixpath.splitext(path)[1] == ".so")
