"""File system failures (a full disk, a permission) as one line naming the layer and the path."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from venvstacks.errors import BuildError
from venvstacks.plan.names import EnvName

__all__ = ["describe_os_error", "free_space", "os_errors"]


def describe_os_error(exc: OSError, doing: str) -> str:
    """One line for a failed file operation: what was being done, why, and on which path."""
    where, reason = _path_and_reason(exc)
    if exc.errno == errno.ENOSPC or "No space left on device" in reason:
        if not where:
            return f"out of disk space {doing}"
        return f"out of disk space {doing}: cannot write {where}{free_space(Path(where))}"
    return f"{doing}: {reason}: {where}" if where else f"{doing}: {reason}"


def _path_and_reason(exc: OSError) -> tuple[str, str]:
    """`shutil.copytree` gathers its failures into one `shutil.Error`: take the first."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        for item in exc.args[0]:
            if isinstance(item, tuple) and len(item) == 3:
                return str(item[1]), str(item[2])
    where = "" if exc.filename is None else str(exc.filename)
    if exc.filename2 is not None and exc.errno == errno.ENOSPC:
        where = str(exc.filename2)
    return where, exc.strerror or str(exc)


def free_space(path: Path) -> str:
    """` (N MB free on its file system)` for the nearest existing folder of `path`, or ''."""
    for folder in (path, *path.parents):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        return f" ({free // (1024 * 1024)} MB free on its file system)"
    return ""


@contextlib.contextmanager
def os_errors(env: EnvName, doing: str) -> Iterator[None]:
    """File system failures (a full disk, a permission) as a BuildError naming layer and path."""
    try:
        yield
    except OSError as exc:
        raise BuildError(env, describe_os_error(exc, doing)) from None
