"""Installing a runtime: verifying and unpacking its archive safely, then renaming it into place.

An interrupted install never leaves a target folder that looks complete.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from venvstacks.errors import RuntimeProvisionError
from venvstacks.runtimes.request import RuntimeSource

__all__ = ["install_runtime", "swap_into_place"]

_log = logging.getLogger(__name__)


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
