"""Locking one layer with uv: write its resolve project, run `uv lock` + `uv export`, store the lock.

Pure work on lock text is `lockfile.py`'s; this module does the I/O around it. A layer is only
re-resolved when its stored lock is not valid for the current inputs (or a reset is requested), and
files are only rewritten when their bytes change, so a relock that reproduces the same lock
changes nothing on disk and triggers nothing above it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from packaging.utils import canonicalize_name

from venvstacks.envs.sourcetree import default_source_filter, hash_module
from venvstacks.errors import LockError
from venvstacks.hashing import hash_strings
from venvstacks.lock import pylock as lockfile
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout, LockPaths
from venvstacks.plan.names import EnvName, LayerKind
from venvstacks.plan.platforms import (
    DEFAULT_LINUX_TARGET,
    TargetPlatform,
    default_macosx_target,
    parse_linux_target,
    parse_macosx_target,
)
from venvstacks.proc import ProcessFailed, run_checked, tail, uv_command
from venvstacks.spec.indexes import layer_index_list, layer_sources

__all__ = ["LockOptions", "LockOutcome", "layer_inputs", "lock_layer", "stored_lock_state"]

_log = logging.getLogger(__name__)
EXTRA_INPUTS_KEY = "venvstacks_inputs_hash"


@dataclass(frozen=True)
class LockOptions:
    """Settings that change how (not what) layers are locked."""

    use_index: bool = True
    local_wheels: tuple[Path, ...] = ()
    reset: frozenset[str] = frozenset()
    exclude_newer: datetime | None = None


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
    def hashes(self) -> lockfile.LockInputs:
        return lockfile.LockInputs(
            lock_input_hash=self.lock_input_hash,
            other_inputs_hash=self.other_inputs_hash,
            version_inputs_hash=self.version_inputs_hash,
        )


@dataclass(frozen=True)
class LockOutcome:
    env: EnvName
    resolved: bool  # uv ran
    changed: bool  # the lock's content changed
    locked_at: str


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
        lock_input_hash=lockfile.lock_input_hash(spec.requirements),
        other_inputs_hash=lockfile.other_inputs_hash(
            py_version=layer.py_major_minor,
            linux_target=linux,
            macosx_target=macos,
            runtime_env_name=runtime_name,
            framework_names=framework_names,
        ),
        version_inputs_hash=lockfile.version_inputs_hash(
            env_name=layer.env_name,
            versioned=spec.versioned,
            launch_module_hash=launch,
            support_module_hashes=support,
        ),
        extra_inputs_hash=extra,
        lower_locks=tuple(d.env_name for d in lower),
    )


def _stored_requirements_hash(layout: BuildLayout, env: EnvName) -> str:
    meta, _ = _parse_stored_metadata(_read_text(layout.lock(env).metadata))
    return meta.requirements_hash if meta else ""


@dataclass(frozen=True)
class StoredLockState:
    valid: bool
    changed_fields: tuple[str, ...]
    metadata: lockfile.LockMetadata | None
    extra_hash: str | None = None

    @property
    def needs_full_lock(self) -> bool:
        """True if uv must re-resolve; False if at most the version must be bumped."""
        return any(name != "version_inputs_hash" for name in self.changed_fields)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _parse_stored_metadata(text: str | None) -> tuple[lockfile.LockMetadata | None, str | None]:
    if text is None:
        return None, None
    try:
        meta = lockfile.parse_metadata(text)
        extra = json.loads(text).get(EXTRA_INPUTS_KEY)
    except ValueError:
        return None, None
    return meta, extra if isinstance(extra, str) else None


def stored_lock_state(plan: StackPlan, layer: LayerPlan, layout: BuildLayout) -> StoredLockState:
    """Is the lock on disk valid for the layer's current inputs? Which inputs changed?"""
    paths = layout.lock(layer.env_name)
    meta, extra = _parse_stored_metadata(_read_text(paths.metadata))
    lock_text = _read_text(paths.pylock)
    inputs = layer_inputs(plan, layer, layout)
    status = lockfile.lock_status(inputs.hashes, meta, lock_text, versioned=layer.spec.versioned)
    changed = list(status.changed)
    # Locks written by venvstacks 0.8.0 lack our extra key: accept them as they are.
    if meta is not None and extra is not None and extra != inputs.extra_inputs_hash:
        changed.append(EXTRA_INPUTS_KEY)
    return StoredLockState(not changed, tuple(changed), meta, extra)


def _environment_markers(platforms: Sequence[TargetPlatform]) -> list[str]:
    markers = {
        "linux": "sys_platform == 'linux'",
        "macosx": "sys_platform == 'darwin'",
        "win": "sys_platform == 'win32'",
    }
    machines = {
        "x86_64": "platform_machine == 'x86_64'",
        "aarch64": "platform_machine == 'aarch64'",
        "arm64": "platform_machine == 'arm64'",
        "amd64": "platform_machine == 'AMD64'",
    }
    windows_machines = {
        "amd64": "platform_machine == 'AMD64'",
        "arm64": "platform_machine == 'ARM64'",
    }
    return [
        f"{markers[p.os_family]} and "
        f"{(windows_machines if p.os_family == 'win' else machines)[p.machine]}"
        for p in platforms
    ]


