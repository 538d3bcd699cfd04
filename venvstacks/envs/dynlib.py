"""Dynamic library linking (Linux/macOS) and portability clean-up of a built layer environment.

Pure planning functions (names, patterns, RECORD text, symlink targets) are kept apart from the
few functions that touch the filesystem (`find_shared_libraries`, `apply_dynlib_links`,
`clean_scripts_dir`, `make_symlinks_portable`).

Shared libraries shipped inside wheels (files ending in ``.so`` / ``.dylib`` that are not Python
extension modules) are symlinked into ``share/venv/dynlib/`` so that layers depending on this one
can put that single directory on ``LD_LIBRARY_PATH`` / ``DYLD_LIBRARY_PATH``.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from venvstacks.errors import BuildError

__all__ = [
    "DYNLIB_DIR",
    "SymlinkFix",
    "apply_dynlib_links",
    "clean_scripts_dir",
    "compile_exclude_patterns",
    "describe_ambiguities",
    "extension_module_suffixes",
    "filter_record_text",
    "find_shared_libraries",
    "is_kept_script",
    "is_shared_library",
    "make_symlinks_portable",
    "plan_dynlib_links",
    "plan_symlink_fix",
    "translate_glob",
]

_LOG = logging.getLogger(__name__)

DYNLIB_DIR = Path("share", "venv", "dynlib")
"""Where a layer's shared library symlinks live, relative to the layer's environment."""

_SHARED_LIBRARY_SUFFIXES = frozenset({".so", ".dylib"})
_VERSION_TAG = re.compile(r"(?<=cpython-)\d+")
_AMBIGUITY_HINT = "Set `dynlib_exclude` in the layer definition to resolve this ambiguity."


def _absolute(path: Path) -> Path:
    """Absolute and normalised, but lexical: unlike `Path.resolve`, symlinks are kept."""
    return Path(os.path.normpath(path.absolute()))


# --- finding shared libraries (pure helpers, then the directory scan) --------------------------


def extension_module_suffixes(
    py_version: str, host_suffixes: Sequence[str] | None = None
) -> frozenset[str]:
    """Return the extension module suffixes of a layer running Python ``py_version`` (X.Y[.Z]).

    The host's suffixes are rewritten for the layer's version (``.cpython-312-...`` becomes
    ``.cpython-311-...`` for a 3.11 layer); the bare ``.so`` suffix is dropped because plain
    shared libraries use it too.

    ``host_suffixes`` defaults to this interpreter's `importlib.machinery.EXTENSION_SUFFIXES`.
    """
    major, minor = py_version.split(".")[:2]
    tag = f"{major}{minor}"
    suffixes = EXTENSION_SUFFIXES if host_suffixes is None else host_suffixes
    return frozenset(_VERSION_TAG.sub(tag, s) for s in suffixes if s != ".so")


def is_shared_library(name: str, extension_suffixes: frozenset[str]) -> bool:
    """Whether a file name denotes a shared library rather than a Python extension module.

    The name's combined suffixes (``.cpython-311-x86_64-linux-gnu.so``) must not equal an
    extension module suffix, and its last suffix must be ``.so`` or ``.dylib``.
    """
    path = Path(name)
    if path.suffix not in _SHARED_LIBRARY_SUFFIXES:
        return False
    return "".join(path.suffixes) not in extension_suffixes


def _class_end(segment: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``segment[start]``, or -1."""
    end = start + 1
    if end < len(segment) and segment[end] == "!":
        end += 1
    if end < len(segment) and segment[end] == "]":
        end += 1
    return segment.find("]", end)


def _range_chunks(body: str) -> list[str]:
    """Split a class body at its range hyphens, dropping empty ranges such as ``z-a``."""
    chunks: list[str] = []
    first = 0
    hyphen = body.find("-", 2 if body.startswith("!") else 1)
    while hyphen >= 0:
        chunks.append(body[first:hyphen])
        first = hyphen + 1
        # The character after a range hyphen is the range's end, never a new range's start.
        hyphen = body.find("-", hyphen + 3)
    if body[first:]:
        chunks.append(body[first:])
    else:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    return chunks


def _class_regex(body: str) -> str:
    """Regex for the body of a ``[...]`` glob class, following `fnmatch` exactly."""
    if "-" not in body:
        escaped = body.replace("\\", "\\\\")
    else:
        escaped = "-".join(c.replace("\\", "\\\\").replace("-", "\\-") for c in _range_chunks(body))
    escaped = re.sub(r"([&~|])", r"\\\1", escaped)
    if not escaped:
        return "(?!)"  # an empty range never matches
    if escaped == "!":
        return "."  # a negated empty range matches anything
    if escaped.startswith("!"):
        return f"[^{escaped[1:]}]"
    if escaped.startswith(("^", "[")):
        return f"[\\{escaped}]"
    return f"[{escaped}]"


