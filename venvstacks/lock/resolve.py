"""Locking one layer with uv: bring its lock in `requirements/<env>/` up to date.

Pure work on lock text is in `pylock`/`hashes`/`metadata`; the uv project is `project`'s, the
uv runs `uvrun`'s and the validity checks `inputs`'. A layer is only re-resolved when its stored
lock is not valid for the current inputs (or a reset is requested), and files are only rewritten
when their bytes change, so a relock that reproduces the same lock changes nothing on disk and
triggers nothing above it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from venvstacks.errors import LockError
from venvstacks.lock import pylock as lockfile
from venvstacks.lock.inputs import (
    EXTRA_INPUTS_KEY,
    LayerInputs,
    StoredLockState,
    layer_inputs,
    read_text,
    stored_lock_state,
)
from venvstacks.lock.project import (
    LockOptions,
    uv_project_settings,
    write_if_changed,
    write_resolve_project,
)
from venvstacks.lock.uvrun import lower_providers, run_uv_lock
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout, LockPaths
from venvstacks.plan.names import EnvName
from venvstacks.plan.platforms import (
    DEFAULT_LINUX_TARGET,
    default_macosx_target,
    parse_linux_target,
    parse_macosx_target,
)
from venvstacks.proc import run_checked

__all__ = [
    "EXTRA_INPUTS_KEY",
    "LockOptions",
    "LockOutcome",
    "Resolver",
    "StoredLockState",
    "drop_local_indexes",
    "layer_inputs",
    "lock_layer",
    "resolve_layer_lock",
    "stored_lock_state",
    "uv_project_settings",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockOutcome:
    env: EnvName
    resolved: bool  # uv ran
    changed: bool  # the lock's content changed
    locked_at: str


Resolver = Callable[[StackPlan, LayerPlan, BuildLayout, LockOptions, Path, bool], str]


def lock_layer(
    plan: StackPlan,
    env: EnvName,
    layout: BuildLayout,
    options: LockOptions,
    python: Path,
    now: datetime | None = None,
    resolver: Resolver | None = None,
) -> LockOutcome:
    """Bring one layer's lock up to date (lower layers must be locked already).

    `resolver` makes the lock text when uv must resolve (the layer cache's may restore it).
    """
    layer = plan[env]
    _require_lower_locks(plan, layer, layout)
    state = stored_lock_state(plan, layer, layout)
    reset = env in options.reset
    paths = layout.lock(env)
    previous = state.metadata
    if state.valid and not reset and previous is not None:
        current = paths.pylock.read_text(encoding="utf-8")
        write_if_changed(paths.summary, lockfile.package_summary(env, current))
        return LockOutcome(env, False, False, previous.locked_at)
    inputs = layer_inputs(plan, layer, layout)
    stored_text = lock_text = read_text(paths.pylock)
    resolved = reset or lock_text is None or previous is None or state.needs_full_lock
    if resolved or lock_text is None:
        lock_text = (resolver or resolve_layer_lock)(plan, layer, layout, options, python, reset)
    meta = lockfile.next_metadata(
        _renewal_basis(previous, stored_text, lock_text),
        lock_text,
        inputs.hashes,
        now or datetime.now(UTC),
        layer.spec.versioned,
        exclude_newer=options.exclude_newer,
    )
    changed = _write_lock_files(paths, inputs, lock_text, meta, env)
    _log.info("locked %s%s", env, "" if changed else " (unchanged)")
    return LockOutcome(env, resolved, changed, meta.locked_at)


def _renewal_basis(
    previous: lockfile.LockMetadata | None, stored_text: str | None, lock_text: str
) -> lockfile.LockMetadata | None:
    """The metadata `next_metadata` renews from: `previous`, made stale if the lock says more.

    `next_metadata` renews `locked_at` (and a versioned layer's `lock_version`, hence its deployed
    name) only when `requirements_hash` changes, and that hash covers the packages only (as in
    venvstacks 0.8). A lock whose packages stay but whose `environments` (narrowed platforms) or
    `requires-python` (a new Python X.Y) change is new content too: `app@1` must not come to name
    a build for another Python. Only a stored lock that `previous` describes is compared, so a
    relock that undoes a hand edit renews nothing.
    """
    if previous is None or stored_text is None:
        return previous
    try:
        if lockfile.requirements_hash(stored_text) != previous.requirements_hash:
            return previous
        unchanged = _lock_header_fields(stored_text) == _lock_header_fields(lock_text)
    except ValueError:
        return previous
    return previous if unchanged else dataclasses.replace(previous, requirements_hash="")


def _lock_header_fields(lock_text: str) -> dict[str, Any]:
    """A lock's top-level fields other than its packages (`environments`, `requires-python`...)."""
    return {k: v for k, v in tomllib.loads(lock_text).items() if k != "packages"}


def _require_lower_locks(plan: StackPlan, layer: LayerPlan, layout: BuildLayout) -> None:
    missing = [d for d in layer.dependencies if not stored_lock_state(plan, plan[d], layout).valid]
    if missing:
        raise LockError(layer.env_name, f"cannot lock before its lower layers: {missing}")


def resolve_layer_lock(
    plan: StackPlan,
    layer: LayerPlan,
    layout: BuildLayout,
    options: LockOptions,
    python: Path,
    reset: bool,
) -> str:
    # Constraint order of venvstacks 0.8.0: the runtime first, then frameworks by priority.
    lower_envs = [*layer.dependencies[-1:], *layer.dependencies[:-1]]
    lower_texts = [layout.lock(d).pylock.read_text(encoding="utf-8") for d in lower_envs]
    lower = lockfile.LowerLayerPackages.from_lock_texts(lower_texts)
    constraints = lockfile.constraint_dependencies(lower)
    project = write_resolve_project(plan, layer, layout, options, constraints)
    providers = lower_providers(layout, lower_envs)
    raw = run_uv_lock(layer.env_name, project, python, reset, providers, layer.platforms)
    processed = lockfile.process_lock(
        raw,
        env_name=layer.env_name,
        targets=layer.platforms,
        python_full_version=_full_version(layer, python),
        linux_target=parse_linux_target(layer.spec.linux_target or DEFAULT_LINUX_TARGET),
        macosx_target=parse_macosx_target(layer.spec.macosx_target or default_macosx_target()),
        lower=lower,
        lock_dir=layout.lock(layer.env_name).folder,
        header_command=f"{Path(sys.executable).name} -Im venvstacks lock",
    )
    return drop_local_indexes(processed.text)


def drop_local_indexes(lock_text: str) -> str:
    """Remove `index = "file://..."` from packages found through --local-wheels folders.

    uv records a find-links folder as the package's index, as an absolute URL: keeping it would
    make the lock (and its hash) depend on where the checkout lives. The wheel paths themselves
    are already relative to the lock file.
    """
    import tomlkit  # only when a lock is written

    doc = tomlkit.parse(lock_text)
    for entry in doc.get("packages", []):
        index = entry.get("index")
        if isinstance(index, str) and index.startswith("file:"):
            del entry["index"]
    return tomlkit.dumps(doc)


def _full_version(layer: LayerPlan, python: Path) -> str:
    version = layer.py_version
    if version.count(".") >= 2:
        return version
    output = run_checked([str(python), "-c", "import platform; print(platform.python_version())"])
    return output.strip()


def _write_lock_files(
    paths: LockPaths,
    inputs: LayerInputs,
    lock_text: str,
    meta: lockfile.LockMetadata,
    env: EnvName,
) -> bool:
    paths.folder.mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(paths.pylock, lock_text)
    write_if_changed(paths.requirements_in, lockfile.requirements_in(inputs.requirements))
    write_if_changed(paths.summary, lockfile.package_summary(env, lock_text))
    data = {
        **json.loads(lockfile.render_metadata(meta)),
        EXTRA_INPUTS_KEY: inputs.extra_inputs_hash,
    }
    write_if_changed(paths.metadata, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return changed
