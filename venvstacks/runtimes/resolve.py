"""Runtime interpreters: resolving ``cpython@X.Y[.Z]`` to an archive, and installing it.

Resolution order (`find_runtime`):

1. runtime archive folders (CLI option, ``VENVSTACKS_RUNTIME_ARCHIVES``, config), holding
   python-build-standalone ``install_only`` archives, each optionally with ``<archive>.sha256``;
2. a download with pbs-installer, verified against the checksum pbs-installer ships
   (``PBS_INSTALLER_BASE_URL`` or ``base_url=`` points it at a mirror);
3. only with ``fallback="host"``: a matching host interpreter, packed once into the cache
   by `venvstacks.runtimes.pack` (relocatable, but not portable across distributions).

`install_runtime` unpacks the chosen archive next to its target and renames it into place,
so an interrupted install never leaves a target folder that looks complete.

Pure parts (parsing specs and archive names, choosing a version) are separate from the I/O.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from packaging.version import InvalidVersion, Version

from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform, build_platform
from venvstacks.runtimes.pack import pack_runtime, probe_python, sha256_file

__all__ = [
    "ARCHIVE_DIRS_ENV",
    "BASE_URL_ENV",
    "HOST_PACKED_WARNING",
    "ArchiveCandidate",
    "Fallback",
    "Implementation",
    "RuntimeKind",
    "RuntimeRequest",
    "RuntimeSource",
    "archive_dirs_from",
    "find_host_interpreter",
    "find_runtime",
    "install_runtime",
    "parse_archive_name",
    "parse_implementation",
    "platform_triple",
    "pyenv_root",
    "read_checksum_file",
    "scan_archive_dirs",
    "select_archive",
    "sha256_file",
]

_log = logging.getLogger(__name__)

RuntimeKind = Literal["archive", "download", "host-packed"]
Implementation = Literal["cpython", "pypy"]
Fallback = Literal["none", "host"]

ARCHIVE_DIRS_ENV = "VENVSTACKS_RUNTIME_ARCHIVES"
"""Environment variable: runtime archive folders, separated by ``os.pathsep``."""
BASE_URL_ENV = "PBS_INSTALLER_BASE_URL"
"""pbs-installer's own setting for a download mirror; read at call time, not import time."""
HOST_PACKED_WARNING = (
    "host-packed runtime: it needs the host distribution's system libraries "
    "(libssl, libsqlite3, libffi, ...) and is not portable to other Linux distributions"
)
_OFFLINE_HINT = (
    "no network? pass --runtime-archives DIR, or make one with `venvstacks runtime pack`"
)

_IMPLEMENTATIONS: dict[str, Implementation] = {"cpython": "cpython", "pypy": "pypy"}
_ARCH_ALIASES = {"32": "x86", "amd64": "x86_64", "arm64": "aarch64"}
_SPEC_RE = re.compile(
    r"(?P<impl>[a-z]+)@(?P<version>\d+\.\d+(?:\.\d+)?)(?:-(?P<arch>[A-Za-z0-9_]+))?"
)
_ARCHIVE_RE = re.compile(
    r"cpython-(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)(?:\+(?P<tag>[^-]+))?"
    r"-(?P<triple>.+?)-install_only(?:_stripped)?\.tar\.(?:gz|zst|xz)"
)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# TargetPlatform -> (python-build-standalone triple, pbs-installer platform, pbs-installer arch)
_PBS_TARGETS = {
    TargetPlatform.LINUX: ("x86_64-unknown-linux-gnu", "linux", "x86_64"),
    TargetPlatform.LINUX_AARCH64: ("aarch64-unknown-linux-gnu", "linux", "aarch64"),
    TargetPlatform.MACOS_APPLE: ("aarch64-apple-darwin", "macos", "aarch64"),
    TargetPlatform.MACOS_INTEL: ("x86_64-apple-darwin", "macos", "x86_64"),
    TargetPlatform.WINDOWS: ("x86_64-pc-windows-msvc", "windows", "x86_64"),
    TargetPlatform.WINDOWS_ARM64: ("aarch64-pc-windows-msvc", "windows", "aarch64"),
}
_DOWNLOAD_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeRequest:
    """A parsed ``python_implementation``: ``cpython@3.11.7``, ``cpython@3.11``, ``pypy@3.10``.

    Unpacks as ``(implementation, version)``; ``arch`` holds the optional ``-arch`` suffix.
    """

    implementation: Implementation
    version: str
    """``X.Y.Z`` (exactly that release) or ``X.Y`` (the newest available ``X.Y.*``)."""
    arch: str | None = None

    def __iter__(self) -> Iterator[str]:
        return iter((self.implementation, self.version))

    def __str__(self) -> str:
        return f"{self.implementation}@{self.version}"

    @property
    def exact(self) -> bool:
        """True when a full ``X.Y.Z`` release was asked for."""
        return self.version.count(".") == 2


