"""Runtime interpreters: resolving ``cpython@X.Y[.Z]`` to a verified archive from the first source with one.

Resolution order (`find_runtime`):

1. runtime archive folders (CLI option, ``VENVSTACKS_RUNTIME_ARCHIVES``, config), holding
   python-build-standalone ``install_only`` archives, each optionally with ``<archive>.sha256``;
2. a download with pbs-installer, verified against the checksum pbs-installer ships
   (``PBS_INSTALLER_BASE_URL`` or ``base_url=`` points it at a mirror);
3. only with ``fallback="host"``: a matching host interpreter, packed once into the cache
   by `venvstacks.runtimes.host` (relocatable, but not portable across distributions).

The sources live in their own modules: `venvstacks.runtimes.archives` (folders),
`venvstacks.runtimes.download`, `venvstacks.runtimes.host`; `venvstacks.runtimes.install`
unpacks the chosen archive.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform, build_platform
from venvstacks.runtimes.archives import scan_archive_dirs, source_from_archive
from venvstacks.runtimes.request import (
    BASE_URL_ENV,
    PBS_TARGETS,
    Fallback,
    RuntimeRequest,
    RuntimeSource,
    parse_implementation,
    select_archive,
)

__all__ = ["fallback_notice", "find_runtime"]

_log = logging.getLogger(__name__)


def _message(exc: RuntimeProvisionError) -> str:
    """The message without any layer prefix (the last constructor argument)."""
    return str(exc.args[-1]) if exc.args else str(exc)


def _check_arch(request: RuntimeRequest, platform: TargetPlatform) -> None:
    wanted = PBS_TARGETS[platform][2]
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
        return source_from_archive(chosen)
    # Imported here: downloading (urllib, ssl) and packing are rare; finding an archive is not.
    from venvstacks.runtimes.download import OFFLINE_HINT, DownloadUnavailable, download
    from venvstacks.runtimes.host import host_packed

    url_base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    try:
        return download(request, target, cache_dir, url_base)
    except DownloadUnavailable as exc:
        if archive_dirs:  # the hint to pass --runtime-archives would be wrong: they were passed
            searched = ", ".join(str(d) for d in archive_dirs)
            exc = DownloadUnavailable(
                None,
                _message(exc).replace(
                    OFFLINE_HINT,
                    f"no archive for {request} ({target}) in {searched}; add one there, e.g. "
                    "with `venvstacks runtime pack`",
                ),
                exc.reason,
            )
        if fallback != "host":
            raise exc from None
        download_failure, reason = _message(exc), exc.reason
    _log.info("%s; trying a host interpreter", reason)
    try:
        source = host_packed(request, target, cache_dir)
    except RuntimeProvisionError as exc:
        msg = f"{download_failure}; host fallback failed too: {_message(exc)}"
        raise RuntimeProvisionError(None, msg) from None
    return dataclasses.replace(source, notice=fallback_notice(source, archive_dirs, reason))


def fallback_notice(source: RuntimeSource, archive_dirs: Sequence[Path], reason: str) -> str:
    """What a build that fell back to a host interpreter says once: what, why, and the way out.

    It is a notice for a build that goes on, so it explains rather than asks for a fix.
    """
    prefix = source.description.removeprefix("host-packed from ")
    if archive_dirs:
        where = f"no archive matched in {', '.join(str(d) for d in archive_dirs)}"
    else:
        where = "no runtime archive folder was given"
    return (
        f"using this machine's CPython {source.version} ({prefix}), packed into a relocatable "
        f'runtime, since runtime-fallback is "host": {where} and {reason}. It needs this Linux '
        "distribution's system libraries, so layers built on it are not portable to other "
        "distributions. For a portable python-build-standalone runtime instead, put its archive "
        "in a folder given with --runtime-archives DIR, or build where the download works"
    )