def _translate_segment(segment: str) -> str:
    """Translate one path segment's wildcards the way `fnmatch` does, never crossing ``/``."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        i += 1
        if char == "*":
            if not out or out[-1] != "[^/]*":
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := _class_end(segment, i - 1)) >= 0:
            out.append(_class_regex(segment[i:end]))
            i = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def translate_glob(pattern: str) -> str:
    """Translate a glob into a regex, like Python 3.13's `glob.translate`.

    The result is equivalent to ``glob.translate(pattern, recursive=True,
    include_hidden=True, seps="/")``, which does not exist on Python 3.11 and 3.12.
    """
    parts = pattern.split("/")
    last = len(parts) - 1
    out: list[str] = []
    for idx, part in enumerate(parts):
        if part == "*":
            out.append("[^/]+/" if idx < last else "[^/]+")
        elif part == "**":
            if idx == last:
                out.append(".*")
            elif parts[idx + 1] != "**":
                out.append("(?:.+/)?")
        else:
            out.append(_translate_segment(part))
            if idx < last:
                out.append("/")
    return rf"(?s:{''.join(out)})\Z"


def compile_exclude_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile ``dynlib_exclude`` globs; each one matches the *end* of an absolute POSIX path."""
    return [re.compile(translate_glob("/" + pattern)) for pattern in patterns]


def _walk_files(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath, name)


def find_shared_libraries(
    site_packages: Path, *, py_version: str, exclude_patterns: Sequence[str]
) -> list[Path]:
    """Return the shared libraries (not extension modules) installed below ``site_packages``.

    Args:
        site_packages: the layer's site-packages directory.
        py_version: the layer's Python version, ``X.Y`` or ``X.Y.Z``.
        exclude_patterns: the layer's ``dynlib_exclude`` globs.

    Returns:
        Absolute paths, sorted.
    """
    extension_suffixes = extension_module_suffixes(py_version)
    excludes = compile_exclude_patterns(exclude_patterns)
    found = []
    for path in _walk_files(_absolute(site_packages)):
        if not is_shared_library(path.name, extension_suffixes):
            continue
        if any(regex.search(path.as_posix()) for regex in excludes):
            continue
        found.append(path)
    return sorted(found)


# --- dynlib symlinks ---------------------------------------------------------------------------


def describe_ambiguities(clashes: Mapping[str, Sequence[Path]]) -> str:
    """The error text for link names claimed by more than one library (name -> libraries)."""
    lines = ["Ambiguous dynamic library link targets:"]
    for name, paths in sorted(clashes.items()):
        targets = ", ".join(str(p) for p in sorted(paths))
        lines.append(f"  {(DYNLIB_DIR / name).as_posix()} => [{targets}]")
    lines.append(_AMBIGUITY_HINT)
    return "\n".join(lines)


def plan_dynlib_links(libs: Iterable[Path], *, layer: str | None = None) -> dict[str, Path]:
    """Map each link name in ``share/venv/dynlib/`` to the library it points at.

    Raises:
        BuildError: two different libraries share a file name; every clash is listed.
    """
    candidates: dict[str, set[Path]] = {}
    for lib in libs:
        candidates.setdefault(lib.name, set()).add(lib)
    clashes = {name: sorted(paths) for name, paths in candidates.items() if len(paths) > 1}
    if clashes:
        raise BuildError(layer, describe_ambiguities(clashes))
    return {name: paths.pop() for name, paths in sorted(candidates.items())}


def apply_dynlib_links(env_dir: Path, plan: Mapping[str, Path]) -> Path:
    """Empty ``share/venv/dynlib/`` in ``env_dir`` and fill it with relative symlinks per ``plan``.

    Returns:
        The dynlib directory.
    """
    dynlib_dir = env_dir / DYNLIB_DIR
    if dynlib_dir.is_symlink() or dynlib_dir.is_file():
        dynlib_dir.unlink()
    elif dynlib_dir.exists():
        shutil.rmtree(dynlib_dir)
    dynlib_dir.mkdir(parents=True)
    for name, target in plan.items():
        relative = os.path.relpath(_absolute(target), _absolute(dynlib_dir))
        (dynlib_dir / name).symlink_to(relative)
    _LOG.debug("Linked %d dynamic libraries into %s", len(plan), dynlib_dir)
    return dynlib_dir


# --- scripts directory clean-up ----------------------------------------------------------------


def is_kept_script(name: str) -> bool:
    """Only ``python*`` entries (any case) survive in a deployed scripts directory."""
    return name.lower().startswith("python")


def filter_record_text(text: str, site_dir: str, removed: Iterable[str]) -> str | None:
    """Drop RECORD rows naming one of the ``removed`` absolute paths.

    Args:
        text: RECORD content.
        site_dir: absolute directory the RECORD paths are relative to (the site-packages dir).
        removed: absolute, normalised paths that were deleted.

    Returns:
        The new content (kept rows unchanged, LF line endings), or ``None`` if nothing matched.
    """
    gone = {os.path.normpath(p) for p in removed}
    kept: list[str] = []
    dropped = False
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    for raw_line in lines:
        # Split on LF only: str.splitlines() would also break at characters legal in paths.
        line = raw_line.removesuffix("\r")
        row = next(csv.reader([line]), [])
        if row and os.path.normpath(Path(site_dir, row[0])) in gone:
            dropped = True
            continue
        kept.append(line)
    if not dropped:
        return None
    return "".join(line + "\n" for line in kept)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _record_files(env_dir: Path) -> Iterator[Path]:
    for pattern in ("lib/python*/site-packages", "lib/site-packages", "Lib/site-packages"):
        for site_dir in sorted(env_dir.glob(pattern)):
            yield from sorted(site_dir.glob("*.dist-info/RECORD"))