@dataclass(frozen=True)
class RuntimeSource:
    """Where a runtime's interpreter comes from: a verified archive, ready to install."""

    archive: Path
    sha256: str
    kind: RuntimeKind
    description: str
    """For people and layer metadata, e.g. ``host-packed from /root/.pyenv/versions/3.11.7``."""
    version: str
    """The full ``X.Y.Z`` version of the interpreter in the archive."""
    implementation: str = "cpython"
    portable: bool = True
    """False when the runtime depends on the build host's system libraries."""
    warning: str | None = None


@dataclass(frozen=True)
class ArchiveCandidate:
    """A python-build-standalone ``install_only`` archive found in an archive folder."""

    path: Path
    version: str
    triple: str
    build_tag: str | None

    @property
    def host_packed(self) -> bool:
        """True for archives made by ``venvstacks runtime pack`` (build tag ``local``)."""
        return self.build_tag == "local"


# ---------------------------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------------------------


def parse_implementation(spec: str) -> RuntimeRequest:
    """Parse ``impl@X.Y[.Z][-arch]``. Raises ValueError with a user-facing message."""
    match = _SPEC_RE.fullmatch(spec.strip())
    if match is None:
        msg = (
            f"python_implementation must look like 'cpython@3.12' or 'cpython@3.12.7', not {spec!r}"
        )
        raise ValueError(msg)
    if match["impl"] not in _IMPLEMENTATIONS:
        msg = (
            f"python_implementation {spec!r}: implementation must be one of "
            f"{', '.join(_IMPLEMENTATIONS)}"
        )
        raise ValueError(msg)
    arch = match["arch"]
    if arch is not None:
        arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    return RuntimeRequest(_IMPLEMENTATIONS[match["impl"]], match["version"], arch)


def platform_triple(platform: TargetPlatform) -> str:
    """The python-build-standalone target triple for ``platform``."""
    return _PBS_TARGETS[platform][0]


def parse_archive_name(name: str) -> tuple[str, str, str | None] | None:
    """``(version, triple, build tag)`` for an ``install_only`` archive name, else None."""
    match = _ARCHIVE_RE.fullmatch(name)
    if match is None:
        return None
    return match["version"], match["triple"], match["tag"]


def _parsed_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def select_archive(
    request: RuntimeRequest, candidates: Sequence[ArchiveCandidate]
) -> ArchiveCandidate | None:
    """The archive satisfying ``request``: the exact release, or the newest final ``X.Y.*``.

    Among archives of the chosen version, the first in ``candidates`` wins (folder order).
    """
    if request.implementation != "cpython":
        return None
    if request.exact:
        return next((c for c in candidates if c.version == request.version), None)
    best: tuple[Version, ArchiveCandidate] | None = None
    for candidate in candidates:
        version = _parsed_version(candidate.version)
        if version is None or version.is_prerelease:
            continue
        if f"{version.major}.{version.minor}" != request.version:
            continue
        if best is None or version > best[0]:
            best = (version, candidate)
    return None if best is None else best[1]


def archive_dirs_from(
    cli_dirs: Iterable[str | Path] = (),
    env: Mapping[str, str] | None = None,
    config_dirs: Iterable[str | Path] = (),
) -> tuple[Path, ...]:
    """Runtime archive folders: CLI ones first, then ``VENVSTACKS_RUNTIME_ARCHIVES``, then config.

    Duplicates are dropped (first occurrence kept); ``~`` is expanded.
    """
    source = os.environ if env is None else env
    from_env = [part for part in source.get(ARCHIVE_DIRS_ENV, "").split(os.pathsep) if part]
    seen: dict[Path, None] = {}
    for entry in [*cli_dirs, *from_env, *config_dirs]:
        seen.setdefault(Path(entry).expanduser(), None)
    return tuple(seen)


