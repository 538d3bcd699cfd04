"""Input digests: the content hash of everything a layer's lock or built environment depends on.

Two layers (in two build folders, or two stacks) with equal digests have interchangeable results.
Each digest is the sha256 of a canonical JSON document of its inputs; the document itself is kept
in the cache entry's manifest, so `venvstacks cache info DIGEST` shows what an entry was made from.

Lock inputs: the layer's name, kind and requirements; the lower layers' lock files (their content:
they become constraints); the runtime archive (its full Python version is written into the lock);
target platforms and glibc/macOS targets; every uv setting venvstacks writes into the resolve
project (indexes, sources, exclude-newer, ...); whether indexes are used and the local wheel
folders (where, relative to the lock, and each wheel's name and hash); uv's version.

Environment inputs: the layer's name and kind; its lock file's content and the hashes of the
local wheels it names; the runtime archive; the lower layers' environment digests; the build
platform and glibc/macOS targets; uv's version; a format version of venvstacks' own.
App launch and support modules are not inputs: the cached result is the installed environment
before the link step, which copies the modules (and is always re-run after a restore).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks.envs import build as envbuild
from venvstacks.lock import resolve as locking
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.plan.platforms import DEFAULT_LINUX_TARGET, build_platform, default_macosx_target
from venvstacks.proc import uv_command

__all__ = ["ENV_FORMAT", "LOCK_FORMAT", "InputDigest", "env_digest", "lock_digest", "uv_identity"]

LOCK_FORMAT = "venvstacks-lock-cache-1"
ENV_FORMAT = "venvstacks-env-cache-1"
"""Bumped whenever what an install produces changes for the same inputs."""


@dataclass(frozen=True)
class InputDigest:
    """A digest and the input document it hashes."""

    digest: str
    inputs: Mapping[str, Any]

    @classmethod
    def of(cls, inputs: Mapping[str, Any]) -> InputDigest:
        text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
        return cls(f"sha256:{hashlib.sha256(text.encode()).hexdigest()}", inputs)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def file_sha256(path: Path) -> str:
    """A file's sha256, memoised per (path, size, mtime) for the life of the process."""
    info = path.stat()
    return _file_sha256(str(path), info.st_size, info.st_mtime_ns)


def _maybe_file_sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return "missing"


def uv_identity() -> str:
    """Which uv venvstacks runs: its package version, or else its binary's hash (no subprocess)."""
    command = uv_command()
    binary = Path(command[-1]) if len(command) == 1 else None
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("uv")
        located = [Path(str(dist.locate_file(f))).resolve() for f in dist.files or ()]
        if binary is None or binary.resolve() in located:
            return f"uv {dist.version}"
    except (PackageNotFoundError, OSError):
        pass
    return f"uv binary {_maybe_file_sha256(binary)}" if binary else "uv unknown"


def _runtime_identity(layout: BuildLayout, runtime: EnvName) -> dict[str, Any]:
    record = envbuild.runtime_provenance(layout, runtime)
    return {"sha256": record.get("sha256"), "version": record.get("version")}


def _targets(layer: LayerPlan) -> dict[str, Any]:
    spec = layer.spec
    families = {p.os_family for p in layer.platforms}
    return {
        "platforms": sorted(str(p) for p in layer.platforms),
        "linux_target": (spec.linux_target or DEFAULT_LINUX_TARGET)
        if "linux" in families
        else None,
        "macosx_target": (spec.macosx_target or default_macosx_target())
        if "macosx" in families
        else None,
    }


def _wheel_folder(folder: Path, lock_dir: Path) -> dict[str, Any]:
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    return {
        "where": os.path.relpath(folder, lock_dir),
        "wheels": [[w.name, _maybe_file_sha256(w)] for w in wheels],
    }


def lock_digest(
    plan: StackPlan, layer: LayerPlan, layout: BuildLayout, options: locking.LockOptions
) -> InputDigest:
    """The digest of everything `uv lock` and venvstacks' lock processing make a lock from."""
    paths = layout.lock(layer.env_name)
    settings = locking.uv_project_settings(plan, layer, options)
    inputs = {
        "format": LOCK_FORMAT,
        "layer": layer.env_name,
        "kind": str(layer.kind),
        "requirements": sorted(layer.spec.requirements),
        "python": layer.py_version,
        "runtime": _runtime_identity(layout, layer.runtime),
        "frameworks": [plan[f].name for f in layer.frameworks],
        "lower_locks": [
            [str(d), _maybe_file_sha256(layout.lock(d).pylock)] for d in layer.dependencies
        ],
        **_targets(layer),
        "uv_settings": settings,
        "use_index": options.use_index,
        "local_wheels": [_wheel_folder(p, paths.folder) for p in options.local_wheels],
        "uv": uv_identity(),
    }
    return InputDigest.of(inputs)


def _local_wheels_of(lock: Path) -> list[list[str]]:
    """The local wheels a lock names (by path relative to it), with their hashes."""
    try:
        packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("packages", [])
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [
        [wheel["path"], _maybe_file_sha256(lock.parent / wheel["path"])]
        for package in packages
        for wheel in package.get("wheels", [])
        if "path" in wheel
    ]


def env_digest(plan: StackPlan, env: EnvName, layout: BuildLayout) -> InputDigest:
    """The digest of everything a layer's installed environment (before linking) is made from."""
    memo: dict[EnvName, InputDigest] = {}

    def digest(name: EnvName) -> InputDigest:
        if name not in memo:
            layer = plan[name]
            lock = layout.lock(name).pylock
            spec = layer.spec
            inputs = {
                "format": ENV_FORMAT,
                "layer": name,
                "kind": str(layer.kind),
                "lock": _maybe_file_sha256(lock),
                "local_wheels": _local_wheels_of(lock),
                "runtime": _runtime_identity(layout, layer.runtime),
                "lower": [[str(d), digest(d).digest] for d in layer.dependencies],
                "build_platform": str(build_platform()),
                "linux_target": spec.linux_target or "default",
                "macosx_target": spec.macosx_target or "default",
                "uv": uv_identity(),
            }
            memo[name] = InputDigest.of(inputs)
        return memo[name]

    return digest(env)