def clean_scripts_dir(env_dir: Path, *, scripts_dir: str = "bin") -> list[Path]:
    """Delete everything but ``python*`` files from the scripts dir, and fix up RECORD files.

    Entry-point and activation scripts hold absolute paths and are not shipped in layers.

    Args:
        env_dir: the layer's environment.
        scripts_dir: ``bin`` (POSIX) or ``Scripts`` (Windows).

    Returns:
        The deleted paths, sorted.
    """
    bin_dir = env_dir / scripts_dir
    if not bin_dir.is_dir():
        return []
    doomed = sorted(
        entry
        for entry in bin_dir.iterdir()
        if (entry.is_dir() and not entry.is_symlink()) or not is_kept_script(entry.name)
    )
    for entry in doomed:
        _remove_path(entry)
    if doomed:
        removed = [str(_absolute(p)) for p in doomed]
        for record in _record_files(env_dir):
            site_dir = str(_absolute(record.parent.parent))
            rewritten = filter_record_text(record.read_text("utf-8"), site_dir, removed)
            if rewritten is not None:
                # Replaced, not written through: RECORD may be a hard link shared with the
                # provisioned runtime or the layer cache.
                fresh = record.with_name(record.name + ".venvstacks-tmp")
                fresh.write_bytes(rewritten.encode("utf-8"))
                fresh.replace(record)
    return doomed


# --- symlink portability -----------------------------------------------------------------------


@dataclass(frozen=True)
class SymlinkFix:
    """How one symlink gets fixed: relinked to ``new_target``, or materialised if ``None``."""

    link: Path
    new_target: str | None


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def plan_symlink_fix(
    link: Path, raw_target: str, *, link_dir_real: str, build_dir: str, build_dir_real: str
) -> SymlinkFix | None:
    """Decide what to do with one symlink. Pure.

    Paths are compared twice, once as spelled (lexically) and once fully resolved, because a
    venv may record its interpreter by its real path while the build dir was given via a
    symlinked path (``/tmp`` vs ``/private/tmp`` on macOS), or the other way round.

    Args:
        link: the symlink's absolute path.
        raw_target: what the link stores (`os.readlink`).
        link_dir_real: the real path of the directory holding the link.
        build_dir: the build directory, absolute and normalised, as spelled.
        build_dir_real: the build directory's real path.

    Returns:
        ``None`` for a relative link staying inside the build dir; a relinking fix for an
        absolute link into the build dir; a materialising fix for a link leaving it.
    """
    spellings = ((str(_absolute(link.parent)), build_dir), (link_dir_real, build_dir_real))
    for link_dir, root in spellings:
        target = os.path.normpath(Path(link_dir, raw_target))
        if _is_within(target, root):
            if not Path(raw_target).is_absolute():
                return None
            return SymlinkFix(link, os.path.relpath(target, link_dir))
    return SymlinkFix(link, None)


def _symlinks(env_dir: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(env_dir):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            if path.is_symlink():
                yield path


def _materialise(link: Path, *, layer: str | None) -> None:
    resolved = link.resolve()
    if not resolved.exists():
        raise BuildError(layer, f"symlink {link} points outside the build at missing {resolved}")
    staging = link.with_name(link.name + ".venvstacks-tmp")
    if staging.exists() or staging.is_symlink():
        _remove_path(staging)  # left behind by an interrupted earlier build
    if resolved.is_dir():
        shutil.copytree(resolved, staging, symlinks=False)
    else:
        try:
            os.link(resolved, staging)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copy2(resolved, staging)
    link.unlink()
    staging.rename(link)


def make_symlinks_portable(
    env_dir: Path, build_dir: Path, *, layer: str | None = None
) -> list[SymlinkFix]:
    """Make every symlink in ``env_dir`` survive relocation of the build directory.

    Absolute links into ``build_dir`` become relative; links leaving ``build_dir`` are replaced
    by hard links to (or, across devices, copies of) their resolved targets.

    Returns:
        The fixes applied.
    """
    build_spelled, build_real = str(_absolute(build_dir)), os.path.realpath(build_dir)
    fixes = []
    for link in list(_symlinks(_absolute(env_dir))):
        fix = plan_symlink_fix(
            link,
            str(link.readlink()),
            link_dir_real=os.path.realpath(link.parent),
            build_dir=build_spelled,
            build_dir_real=build_real,
        )
        if fix is None:
            continue
        if fix.new_target is None:
            _materialise(link, layer=layer)
        else:
            link.unlink()
            link.symlink_to(fix.new_target)
        fixes.append(fix)
    return fixes