def _parse_checksum_text(text: str) -> str | None:
    token = (text.split() or [""])[0].lower()
    return token if _SHA256_RE.fullmatch(token) else None


class _DownloadUnavailable(RuntimeProvisionError):
    """No download to be had: no such build, no network, no server (not a checksum problem)."""


def _download_error(request: RuntimeRequest, reason: str) -> _DownloadUnavailable:
    return _DownloadUnavailable(None, f"cannot download {request} ({reason}); {_OFFLINE_HINT}")


def _message(exc: RuntimeProvisionError) -> str:
    """The message without any layer prefix (the last constructor argument)."""
    return str(exc.args[-1]) if exc.args else str(exc)


# ---------------------------------------------------------------------------------------------
# (1) Archive folders
# ---------------------------------------------------------------------------------------------


def scan_archive_dirs(
    archive_dirs: Iterable[Path], platform: TargetPlatform | None = None
) -> list[ArchiveCandidate]:
    """Every ``install_only`` archive for ``platform`` in the folders, in folder then name order.

    Missing folders are skipped (with a debug log); ``platform=None`` lists every platform.
    """
    wanted = None if platform is None else platform_triple(platform)
    found = []
    for folder in archive_dirs:
        if not folder.is_dir():
            _log.debug("runtime archive folder %s does not exist", folder)
            continue
        for path in sorted(folder.iterdir()):
            parsed = parse_archive_name(path.name)
            if parsed is None or not path.is_file():
                continue
            version, triple, tag = parsed
            if wanted is None or triple == wanted:
                found.append(ArchiveCandidate(path, version, triple, tag))
    return found


def read_checksum_file(archive: Path) -> str | None:
    """The digest in ``<archive>.sha256`` (``sha256sum`` format), None when there is no such file."""
    checksum_file = archive.with_name(archive.name + ".sha256")
    if not checksum_file.is_file():
        return None
    digest = _parse_checksum_text(checksum_file.read_text(encoding="utf-8", errors="replace"))
    if digest is None:
        raise RuntimeProvisionError(None, f"{checksum_file} does not hold a sha256 digest")
    return digest


def _verified_digest(archive: Path) -> str:
    """The archive's sha256, checked against its ``.sha256`` file when there is one."""
    actual = sha256_file(archive)
    expected = read_checksum_file(archive)
    if expected is None:
        _log.info("no %s.sha256 beside the archive: using it unverified", archive.name)
    elif expected != actual:
        msg = f"{archive} does not match its .sha256 file (expected {expected}, got {actual})"
        raise RuntimeProvisionError(None, msg)
    return actual


def _source_from_archive(candidate: ArchiveCandidate) -> RuntimeSource:
    host_packed = candidate.host_packed
    return RuntimeSource(
        archive=candidate.path,
        sha256=_verified_digest(candidate.path),
        kind="archive",
        description=f"archive {candidate.path}",
        version=candidate.version,
        portable=not host_packed,
        warning=HOST_PACKED_WARNING if host_packed else None,
    )


# ---------------------------------------------------------------------------------------------
# (2) Downloads via pbs-installer's index
# ---------------------------------------------------------------------------------------------


def _download_link(
    request: RuntimeRequest, platform: TargetPlatform, base_url: str | None
) -> tuple[str, str, str | None]:
    """``(version, url, sha256)`` from pbs-installer's bundled index."""
    _, pbs_platform, pbs_arch = _PBS_TARGETS[platform]
    try:
        with warnings.catch_warnings():
            # pbs-installer reads its index with a deprecated importlib.resources call
            warnings.simplefilter("ignore", DeprecationWarning)
            import pbs_installer

            version, (url, checksum) = pbs_installer.get_download_link(
                request.version,
                arch=pbs_arch,
                platform=pbs_platform,
                implementation=request.implementation,
                build_dir=False,
                base_url=base_url,
            )
    except ValueError:
        msg = f"pbs-installer knows no {request} build for {platform}"
        raise _DownloadUnavailable(None, msg) from None
    return f"{version.major}.{version.minor}.{version.micro}", url, checksum


