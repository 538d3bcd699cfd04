"""Files that are written in place of others: locked partial files, their sweeping, OS errors.

A partial file (``.<name>.XXXX.partial``) is locked (``flock``) by its writer for as long as it
is open, so a later run can tell a live writer's file from one a killed run left behind and
remove only the latter.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["PARTIAL_SUFFIX", "describe_os_error", "lock_file", "partial_file", "sweep_partials"]


def lock_file(handle: IO[Any]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it.

    Held until the file is closed (or the process dies); used to tell a live writer's partial
    archive from one a killed run left behind.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


PARTIAL_SUFFIX = ".partial"


@contextmanager
def partial_file(dest: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new, locked ``.<dest name>.XXXX.partial`` beside ``dest``, removed on exit unless renamed.

    The lock lasts until exit, so a sweeper (see `sweep_partials`) never removes a live one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{dest.name}.", suffix=PARTIAL_SUFFIX, dir=dest.parent
        )
        sink = os.fdopen(fd, "w+b")
        lock_file(sink)
        try:  # a sweeper may have removed it between creation and locking: start again
            if Path(temp_name).stat().st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        sink.close()
    temp_path = Path(temp_name)
    try:
        yield temp_path, sink
    finally:
        sink.close()
        temp_path.unlink(missing_ok=True)


def sweep_partials(folder: Path) -> list[Path]:
    """Remove ``*.partial`` files in ``folder`` that no live writer holds (killed runs' debris)."""
    removed: list[Path] = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    except OSError:
        return removed
    for path in candidates:
        try:
            with path.open("rb") as handle:
                if not lock_file(handle):
                    continue  # being written right now
                if path.stat().st_ino != os.fstat(handle.fileno()).st_ino:
                    continue
                path.unlink()
                removed.append(path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            continue
    return removed


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line: what went wrong and on which path (``No space left on device``)."""
    reason = exc.strerror or str(exc)
    where = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{reason}: {' -> '.join(where)}" if where else reason
