"""The stack as doit tasks: one task per layer and operation, with content-hash dependencies.

Task names are `<operation>:<env name>`:

    runtime:R   find, verify and unpack runtime R's interpreter (used to lock and to build)
    lock:L      lock layer L with uv            → requirements/<L>/pylock.<L>.toml (+ .meta.json)
    install:L   build L's environment from its lock (in a temporary folder, renamed into place)
    link:L      sitecustomize, layer config, app modules, dynlib links, python wrapper
    archive:L   reproducible archive + metadata  → <output>/<install target>.tar.xz
    export:L    a local, unarchived export of L   → <output>/<install target>/

Staleness is by content. A lock task has its lower layers' lock files as `file_dep`, so a lower
relock that reproduces the same bytes stops the cascade there; `task_dep` only orders tasks. Every
task's target is a stamp (or the artefact itself) written last, so a failed or interrupted task
is never taken as done.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvstacks.envs import build as envbuild
from venvstacks.envs.manifest import check_folder
from venvstacks.envs.sourcetree import default_source_filter, walk_source_tree
from venvstacks.errors import StackError
from venvstacks.hashing import hash_strings
from venvstacks.lock import resolve as locking
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName, LayerKind
from venvstacks.plan.platforms import build_platform
from venvstacks.publish import archives
from venvstacks.publish import layers as publish
from venvstacks.tasks.model import TaskDict
from venvstacks.tasks.uptodate import ConfigChanged

__all__ = ["OPERATIONS", "StackTasks", "task_name"]

OPERATIONS = ("runtime", "lock", "install", "link", "archive", "export")

_log = logging.getLogger(__name__)


def task_name(operation: str, env: str) -> str:
    return f"{operation}:{env}"


_ACTIONS = [0]  # bumped as any task's action starts and ends: what it wrote may change lock states


def run_operation(
    op: Callable[..., dict[str, Any] | Any], stamp: str | None, *args: Any
) -> dict[str, Any] | Any:
    """Run one operation as a doit action: user errors fail the task (a doit `TaskFailed`), the
    stamp is written last."""
    _ACTIONS[0] += 1
    try:
        result = op(*args)
    except StackError as exc:
        from doit.exceptions import TaskFailed

        return TaskFailed(str(exc))
    finally:
        _ACTIONS[0] += 1
    values = result if isinstance(result, dict) else {"result": repr(result)}
    if stamp is not None:
        path = Path(stamp)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")
    return {k: v for k, v in values.items() if isinstance(v, str | int | float | bool)}


def _lock_action(
    plan: StackPlan, env: EnvName, layout: BuildLayout, cache: Any, options: locking.LockOptions
) -> dict[str, Any]:
    from venvstacks.cache.layers import LockResolver

    python = envbuild.runtime_python(layout, plan[env].runtime)
    resolver = LockResolver(cache)
    outcome = locking.lock_layer(plan, env, layout, options, python, resolver=resolver)
    hit = resolver.outcomes.get(env) == "hit"
    return {
        "resolved": outcome.resolved and not hit,  # uv ran
        "changed": outcome.changed,
        "locked_at": outcome.locked_at,
        "cache": resolver.outcomes.get(env, "unused"),
        "cache_source": resolver.sources.get(env, ""),
    }


def _install_action(
    plan: StackPlan, env: EnvName, layout: BuildLayout, cache: Any, wheel_dirs: tuple[Path, ...]
) -> dict[str, Any]:
    from venvstacks.cache.layers import install_layer

    return install_layer(plan, env, layout, cache, wheel_dirs=wheel_dirs)




def _path_exists(path: Path) -> bool:
    return path.exists()


class FolderIntact:
    """doit uptodate check: a folder still matches the manifest its task recorded.

    Evaluated by `lstat` only (see `envs.manifest`). After a call, `why` says what changed, for
    `status` and `graph --tasks`.
    """

    def __init__(self, folder: Path, manifest: Path, what: str) -> None:
        self.folder = folder
        self.manifest = manifest
        self.what = what
        self.why = ""

    def __call__(self) -> bool:
        problem = check_folder(self.folder, self.manifest)
        self.why = "" if problem is None else f"{self.what} changed: {problem}"
        if problem is not None:
            _log.info("%s: %s", self.folder.name, self.why)
        return problem is None

    def __repr__(self) -> str:
        return f"FolderIntact({str(self.folder)!r})"


def _deployed_names_unchanged(
    task: Any, values: dict[str, Any], plan: StackPlan, env: EnvName, layout: BuildLayout
) -> bool:
    """doit uptodate check, evaluated when the task is due (after its lower tasks ran)."""
    return bool(values.get("deployed_names") == envbuild.deployed_names(plan, layout, env))


@dataclass(frozen=True)
class StackTasks:
    """Every task of a stack, for the engine, `status`, `graph --tasks` and generated dodo files."""

    plan: StackPlan
    layout: BuildLayout
    lock_options: locking.LockOptions = field(default_factory=locking.LockOptions)
    runtime_options: envbuild.RuntimeOptions = field(default_factory=envbuild.RuntimeOptions)
    publishing: publish.PublishOptions | None = None  # when archive/export tasks are wanted
    cache: Any = None  # cache.store.LayerCache, unless the layer cache is off

    @property
    def buildable(self) -> tuple[LayerPlan, ...]:
        platform = build_platform()
        return tuple(layer for layer in self.plan.enabled if layer.targets(platform))

    def all_tasks(self) -> list[TaskDict]:
        """Every task of the stack (built once per `StackTasks`; callers get their own list)."""
        return list(self._tasks)

    @functools.cached_property
    def _tasks(self) -> tuple[TaskDict, ...]:
        tasks: list[TaskDict] = []
        for layer in self.plan.enabled:
            if layer.kind is LayerKind.RUNTIME:
                tasks.append(self.runtime_task(layer))
            tasks.append(self.lock_task(layer))
        for layer in self.buildable:
            tasks.append(self.install_task(layer))
            tasks.append(self.link_task(layer))
        if self.publishing is not None:
            tasks.extend(publish_tasks(self, self.publishing))
        return tuple(tasks)

    def runtime_task(self, layer: LayerPlan) -> TaskDict:
        env = layer.env_name
        record = envbuild.provision_record_path(self.layout, env)
        # Where the archive was found does not matter once its sha256 is recorded.
        # (The provision record names the archive and its sha256 for the layer metadata.)
        digest = hash_strings([layer.python_implementation])
        unpacked = FolderIntact(
            self.layout.runtime_cache / env,
            envbuild.runtime_manifest_path(self.layout, env),
            "unpacked interpreter",
        )
        return {
            "basename": "runtime",
            "name": env,
            "doc": f"find and unpack the {layer.python_implementation} interpreter",
            "actions": [
                (
                    run_operation,
                    [
                        envbuild.provision_runtime,
                        None,
                        self.plan,
                        env,
                        self.layout,
                        self.runtime_options,
                    ],
                )
            ],
            "targets": [str(record)],
            "uptodate": [ConfigChanged(digest), unpacked],
        }

    def lock_task(self, layer: LayerPlan) -> TaskDict:
        env = layer.env_name
        paths = self.layout.lock(env)
        lower = [self.layout.lock(d).pylock for d in layer.dependencies]
        file_dep = [str(p) for p in lower]
        if layer.spec.versioned:  # app modules only feed the lock of a versioned app
            file_dep += [str(p) for p in self._module_files(layer)]
        reset = env in self.lock_options.reset
        return {
            "basename": "lock",
            "name": env,
            "doc": f"lock {env} with uv for {', '.join(map(str, layer.platforms))}",
            "actions": [
                (
                    run_operation,
                    [
                        _lock_action,
                        None,
                        self.plan,
                        env,
                        self.layout,
                        self.cache,
                        self.lock_options,
                    ],
                )
            ],
            "file_dep": file_dep,
            "targets": [str(paths.pylock), str(paths.metadata)],
            "task_dep": [task_name("runtime", layer.runtime)]
            + [task_name("lock", d) for d in layer.dependencies],
            "uptodate": [(self._lock_uptodate, [env, reset])],
        }

    def lock_valid(self, env: str) -> bool:
        """Is the lock stored for `env` valid? Asked once per layer until a task runs (a build
        asks before running, then each lock task asks again: on a no-op, nothing changed)."""
        from venvstacks.tasks.engine import lock_waits

        memo: dict[str, tuple[tuple[int, int], bool]] = self.__dict__.setdefault("_lock_memo", {})
        known = memo.get(env)
        # Forgotten when a task ran here, or when this build waited for another one (which may
        # have relocked meanwhile).
        generation = (_ACTIONS[0], lock_waits())
        if known is not None and known[0] == generation:
            return known[1]
        valid = locking.stored_lock_state(self.plan, self.plan[EnvName(env)], self.layout).valid
        memo[env] = (generation, valid)
        return valid

    def _lock_uptodate(self, env: EnvName, reset: bool) -> bool:
        return not reset and self.lock_valid(env)

    def _module_files(self, layer: LayerPlan) -> list[Path]:
        """An app's launch and support module files (walked once per `StackTasks`)."""
        cache: dict[EnvName, list[Path]] = self.__dict__.setdefault("_module_cache", {})
        if layer.env_name not in cache:
            cache[layer.env_name] = self._walk_modules(layer)
        return list(cache[layer.env_name])

    def _walk_modules(self, layer: LayerPlan) -> list[Path]:
        spec = layer.spec
        if spec.kind is not LayerKind.APPLICATION or spec.launch_module is None:
            return []
        keep = default_source_filter(spec.launch_module.parent)
        files: list[Path] = []
        for module in (spec.launch_module, *spec.support_modules):
            if module.is_dir():
                for folder, _dirs, names in walk_source_tree(module, keep):
                    files.extend(folder / name for name in names)
            else:
                files.append(module)
        return files

    def install_task(self, layer: LayerPlan) -> TaskDict:
        env = layer.env_name
        stamp = self.layout.stamp("install", env)
        file_dep = [str(self.layout.lock(env).pylock)]
        task_dep = []
        if layer.kind is LayerKind.RUNTIME:
            file_dep.append(str(envbuild.provision_record_path(self.layout, env)))
        else:
            task_dep.append(task_name("install", layer.runtime))
        return {
            "basename": "install",
            "name": env,
            "doc": f"build the {env} environment from its lock",
            "actions": [
                (
                    run_operation,
                    [
                        _install_action,
                        str(stamp),
                        self.plan,
                        env,
                        self.layout,
                        self.cache,
                        self.lock_options.local_wheels,
                    ],
                )
            ],
            "file_dep": file_dep,
            "targets": [str(stamp)],
            "task_dep": task_dep,
            "uptodate": [
                # uv picks wheels for the build platform's glibc target at install time.
                ConfigChanged(layer.spec.linux_target or "default"),
                # The environment as the install (or the link after it) left it, file by file:
                # a deleted, edited or added file reinstalls it (and so relinks it).
                FolderIntact(
                    self.layout.env_dir(env),
                    envbuild.env_manifest_path(self.layout, env),
                    "environment",
                ),
            ],
        }

    def link_task(self, layer: LayerPlan) -> TaskDict:
        env = layer.env_name
        stamp = self.layout.stamp("link", env)
        deps = list(layer.dependencies)
        file_dep = [str(self.layout.stamp("install", env))]
        # The runtime's record holds its full X.Y.Z, written into the layer config.
        file_dep.append(str(envbuild.provision_record_path(self.layout, layer.runtime)))
        file_dep += [str(p) for p in self._module_files(layer)]
        digest = hash_strings([*deps, *layer.spec.dynlib_exclude, _link_format_version()])
        return {
            "basename": "link",
            "name": env,
            "doc": f"link {env} to its lower layers and add deployment files",
            "actions": [
                (run_operation, [envbuild.link_layer, str(stamp), self.plan, env, self.layout])
            ],
            "file_dep": file_dep,
            "targets": [str(stamp)],
            "task_dep": [task_name("install", env)] + [task_name("link", d) for d in deps],
            "uptodate": [
                ConfigChanged(digest),
                (_deployed_names_unchanged, [self.plan, env, self.layout]),
                (_path_exists, [self.layout.env_dir(env)]),
            ],
        }

    def names(self, operation: str, layers: Iterable[LayerPlan]) -> list[str]:
        """Names of `operation` tasks that exist for `layers` (not every layer has every task)."""
        known = {t["basename"] + ":" + t["name"] for t in self.all_tasks()}
        return [n for n in (task_name(operation, l.env_name) for l in layers) if n in known]