def _failure_reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()  # it holds the response's socket
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _fetch(url: str, stream: IO[bytes]) -> str:
    """Copy ``url`` into ``stream``; return the sha256 of what was received."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            stream.write(block)
    return digest.hexdigest()


def _download_verified(request: RuntimeRequest, url: str, expected: str, target: Path) -> None:
    """Download ``url`` to ``target``, which only appears if its sha256 is ``expected``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        with open(partial, "wb") as stream:
            actual = _fetch(url, stream)
        if actual != expected:
            msg = (
                f"download of {request} from {url} does not match pbs-installer's checksum "
                f"(expected {expected}, got {actual}); it was discarded"
            )
            raise RuntimeProvisionError(None, msg)
        partial.replace(target)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        raise _download_error(request, _failure_reason(exc)) from None
    finally:
        partial.unlink(missing_ok=True)


def _download(
    request: RuntimeRequest, platform: TargetPlatform, cache_dir: Path, base_url: str | None
) -> RuntimeSource:
    version, url, checksum = _download_link(request, platform, base_url)
    if not checksum:
        msg = f"pbs-installer has no checksum for {url}; refusing an unverified download"
        raise RuntimeProvisionError(None, msg)
    name = PurePosixPath(urllib.parse.unquote(url.rsplit("/", 1)[-1])).name
    target = cache_dir / "downloads" / name
    if target.is_file() and sha256_file(target) == checksum:
        _log.info("using the cached download %s", target)
    else:
        _log.info("downloading %s", url)
        _download_verified(request, url, checksum, target)
    return RuntimeSource(
        archive=target,
        sha256=checksum,
        kind="download",
        description=f"downloaded from {url}",
        version=version,
        implementation=request.implementation,
    )


# ---------------------------------------------------------------------------------------------
# (3) Packing a host interpreter
# ---------------------------------------------------------------------------------------------


def pyenv_root(env: Mapping[str, str] | None = None) -> Path | None:
    """pyenv's root folder: ``$PYENV_ROOT``, else ``~/.pyenv`` when it exists."""
    source = os.environ if env is None else env
    if source.get("PYENV_ROOT"):
        return Path(source["PYENV_ROOT"])
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _pyenv_interpreters(major_minor: str) -> list[tuple[str, Path]]:
    """``(version, interpreter)`` for every pyenv CPython ``major_minor.*``."""
    root = pyenv_root()
    if root is None or not (root / "versions").is_dir():
        return []
    found = []
    for folder in sorted((root / "versions").iterdir()):
        if re.fullmatch(rf"{re.escape(major_minor)}\.\d+", folder.name):
            interpreter = folder / "bin" / f"python{major_minor}"
            if interpreter.is_file():
                found.append((folder.name, interpreter))
    return found


def _system_interpreters(major_minor: str) -> list[tuple[str, Path]]:
    """``(version, interpreter)`` for ``pythonX.Y`` on PATH and in the usual system folders."""
    name = f"python{major_minor}"
    paths = [shutil.which(name)]
    paths += [f"/usr/local/bin/{name}", f"/usr/bin/{name}"]
    found = []
    for text in dict.fromkeys(p for p in paths if p):
        try:
            host = probe_python(Path(text))
        except RuntimeProvisionError as exc:
            _log.debug("not packing %s: %s", text, exc)
            continue
        found.append((host.version, Path(text)))
    return found


def find_host_interpreter(version: str) -> Path | None:
    """A host CPython for ``X.Y.Z`` (that release) or ``X.Y`` (the newest): pyenv first."""
    major_minor = ".".join(version.split(".")[:2])
    candidates = _pyenv_interpreters(major_minor)
    if not (version.count(".") == 2 and any(v == version for v, _ in candidates)):
        candidates += _system_interpreters(major_minor)
    if version.count(".") == 2:
        return next((path for v, path in candidates if v == version), None)
    versions = [(Version(v), -index, path) for index, (v, path) in enumerate(candidates)]
    finals = [item for item in versions if not item[0].is_prerelease]
    return max(finals, key=lambda item: item[:2])[2] if finals else None


