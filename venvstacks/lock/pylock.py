"""Post-processing uv's exported pylock into the layer's lock file, and the lock package's facade. Pure.

No subprocess, no filesystem access, no printing: every function takes text or data and returns
text or data, so the whole module is golden-tested. `venvstacks.lock.resolve` runs uv and writes the results.

What it owns, with the formats of venvstacks 0.8.0 (``pylock.<env>.toml``, ``.meta.json``,
``requirements-<env>.in``, ``packages-<env>.txt``):

- `LowerLayerPackages`: what lower layers provide, and `constraint_dependencies` for uv.
- `process_lock`: filter uv's universal pylock to the layer's platforms, mark packages that lower
  layers provide with the impossible marker ``sys_platform == 'from_lower_layer'`` (and strip their
  wheels), drop sdists and other sources, make local wheel paths relative, check that every
  remaining package has a wheel for every platform it applies to, prepend the header.
- `requirements_hash`, `package_summary`, `requirements_in`, `lock_input_hash`.
- `LockMetadata` with `render_metadata` / `parse_metadata`, the `other_inputs_hash` and
  `version_inputs_hash` builders, `lock_status` and `next_metadata`.

Deliberate differences from venvstacks 0.8.0 (file formats are unchanged):

- `next_metadata`: ``locked_at`` and ``lock_version`` change only when the lock's content
  (``requirements_hash``) changes, or, for a versioned layer, when its version inputs change. A
  relock that reproduces the same lock keeps the previous metadata (byte-identical when no input
  hash changed either). 0.8.0 re-stamped the time and bumped versioned layers on any metadata
  rewrite, including clamping to ``exclude-newer``.
- ``locked_at`` is written in whole seconds (naive datetimes are taken as UTC); it is clamped to
  ``exclude-newer`` when a new lock time is chosen, never compared as ``datetime != str``.
- The wheel check also accepts the legacy ``manylinux1``/``manylinux2010`` aliases (0.8.0 knew
  only ``manylinux2014``), and for ``macosx_arm64`` treats the target as at least macOS 11.0,
  since no earlier macOS runs on arm64 (0.8.0 rejected ``macosx_11_0_arm64`` for targets < 11).
- `LockError` carries the layer name, so the message reads ``layer <env>: Some packages ...``
  where 0.8.0 wrote ``<env>: Some packages ...``; the following lines are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from venvstacks.lock.hashes import (
    lock_input_hash,
    other_inputs_hash,
    package_summary,
    requirement_hash_lines,
    requirements_hash,
    requirements_in,
    version_inputs_hash,
)
from venvstacks.lock.metadata import (
    LockInputs,
    LockMetadata,
    LockStatus,
    lock_status,
    next_metadata,
    parse_metadata,
    render_metadata,
)
from venvstacks.lock.packages import (
    SHARED_MARKER,
    LockedPackage,
    LowerLayerPackages,
    MarkerEnvs,
    applicable_platforms,
    constraint_dependencies,
    optional_str,
    read_packages,
    shared_marker,
)
from venvstacks.lock.wheels import (
    WheelTargets,
    availability_error,
    missing_wheels,
    relativise_wheels,
    wheel_filename,
)
from venvstacks.pep508 import canonical_name
from venvstacks.plan.platforms import (
    DEFAULT_LINUX_TARGET,
    DEFAULT_MACOSX_TARGET,
    LinuxTarget,
    MacOSTarget,
    TargetPlatform,
    marker_environment,
    parse_linux_target,
    parse_macosx_target,
)

if TYPE_CHECKING:
    from tomlkit.items import Table

__all__ = [
    "SHARED_MARKER",
    "LockInputs",
    "LockMetadata",
    "LockStatus",
    "LockedPackage",
    "LowerLayerPackages",
    "ProcessedLock",
    "constraint_dependencies",
    "lock_input_hash",
    "lock_status",
    "next_metadata",
    "other_inputs_hash",
    "package_summary",
    "parse_metadata",
    "process_lock",
    "read_packages",
    "render_metadata",
    "requirement_hash_lines",
    "requirements_hash",
    "requirements_in",
    "version_inputs_hash",
]

_SOURCE_KEYS = ("archive", "directory", "sdist", "vcs")

# --- post-processing uv's export ---------------------------------------------------------------


@dataclass(frozen=True)
class ProcessedLock:
    """The lock as venvstacks stores it, with what it found along the way."""

    text: str
    """``pylock.<env>.toml`` content: header, then the filtered PEP 751 document (LF)."""
    packages: tuple[LockedPackage, ...]
    """Every package left in the lock, shared ones flagged."""

    @property
    def requirements_hash(self) -> str:
        return requirements_hash(self.text)


@dataclass(frozen=True)
class _Layer:
    env_name: str
    targets: tuple[TargetPlatform, ...]
    envs: MarkerEnvs
    limits: WheelTargets
    lower: LowerLayerPackages
    lock_dir: Path


def _set_marker(entry: Table, marker: str) -> None:
    """Set ``marker``, placing a new key right after ``version`` as uv does."""
    if "marker" in entry:
        entry["marker"] = marker
        return
    items = list(entry.items())
    for key, _ in items:
        del entry[key]
    for key, value in items:
        entry[key] = value
        if key == "version":
            entry["marker"] = marker
    if "marker" not in entry:
        entry["marker"] = marker


def _process_entry(entry: Table, layer: _Layer) -> list[TargetPlatform] | None:
    """Steps 1-5 of the post-processing for one package, in place.

    Returns None if the package applies to no target platform (drop it), else the platforms
    it applies to but has no wheel for.
    """
    applicable = applicable_platforms(optional_str(entry.get("marker")), layer.envs)
    if not applicable:
        return None
    if len(applicable) == len(layer.targets) and "marker" in entry:
        del entry["marker"]
    pkg = LockedPackage.from_entry(entry)
    for key in _SOURCE_KEYS:
        entry.pop(key, None)
    if layer.lower.packages and layer.lower.provides(pkg, applicable, layer.envs):
        _set_marker(entry, shared_marker(pkg.marker))
        entry.pop("index", None)
        entry.pop("wheels", None)
        return []
    relativise_wheels(entry, layer.lock_dir, layer.env_name)
    filenames = [wheel_filename(wheel) for wheel in entry.get("wheels", [])]
    return missing_wheels(filenames, applicable, layer.limits)


def _strip_comment_header(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lines.pop(0)
    return "\n".join(lines)


def _lock_header(env_name: str, header_command: str) -> str:
    return (
        f"# Locked requirements for {env_name} (DO NOT EDIT)\n"
        "#     Auto-generated by venvstacks with the following command:\n"
        f"#         {header_command}\n"
    )


def process_lock(
    text: str,
    *,
    env_name: str,
    targets: Sequence[TargetPlatform],
    python_full_version: str,
    linux_target: LinuxTarget | None = None,
    macosx_target: MacOSTarget | None = None,
    lower: LowerLayerPackages | None = None,
    lock_dir: Path,
    header_command: str,
) -> ProcessedLock:
    """Turn the pylock text from ``uv export --format pylock.toml`` into the layer's lock.

    Args:
        text: uv's export (with or without uv's comment header).
        env_name: the layer's build name, for the header and error messages.
        targets: the layer's target platforms, in the order used for messages.
        python_full_version: the runtime's ``X.Y.Z``, for marker evaluation.
        linux_target: newest glibc that Linux wheels may need (default ``glibc@2.28``).
        macosx_target: newest macOS that macOS wheels may need (default ``13.0``).
        lower: what lower layers provide (None or empty for a runtime layer).
        lock_dir: absolute directory the lock will be written to (local wheels become relative).
        header_command: the command shown in the header's third line.

    Raises:
        LockError: a package lacks wheels for a platform it applies to (every such package is
            listed), or a local wheel cannot be expressed relative to ``lock_dir``.
    """
    layer = _Layer(
        env_name=env_name,
        targets=tuple(targets),
        envs={t: marker_environment(t, python_full_version) for t in targets},
        limits=WheelTargets(
            linux_target or parse_linux_target(DEFAULT_LINUX_TARGET),
            macosx_target or parse_macosx_target(DEFAULT_MACOSX_TARGET),
        ),
        lower=lower or LowerLayerPackages(),
        lock_dir=lock_dir,
    )
    import tomlkit  # only when a lock is written: a costly import that checks never need
    from tomlkit.items import AoT

    doc = tomlkit.parse(_strip_comment_header(text))
    missing: dict[str, set[TargetPlatform]] = {}
    packages = doc.get("packages")
    if isinstance(packages, AoT):
        for index in reversed(range(len(packages))):
            gaps = _process_entry(packages[index], layer)
            if gaps is None:
                del packages[index]
            elif gaps:
                missing.setdefault(canonical_name(packages[index]["name"]), set()).update(gaps)
        if not packages:
            doc["packages"] = tomlkit.array()
    if missing:
        raise availability_error(env_name, dict(reversed(missing.items())), layer.targets)
    body = tomlkit.dumps(doc).replace("\r\n", "\n")
    result = _lock_header(env_name, header_command) + body
    return ProcessedLock(text=result, packages=read_packages(result))
