"""Runtime downloads: python-build-standalone archives found through pbs-installer's bundled index.

Every download is verified against the checksum pbs-installer ships and appears in the cache
only once verified; ``PBS_INSTALLER_BASE_URL`` (or ``base_url=``) points at a mirror.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from pathlib import Path, PurePosixPath
from typing import IO

from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.runtimes.archives import sha256_file
from venvstacks.runtimes.request import PBS_TARGETS, RuntimeRequest, RuntimeSource

__all__ = ["OFFLINE_HINT", "DownloadUnavailable", "download", "download_error"]

_log = logging.getLogger(__name__)

OFFLINE_HINT = "no network? pass --runtime-archives DIR, or make one with `venvstacks runtime pack`"
_DOWNLOAD_TIMEOUT = 60


class DownloadUnavailable(RuntimeProvisionError):
    """No download to be had: no such build, no network, no server (not a checksum problem).

    ``reason`` says why without any advice, for messages that give their own.
    """

    def __init__(self, layer: str | None, message: str, reason: str = "") -> None:
        super().__init__(layer, message)
        self.reason = reason or message


def download_error(request: RuntimeRequest, reason: str) -> DownloadUnavailable:
    """The error for a failed download of ``request``, with the offline hint."""
    message = f"cannot download {request} ({reason}); {OFFLINE_HINT}"
    return DownloadUnavailable(None, message, f"cannot download {request} ({reason})")


def _download_link(
    request: RuntimeRequest, platform: TargetPlatform, base_url: str | None
) -> tuple[str, str, str | None]:
    """``(version, url, sha256)`` from pbs-installer's bundled index."""
    _, pbs_platform, pbs_arch = PBS_TARGETS[platform]
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
        raise DownloadUnavailable(None, msg) from None
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
        raise download_error(request, _failure_reason(exc)) from None
    finally:
        partial.unlink(missing_ok=True)


def download(
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