def _cached_host_pack(
    folder: Path, platform: TargetPlatform, version: str
) -> tuple[Path, str] | None:
    """A complete, intact earlier pack of ``version`` in ``folder``, as (archive, sha256)."""
    for candidate in scan_archive_dirs([folder], platform):
        if candidate.version != version or not candidate.host_packed:
            continue
        expected = read_checksum_file(candidate.path)
        if expected is not None and sha256_file(candidate.path) == expected:
            return candidate.path, expected
        _log.info("ignoring the incomplete or damaged cached pack %s", candidate.path)
    return None


def _host_packed(
    request: RuntimeRequest, platform: TargetPlatform, cache_dir: Path
) -> RuntimeSource:
    if request.implementation != "cpython":
        raise RuntimeProvisionError(
            None, f"only CPython can be packed from the host, not {request}"
        )
    if platform != build_platform():
        msg = f"cannot pack a host Python for {platform}: this machine is {build_platform()}"
        raise RuntimeProvisionError(None, msg)
    interpreter = find_host_interpreter(request.version)
    if interpreter is None:
        raise RuntimeProvisionError(None, f"no host Python matching {request} was found")
    host = probe_python(interpreter)
    folder = cache_dir / "host-packed"
    cached = _cached_host_pack(folder, platform, host.version)
    if cached is not None:
        archive, digest = cached
    else:
        _log.info("packing %s into %s", host.prefix, folder)
        packed = pack_runtime(interpreter, folder)
        archive, digest = packed.archive, packed.sha256
    return RuntimeSource(
        archive=archive,
        sha256=digest,
        kind="host-packed",
        description=f"host-packed from {host.prefix}",
        version=host.version,
        portable=False,
        warning=HOST_PACKED_WARNING,
    )


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def _check_arch(request: RuntimeRequest, platform: TargetPlatform) -> None:
    wanted = _PBS_TARGETS[platform][2]
    if request.arch is not None and request.arch != wanted:
        msg = f"{request}-{request.arch} asks for {request.arch}, but the target is {platform}"
        raise RuntimeProvisionError(None, msg)


def find_runtime(
    impl_spec: str,
    *,
    archive_dirs: Sequence[Path] = (),
    fallback: Fallback = "none",
    cache_dir: Path,
    platform: TargetPlatform | None = None,
    base_url: str | None = None,
) -> RuntimeSource:
    """Resolve ``impl_spec`` (e.g. ``cpython@3.11.7``) to a verified runtime archive.

    ``base_url`` overrides pbs-installer's download host (default: ``$PBS_INSTALLER_BASE_URL``).
    Raises ValueError for a malformed spec, `RuntimeProvisionError` when nothing fits.
    """
    request = parse_implementation(impl_spec)
    target = build_platform() if platform is None else platform
    _check_arch(request, target)
    chosen = select_archive(request, scan_archive_dirs(archive_dirs, target))
    if chosen is not None:
        _log.info("%s: using %s", request, chosen.path)
        return _source_from_archive(chosen)
    url_base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    try:
        return _download(request, target, cache_dir, url_base)
    except _DownloadUnavailable as exc:
        if archive_dirs:  # the hint to pass --runtime-archives would be wrong: they were passed
            searched = ", ".join(str(d) for d in archive_dirs)
            exc = _DownloadUnavailable(
                None,
                _message(exc).replace(
                    _OFFLINE_HINT,
                    f"no archive for {request} ({target}) in {searched}; add one there, e.g. "
                    "with `venvstacks runtime pack`",
                ),
            )
        if fallback != "host":
            raise exc from None
        download_failure = _message(exc)
    _log.warning("%s; trying a host interpreter", download_failure)
    try:
        return _host_packed(request, target, cache_dir)
    except RuntimeProvisionError as exc:
        msg = f"{download_failure}; host fallback failed too: {_message(exc)}"
        raise RuntimeProvisionError(None, msg) from None


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------


