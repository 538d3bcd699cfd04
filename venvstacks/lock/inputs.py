"""What a layer's lock depends on, and whether the lock stored in `requirements/` is still valid.

`layer_inputs` hashes the current inputs as the lock metadata records them (plus venvstacks' own
``venvstacks_inputs_hash``: platforms, indexes and lower layers' locks); `stored_lock_state`
compares them with the stored lock. Locks written by venvstacks 0.8.0 lack the extra key and are
judged on 0.8.0's own hashes.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from venvstacks.envs.sourcetree import default_source_filter, hash_module
from venvstacks.hashing import hash_strings
from venvstacks.lock import hashes
from venvstacks.lock.metadata import LockInputs, LockMetadata, lock_status, parse_metadata
from venvstacks.lock.project import LockOptions, uv_project_settings
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName, LayerKind
from venvstacks.plan.platforms import DEFAULT_LINUX_TARGET, default_macosx_target

__all__ = [
    "EXTRA_INPUTS_KEY",
    "LayerInputs",
    "StoredLockState",
    "layer_inputs",
    "read_text",
    "stored_lock_state",
]

EXTRA_INPUTS_KEY = "venvstacks_inputs_hash"


@dataclass(frozen=True)
class LayerInputs:
    """Everything a layer's lock depends on, hashed as the lock metadata records it."""

    requirements: tuple[str, ...]
    lock_input_hash: str
    other_inputs_hash: str
    version_inputs_hash: str
    extra_inputs_hash: str
    lower_locks: tuple[EnvName, ...] = field(default=())

    @property
    def hashes(self) -> LockInputs:
        return LockInputs(
            lock_input_hash=self.lock_input_hash,
            other_inputs_hash=self.other_inputs_hash,
            version_inputs_hash=self.version_inputs_hash,
        )


def _module_hashes(layer: LayerPlan) -> tuple[str | None, tuple[str, ...]]:
    spec = layer.spec
    if spec.kind is not LayerKind.APPLICATION or spec.launch_module is None:
        return None, ()
    keep = default_source_filter(spec.launch_module.parent)
    launch = hash_module(spec.launch_module, source_filter=keep)
    support = tuple(hash_module(p, source_filter=keep) for p in spec.support_modules)
    return launch, support


def _targets_family(layer: LayerPlan, family: str) -> bool:
    return any(p.os_family == family for p in layer.platforms)


def layer_inputs(plan: StackPlan, layer: LayerPlan, layout: BuildLayout) -> LayerInputs:
    """The current lock inputs of a layer (reads lower layers' lock metadata and app modules)."""
    spec = layer.spec
    linux = (spec.linux_target or DEFAULT_LINUX_TARGET) if _targets_family(layer, "linux") else None
    macos = (
        (spec.macosx_target or default_macosx_target())
        if _targets_family(layer, "macosx")
        else None
    )
    framework_names = [plan[f].name for f in layer.frameworks]
    runtime_name = layer.runtime if layer.kind is not LayerKind.RUNTIME else None
    launch, support = _module_hashes(layer) if spec.versioned else (None, ())
    lower = [plan[d] for d in layer.dependencies]
    lower_hashes = [_stored_requirements_hash(layout, d.env_name) for d in lower]
    extra = hash_strings(
        [
            f"platforms={','.join(sorted(str(p) for p in layer.platforms))}",
            f"indexes={json.dumps(uv_project_settings(plan, layer, LockOptions()), sort_keys=True, default=str)}",
            *(f"lower={d.env_name}:{h}" for d, h in zip(lower, lower_hashes, strict=True)),
        ]
    )
    return LayerInputs(
        requirements=spec.requirements,
        lock_input_hash=hashes.lock_input_hash(spec.requirements),
        other_inputs_hash=hashes.other_inputs_hash(
            py_version=layer.py_major_minor,
            linux_target=linux,
            macosx_target=macos,
            runtime_env_name=runtime_name,
            framework_names=framework_names,
        ),
        version_inputs_hash=hashes.version_inputs_hash(
            env_name=layer.env_name,
            versioned=spec.versioned,
            launch_module_hash=launch,
            support_module_hashes=support,
        ),
        extra_inputs_hash=extra,
        lower_locks=tuple(d.env_name for d in lower),
    )


def _stored_requirements_hash(layout: BuildLayout, env: EnvName) -> str:
    meta, _ = _parse_stored_metadata(read_text(layout.lock(env).metadata))
    return meta.requirements_hash if meta else ""


@dataclass(frozen=True)
class StoredLockState:
    valid: bool
    changed_fields: tuple[str, ...]
    metadata: LockMetadata | None
    extra_hash: str | None = None

    @property
    def needs_full_lock(self) -> bool:
        """True if uv must re-resolve; False if at most the version must be bumped."""
        return any(name != "version_inputs_hash" for name in self.changed_fields)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@functools.lru_cache(maxsize=1024)  # pure, and asked for each lock several times per build
def _parse_stored_metadata(text: str | None) -> tuple[LockMetadata | None, str | None]:
    if text is None:
        return None, None
    try:
        meta = parse_metadata(text)
        extra = json.loads(text).get(EXTRA_INPUTS_KEY)
    except ValueError:
        return None, None
    return meta, extra if isinstance(extra, str) else None


def stored_lock_state(plan: StackPlan, layer: LayerPlan, layout: BuildLayout) -> StoredLockState:
    """Is the lock on disk valid for the layer's current inputs? Which inputs changed?"""
    paths = layout.lock(layer.env_name)
    meta, extra = _parse_stored_metadata(read_text(paths.metadata))
    lock_text = read_text(paths.pylock)
    inputs = layer_inputs(plan, layer, layout)
    status = lock_status(inputs.hashes, meta, lock_text, versioned=layer.spec.versioned)
    changed = list(status.changed)
    # Locks written by venvstacks 0.8.0 lack our extra key: accept them as they are.
    if meta is not None and extra is not None and extra != inputs.extra_inputs_hash:
        changed.append(EXTRA_INPUTS_KEY)
    return StoredLockState(not changed, tuple(changed), meta, extra)
