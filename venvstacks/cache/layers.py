"""The cache around the two expensive steps: resolving a lock with uv and installing an environment.

The doit task DB still decides whether a task is due; these functions only make a due task cheap:
look the step's input digest up, restore the stored result on a hit, otherwise do the work and
store what it produced. Outcomes are "hit", "miss" (done and stored) or "off" (no cache).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvstacks.cache.digests import env_digest, lock_digest
from venvstacks.cache.manifest import Relocation
from venvstacks.cache.restore import RestoreFailed, restore_tree
from venvstacks.cache.store import CacheEntry, LayerCache
from venvstacks.envs import build as envbuild
from venvstacks.lock import resolve as locking
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName

__all__ = ["LockResolver", "install_layer", "origin_paths"]

_log = logging.getLogger(__name__)
LOCK_FILE = "pylock.toml"

HIT, MISS, OFF = "hit", "miss", "off"


def always_copy(path: str) -> bool:
    """Files rewritten after installing (by venvstacks or at deployment): never hard-linked."""
    name = path.rsplit("/", 1)[-1]
    return path == "pyvenv.cfg" or name == "sitecustomize.py" or path.startswith("share/venv/")


def _spellings(path: Path) -> list[str]:
    absolute = path.absolute()
    return [str(absolute), str(absolute.resolve())]


def origin_paths(layout: BuildLayout) -> dict[str, list[str]]:
    """The absolute paths a built environment may hold: its build folder and its spec folder."""
    return {"build_dir": _spellings(layout.build_dir), "spec_dir": _spellings(layout.spec_dir)}


def relocation_for(entry: CacheEntry, layout: BuildLayout) -> Relocation:
    here = origin_paths(layout)
    old: list[str] = []
    new: list[str] = []
    for key, paths in entry.origin.items():
        if key in here and len(paths) == len(here[key]):
            old += paths
            new += here[key]
    return Relocation.between(old, new)


@dataclass
class LockResolver:
    """Resolves layer locks through the cache (a `lock_layer` resolver); remembers its outcomes."""

    cache: LayerCache | None
    outcomes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # of hits: "local" or "remote"

    def __call__(
        self,
        plan: StackPlan,
        layer: LayerPlan,
        layout: BuildLayout,
        options: locking.LockOptions,
        python: Path,
        reset: bool,
    ) -> str:
        env = layer.env_name
        if self.cache is None:
            self.outcomes[env] = OFF
            return locking.resolve_layer_lock(plan, layer, layout, options, python, reset)
        key = lock_digest(plan, layer, layout, options)
        # --reset-lock asks for a fresh resolution: the cache is not read, only refreshed.
        if not reset:
            for source, entry in _lookups(self.cache, "lock", key.digest, env):
                text = _read_lock(entry)
                if text is not None:
                    _log.info("%s: lock restored from the layer cache (%s)", env, key.digest[:19])
                    self.outcomes[env] = HIT
                    self.sources[env] = source
                    return text
        text = locking.resolve_layer_lock(plan, layer, layout, options, python, reset)
        with tempfile.TemporaryDirectory(prefix="venvstacks-lock-") as tmp:
            (Path(tmp) / LOCK_FILE).write_text(text, encoding="utf-8")
            self.cache.insert("lock", key.digest, Path(tmp), layer=env, inputs=key.inputs)
        self.outcomes[env] = MISS
        return text


def _read_lock(entry: CacheEntry) -> str | None:
    import hashlib

    try:
        data = (entry.tree / LOCK_FILE).read_bytes()
    except OSError:
        return None
    recorded = [e.sha256 for e in entry.entries if e.path == LOCK_FILE]
    if recorded != [f"sha256:{hashlib.sha256(data).hexdigest()}"]:
        return None
    return data.decode("utf-8")


def install_layer(
    plan: StackPlan,
    env: EnvName,
    layout: BuildLayout,
    cache: LayerCache | None,
    install: Callable[..., dict[str, Any]] = envbuild.install_layer,
    *,
    wheel_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Build the layer's environment, or restore it from the cache when its inputs were built
    before. `wheel_dirs` are where a local wheel the lock names is looked for by filename when
    it is not at its recorded path."""
    if cache is None:
        return {**install(plan, env, layout, wheel_dirs), "cache": OFF}
    key = env_digest(plan, env, layout)
    for source, entry in _lookups(cache, "env", key.digest, env):
        if _restore_env(entry, env, layout):
            _log.info("%s: environment restored from the layer cache (%s)", env, key.digest[:19])
            lock = layout.lock(env).pylock
            return {
                "built_at": time.time_ns(),
                "lock": lock.name,
                "cache": HIT,
                "cache_source": source,
                "digest": key.digest,
            }
    result = install(plan, env, layout, wheel_dirs)
    cache.insert(
        "env",
        key.digest,
        layout.env_dir(env),
        layer=env,
        inputs=key.inputs,
        origin=origin_paths(layout),
        always_copy=always_copy,
    )
    return {**result, "cache": MISS, "digest": key.digest}


def _lookups(
    cache: LayerCache, kind: str, digest: str, layer: str
) -> Iterator[tuple[str, CacheEntry]]:
    """The local entry for `digest`, then (if that is missing or fails to restore) the one the
    remote cache holds, fetched into the local cache: each as (source, entry)."""
    entry = cache.lookup(kind, digest)
    if entry is not None:
        yield "local", entry
    if cache.remote is not None:
        if entry is not None:
            return  # a local entry that failed to restore: the remote one is the same tree
        fetched = cache.remote.fetch(cache, kind, digest, layer)
        if fetched is not None:
            yield "remote", fetched


def _restore_env(entry: CacheEntry, env: EnvName, layout: BuildLayout) -> bool:
    target = layout.env_dir(env)
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        restore_tree(entry.tree, entry.entries, staging, relocation_for(entry, layout), always_copy)
    except RestoreFailed as exc:
        _log.info("%s: not restored from the layer cache (%s); building it", env, exc)
        shutil.rmtree(staging, ignore_errors=True)
        return False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    envbuild.swap_into_place(staging, target)
    return True