def _unpack_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, OSError, lzma.LZMAError]
    if sys.version_info < (3, 14):
        import zstandard

        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _open_tar(stream: IO[bytes], name: str, stack: ExitStack) -> tarfile.TarFile:
    """A streaming reader over ``stream`` for a ``.tar.gz``/``.tar.xz``/``.tar.zst`` archive."""
    if name.endswith((".tar.gz", ".tgz")):
        return stack.enter_context(tarfile.open(fileobj=stream, mode="r|gz"))
    if name.endswith(".tar.xz"):
        return stack.enter_context(tarfile.open(fileobj=stream, mode="r|xz"))
    if name.endswith((".tar.zst", ".tar.zstd")):
        if sys.version_info >= (3, 14):
            return stack.enter_context(tarfile.open(fileobj=stream, mode="r|zst"))
        import zstandard

        reader = stack.enter_context(zstandard.ZstdDecompressor().stream_reader(stream))
        return stack.enter_context(tarfile.open(fileobj=reader, mode="r|"))
    raise RuntimeProvisionError(None, f"{name}: not a .tar.gz, .tar.xz or .tar.zst archive")


def _unpack(source: RuntimeSource, destination: Path) -> None:
    """Check the archive's sha256, then unpack it safely (tarfile ``data`` filter)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        msg = "unpacking runtimes safely needs Python 3.11.4 or newer (tarfile filters)"
        raise RuntimeProvisionError(None, msg)
    name = source.archive.name
    try:
        with ExitStack() as stack:
            stream = stack.enter_context(open(source.archive, "rb"))
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
            if digest != source.sha256:
                msg = (
                    f"{source.archive} failed its checksum (expected {source.sha256}, "
                    f"got {digest}); nothing was installed"
                )
                raise RuntimeProvisionError(None, msg)
            stream.seek(0)
            _open_tar(stream, name, stack).extractall(destination, filter=data_filter)
    except _unpack_errors() as exc:
        raise RuntimeProvisionError(None, f"cannot unpack {source.archive}: {exc}") from None


def _installed_scripts(site_packages: Path, root: Path) -> set[Path]:
    """Scripts in ``root/bin`` that the distributions in ``site_packages`` installed."""
    scripts = set()
    bin_dir = (root / "bin").resolve()
    for record in site_packages.glob("*.dist-info/RECORD"):
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            relative = line.split(",", 1)[0]
            path = Path(os.path.normpath(site_packages / relative))
            if path.parent == bin_dir:
                scripts.add(path)
    return scripts


def _empty_base_site_packages(root: Path) -> None:
    """Remove pip, setuptools, wheel and everything else (but README.txt) from site-packages."""
    for site_packages in [*root.glob("lib/python3*/site-packages"), root / "Lib" / "site-packages"]:
        if not site_packages.is_dir():
            continue
        for script in _installed_scripts(site_packages.resolve(), root):
            script.unlink(missing_ok=True)
        for entry in site_packages.iterdir():
            if entry.name == "README.txt":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def swap_into_place(new_root: Path, target_dir: Path) -> None:
    """Rename ``new_root`` to ``target_dir``, moving an existing one aside first."""
    old: Path | None = None
    if target_dir.exists() or target_dir.is_symlink():
        old = target_dir.with_name(f".{target_dir.name}.old-{uuid.uuid4().hex}")
        target_dir.rename(old)
    try:
        new_root.rename(target_dir)
    except OSError:
        if old is not None:
            old.rename(target_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_runtime(source: RuntimeSource, target_dir: Path) -> Path:
    """Unpack ``source`` as ``target_dir`` (replacing it); return its ``bin/python3``.

    The archive is verified and unpacked into a hidden sibling folder, its base site-packages is
    emptied, and only then is the folder renamed to ``target_dir``: an interrupted install never
    leaves a ``target_dir`` that looks complete. ``bin/python`` is added when the archive lacks it.
    """
    target_dir = target_dir.absolute()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.unpacking-", dir=target_dir.parent))
    try:
        _unpack(source, scratch)
        root = scratch / "python"
        if not (root / "bin" / "python3").exists():
            msg = f"{source.archive} has no python/bin/python3: not an install_only runtime archive"
            raise RuntimeProvisionError(None, msg)
        _empty_base_site_packages(root)
        if not (root / "bin" / "python").exists():
            (root / "bin" / "python").symlink_to("python3")
        swap_into_place(root, target_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _log.info("installed %s (%s) into %s", source.version, source.description, target_dir)
    return target_dir / "bin" / "python3"