def _link_format_version() -> str:
    """Bumped when what the link step writes changes, so that old build dirs are relinked."""
    return "link-format-1"


def _publish_action(
    op: Callable[..., dict[str, Any]],
    plan: StackPlan,
    env: EnvName,
    layout: BuildLayout,
    options: Any,
    record: Path,
) -> dict[str, Any]:
    result = op(plan, env, layout, options, record)
    return {**result, "deployed_names": envbuild.deployed_names(plan, layout, env)}


def publish_task(stack: StackTasks, layer: LayerPlan, options: publish.PublishOptions) -> TaskDict:
    """`archive:<env>` (or `export:<env>` for local exports) of one built layer."""
    env = layer.env_name
    operation = "export" if options.export else "archive"
    op = publish.export_layer if options.export else archives.archive_layer
    layout = stack.layout
    stamp = layout.stamp(operation, env)
    file_dep = [str(layout.stamp("link", env)), str(layout.lock(env).metadata)]
    file_dep += [str(p) for p in stack._module_files(layer)]
    digest = hash_strings(
        [str(options.output_dir), str(options.fmt), str(options.tag_outputs), str(options.level)]
    )
    record = archives.record_path(layout, operation, env)
    uptodate: list[Any] = [
        ConfigChanged(digest),
        (_deployed_names_unchanged, [stack.plan, env, layout]),
        # The archive (or export folder) is not a task target: a deleted, damaged or half-
        # switched archive must make the task run, or the manifest would go on naming it.
        (archives.output_intact, [options, env, record]),
    ]
    if options.force:
        uptodate.append(False)
    return {
        "basename": operation,
        "name": env,
        "doc": f"{operation} {env} into {options.output_dir}",
        "actions": [
            (
                run_operation,
                [_publish_action, str(stamp), op, stack.plan, env, layout, options, record],
            )
        ],
        "file_dep": file_dep,
        "targets": [str(options.metadata_path(env)), str(stamp)],
        "task_dep": [task_name("link", env)],
        "uptodate": uptodate,
    }


def publish_tasks(stack: StackTasks, options: publish.PublishOptions) -> list[TaskDict]:
    """The `archive:` (or `export:`) task of every buildable layer."""
    return [publish_task(stack, layer, options) for layer in stack.buildable]
