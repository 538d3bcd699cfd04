"""A lock's local wheels at install time: at the path the lock records, else found by filename.

Locks record a local wheel (from ``--local-wheels`` or a ``[tool.uv] find-links`` folder) as
0.8.0 does: a POSIX ``path`` relative to the lock file's folder. That path only leads to the
wheel while the spec folder and the wheel folder keep their relative places, which copying the
spec folder to another depth (or another machine) breaks. The recorded path is tried first;
a wheel not there is looked up by its filename in the local wheel folders of this run, and
used only when its sha256 is the one the lock records. The lock itself is never rewritten
(its hashes, and so lock reuse, do not depend on where the wheels are): uv installs from a
copy naming every local wheel by absolute path.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks.errors import BuildError
from venvstacks.hashing import hash_file
from venvstacks.lock.wheels import wheel_filename

__all__ = ["LocalWheel", "find_local_wheels", "recorded_local_wheels", "write_sync_lock"]


@dataclass(frozen=True)
class LocalWheel:
    """A ``path`` wheel entry of a lock: as recorded, and where it was found (None: nowhere)."""

    recorded: str
    filename: str
    sha256: str | None
    found: Path | None = None
    tried: tuple[str, ...] = ()

    @property
    def elsewhere(self) -> bool:
        """Found, but not at the recorded path (the first path tried)."""
        return self.found is not None and str(self.found) != self.tried[0]


def recorded_local_wheels(packages: Sequence[Mapping[str, Any]]) -> list[LocalWheel]:
    """The ``path`` wheel entries of a lock's packages, in order. Pure."""
    found: list[LocalWheel] = []
    for package in packages:
        for wheel in package.get("wheels", []):
            if "path" in wheel:
                hashes = wheel.get("hashes", {})
                sha256 = hashes.get("sha256") if isinstance(hashes, Mapping) else None
                found.append(
                    LocalWheel(str(wheel["path"]), wheel_filename(wheel), sha256 and str(sha256))
                )
    return found


def _locate(wheel: LocalWheel, lock_dir: Path, folders: Sequence[Path]) -> LocalWheel:
    at = Path(os.path.normpath(lock_dir / wheel.recorded))
    if at.is_file():
        return LocalWheel(wheel.recorded, wheel.filename, wheel.sha256, at, (str(at),))
    tried = [str(at)]
    for folder in dict.fromkeys(folders):
        candidate = folder / wheel.filename
        if not candidate.is_file():
            tried.append(str(candidate))
        elif wheel.sha256 is not None and hash_file(candidate) != f"sha256:{wheel.sha256.lower()}":
            tried.append(f"{candidate} (sha256 differs from the lock)")
        else:
            return LocalWheel(wheel.recorded, wheel.filename, wheel.sha256, candidate, (*tried,))
    return LocalWheel(wheel.recorded, wheel.filename, wheel.sha256, None, tuple(tried))


def find_local_wheels(env: str, lock: Path, folders: Sequence[Path]) -> list[LocalWheel]:
    """Every local wheel `lock` names, found (recorded path first, then `folders` by filename).

    Raises a one-line `BuildError` naming the layer, the lock file and the paths tried for the
    first wheel found nowhere.
    """
    try:
        packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("packages", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(env, f"cannot read {lock}: {exc}") from None
    located = [_locate(w, lock.parent, folders) for w in recorded_local_wheels(packages)]
    missing = [w for w in located if w.found is None]
    if missing:
        raise BuildError(env, missing_wheel_message(env, lock, missing, folders))
    return located


def missing_wheel_message(
    env: str, lock: Path, missing: Sequence[LocalWheel], folders: Sequence[Path]
) -> str:
    """One line: the first missing wheel, the lock naming it, every path tried, what to do."""
    first = missing[0]
    more = f" (and {len(missing) - 1} more local wheel(s))" if len(missing) > 1 else ""
    where = "" if folders else "; no --local-wheels folder was given to look for it by name"
    return (
        f"local wheel {first.filename} not found{more}: {lock} records it as "
        f"{first.recorded!r}; tried {', '.join(first.tried)}{where} (pass --local-wheels DIR "
        f"with the folder holding it, or relock: venvstacks lock --reset-lock {env} "
        "--local-wheels DIR)"
    )


def write_sync_lock(lock: Path, wheels: Sequence[LocalWheel], folder: Path) -> Path:
    """A copy of `lock` in `folder` naming every local wheel by the absolute path it was found
    at (uv reads a lock's relative paths from the lock's own folder)."""
    import tomlkit  # only when a wheel was found elsewhere than recorded

    where = {w.recorded: w.found for w in wheels if w.found is not None}
    document = tomlkit.parse(lock.read_text(encoding="utf-8"))
    for package in document.get("packages", []):
        for wheel in package.get("wheels", []):
            if "path" in wheel and str(wheel["path"]) in where:
                wheel["path"] = str(where[str(wheel["path"])])
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / lock.name
    copy.write_text(tomlkit.dumps(document), encoding="utf-8")
    return copy