def uv_project_settings(plan: StackPlan, layer: LayerPlan, options: LockOptions) -> dict[str, Any]:
    config = plan.spec.uv
    settings: dict[str, Any] = {k: v for k, v in config.settings.items()}
    settings.pop("exclude-newer", None)
    if options.exclude_newer is not None:
        settings["exclude-newer"] = options.exclude_newer.isoformat()
    elif config.exclude_newer is not None:
        settings["exclude-newer"] = config.exclude_newer.isoformat()
    settings["no-build"] = True
    settings.setdefault("environments", _environment_markers(layer.platforms))
    index = layer_index_list(config, layer.package_indexes, layer.spec.priority_indexes)
    if index:
        settings["index"] = index
    sources = layer_sources(config, layer.package_indexes)
    if sources:
        settings["sources"] = sources
    return settings


def write_resolve_project(
    plan: StackPlan,
    layer: LayerPlan,
    layout: BuildLayout,
    options: LockOptions,
    constraints: Sequence[str],
) -> Path:
    """The throw-away uv project whose lock becomes the layer's lock."""
    folder = layout.resolve_dir(layer.env_name)
    folder.mkdir(parents=True, exist_ok=True)
    settings = uv_project_settings(plan, layer, options)
    if constraints:
        own = list(settings.get("constraint-dependencies", []))
        settings["constraint-dependencies"] = [*own, *constraints]
    if not options.use_index:
        settings["no-index"] = True
    if options.local_wheels:
        links = [str(p) for p in options.local_wheels]
        settings["find-links"] = [*settings.get("find-links", []), *links]
    document = {
        "project": {
            "name": _project_name(layer.env_name),
            "version": "0",
            "dependencies": sorted(layer.spec.requirements),
            "requires-python": f"=={layer.py_major_minor}.*",
        },
        "tool": {"uv": settings},
    }
    _write_if_changed(folder / "pyproject.toml", tomlkit.dumps(document))
    return folder


def _project_name(env: str) -> str:
    import re

    from packaging.utils import canonicalize_name

    return canonicalize_name(re.sub(r"[^a-zA-Z0-9._-]", "-", env)) or "layer"


def _venvstacks_hints(uv_output: str) -> str:
    """uv's advice in venvstacks' terms: a layer's platforms set the environments it locks for."""
    return re.sub(
        r"hint: The resolution failed for an environment that is not the current one.*",
        "hint: the resolution failed for one of the layer's target platforms; "
        "set `platforms = [...]` on the layer to lock for fewer platforms",
        uv_output,
    )


def lower_providers(layout: BuildLayout, lower_envs: Sequence[EnvName]) -> dict[str, str]:
    """Which lower layer installs each package (`name==version` → env), first one wins."""
    providers: dict[str, str] = {}
    for env in lower_envs:
        for pkg in lockfile.read_packages(layout.lock(env).pylock.read_text(encoding="utf-8")):
            if not pkg.shared:
                providers.setdefault(pkg.name, f"{pkg.requirement} from {env}")
    return providers


def explain_conflicts(output: str, providers: Mapping[str, str]) -> list[str]:
    """Lower-layer pins that uv's explanation mentions: the likely cause of a failed lock."""
    mentioned = {
        canonicalize_name(m) for m in re.findall(r"([A-Za-z0-9][\w.-]*)(?:==|<|>|!=|~=)", output)
    }
    return [providers[name] for name in sorted(mentioned) if name in providers]


def _run_uv_lock(
    env: EnvName, project: Path, python: Path, reset: bool, providers: Mapping[str, str]
) -> str:
    """Resolve and export the layer's lock; return the raw pylock text from uv."""
    uv = uv_command()
    common = ["--project", str(project), "--python", str(python), "--no-color", "--quiet"]
    if reset:
        (project / "uv.lock").unlink(missing_ok=True)
    try:
        run_checked([*uv, "lock", *common, "--upgrade"], cwd=project)
        with tempfile.TemporaryDirectory(dir=project) as tmp:
            out = Path(tmp) / "pylock.toml"
            run_checked(
                [
                    *uv,
                    "export",
                    *common,
                    "--locked",
                    "--format",
                    "pylock.toml",
                    "--no-header",
                    "--no-emit-project",
                    "--no-annotate",
                    "-o",
                    str(out),
                ],
                cwd=project,
            )
            return out.read_text(encoding="utf-8")
    except ProcessFailed as exc:
        conflicts = explain_conflicts(exc.output, providers)
        cause = (
            f"its requirements conflict with lower layers ({'; '.join(conflicts)})"
            if conflicts
            else "uv could not resolve its requirements"
        )
        raise LockError(env, f"{cause}; uv says:\n{_venvstacks_hints(tail(exc.output))}") from None


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
        _write_if_changed(paths.summary, lockfile.package_summary(env, current))
        return LockOutcome(env, False, False, previous.locked_at)
    inputs = layer_inputs(plan, layer, layout)
    stored_text = lock_text = _read_text(paths.pylock)
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
    raw = _run_uv_lock(layer.env_name, project, python, reset, providers)
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
    changed = _write_if_changed(paths.pylock, lock_text)
    _write_if_changed(paths.requirements_in, lockfile.requirements_in(inputs.requirements))
    _write_if_changed(paths.summary, lockfile.package_summary(env, lock_text))
    data = {
        **json.loads(lockfile.render_metadata(meta)),
        EXTRA_INPUTS_KEY: inputs.extra_inputs_hash,
    }
    _write_if_changed(paths.metadata, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return changed


def _write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace `path` with `text` unless it already holds exactly that."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
