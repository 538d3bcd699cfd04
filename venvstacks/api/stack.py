"""`venvstacks.Stack`: load a stack spec and lock, build, publish, export or inspect it.

Every command of the CLI is one call here; the CLI only parses options and renders results.
Nothing here prints: warnings go to the `venvstacks` logger, progress to the caller's listener.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from venvstacks.api import _publishing
from venvstacks.api._run import cache_sources, layer_outcomes, run_stack_tasks, task_outcomes
from venvstacks.api.options import (
    BuildOptions,
    ExportOptions,
    LockOptions,
    PublishOptions,
    Sources,
)
from venvstacks.api.results import (
    BuildResult,
    ProgressListener,
    PublishResult,
    StatusResult,
    TaskStatus,
)
from venvstacks.envs import build as envbuild
from venvstacks.errors import StackError
from venvstacks.lock import resolve as locking
from venvstacks.lock.state import StoredLocks
from venvstacks.plan.layers import LayerPlan, StackPlan, plan_stack, require_matches, select_layers
from venvstacks.plan.layout import BuildLayout
from venvstacks.report.render import Graph
from venvstacks.report.show import StackStatus, layer_graph, stack_status
from venvstacks.spec.stack import StackSpec, load_stack_spec
from venvstacks.tasks.stack import StackTasks

__all__ = ["Stack"]

_log = logging.getLogger("venvstacks")

_LOCK_FIELD_REASONS = {
    "metadata": "not locked yet",
    "pylock": "lock file missing",
    "lock_input_hash": "requirements changed",
    "requirements_hash": "lock file edited or damaged",
    "other_inputs_hash": "runtime version, target versions or frameworks changed",
    "version_inputs_hash": "launch/support modules or versioning changed",
    "venvstacks_inputs_hash": "platforms, indexes or lower layers' locks changed",
    "lower layer lock": "a lower layer must be relocked first",
}


class Stack:
    """A loaded, checked and planned stack spec with its build folder."""

    def __init__(self, spec: StackSpec, plan: StackPlan, layout: BuildLayout) -> None:
        self.spec = spec
        self.plan = plan
        self.layout = layout

    @classmethod
    def load(cls, spec_path: Path | str, build_dir: Path | str | None = None) -> Stack:
        """Read and check `spec_path` (raises `SpecError` naming every problem).

        `build_dir` defaults to `[tool.venvstacks] build-dir`, else `_build` beside the spec;
        a relative path is taken from the spec's folder. Spec warnings go to the logger.
        """
        spec = load_stack_spec(Path(spec_path))
        for warning in spec.warnings:
            _log.warning("warning: %s", warning)
        plan = plan_stack(spec)
        chosen = build_dir if build_dir is not None else spec.settings.build_dir
        return cls(spec, plan, BuildLayout.for_spec(spec.path, chosen))

    # --- what the stack holds ---------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.spec.path

    @property
    def build_dir(self) -> Path:
        return self.layout.build_dir

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Build names of the enabled layers, in build order (runtimes first)."""
        return tuple(layer.env_name for layer in self.plan.enabled)

    def select(
        self,
        include: Sequence[str] = (),
        *,
        allow_missing: bool = False,
        with_dependencies: bool = True,
        with_derived: bool = True,
    ) -> tuple[str, ...]:
        """Build names matching the fnmatch patterns (all layers when none are given)."""
        layers = self._layers(include, allow_missing, with_dependencies, with_derived)
        return tuple(layer.env_name for layer in layers)

    def _layers(
        self,
        include: Sequence[str],
        allow_missing: bool,
        with_dependencies: bool = True,
        with_derived: bool = True,
    ) -> tuple[LayerPlan, ...]:
        if not include:
            return self.plan.enabled
        layers, unmatched = select_layers(
            self.plan, include, with_dependencies=with_dependencies, with_derived=with_derived
        )
        warning = require_matches(self.plan, unmatched, allow_missing=allow_missing)
        if warning:
            _log.warning("warning: %s", warning)
        return layers

    # --- read-only views --------------------------------------------------------------------

    def show(
        self,
        include: Sequence[str] = (),
        *,
        allow_missing: bool = False,
        operations: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
    ) -> StackStatus:
        """The layers (and their lower layers) with their lock state: 0.8.0's `show --json`."""
        chosen = (
            tuple(self.plan[name] for name in layers)
            if layers is not None
            else self._layers(include, allow_missing)
        )
        ops: dict[str, Sequence[str]] | None = None
        if operations is not None:
            ops = {str(l.env_name): list(operations) for l in chosen}
        return stack_status(self.plan, chosen, StoredLocks(self.plan, self.layout), ops)

    def preview(
        self, options: LockOptions | BuildOptions | PublishOptions | ExportOptions
    ) -> StackStatus:
        """What `lock`/`build`/`publish`/`export` with these options would work on (nothing runs)."""
        if isinstance(options, LockOptions):
            layers, ops = self._layers(options.include, options.allow_missing), ["lock"]
        elif isinstance(options, BuildOptions):
            layers = self._layers(
                options.include, options.allow_missing, with_derived=options.with_derived
            )
            ops = [*(["build"] if options.build else []), *(["publish"] if options.publish else [])]
        else:
            layers = _publishing.publish_layers(self, options)
            ops = ["export" if isinstance(options, ExportOptions) else "publish"]
        if isinstance(options, LockOptions | BuildOptions):  # as the run would: bad names fail
            self._reset_envs(options.reset, options.allow_missing)
        return self.show(operations=ops, layers=[l.env_name for l in layers])

    def status(self, include: Sequence[str] = (), *, allow_missing: bool = False) -> StatusResult:
        """Every task of the selected layers: stale (will run), waiting or up to date, and why."""
        return self._status(self._layers(include, allow_missing))

    def _status(self, layers: Sequence[LayerPlan]) -> StatusResult:
        from venvstacks.tasks.engine import task_states
        from venvstacks.tasks.view import task_view

        all_tasks = StackTasks(self.plan, self.layout).all_tasks()
        states = task_states(all_tasks, self.layout.task_db)
        views = task_view(all_tasks, states, self.spec.spec_dir, self._lock_reasons())
        chosen = {layer.env_name for layer in layers}
        return StatusResult(
            tuple(
                TaskStatus(v.name, v.state, tuple(v.why), tuple(v.needs))
                for v in views
                if v.name.split(":", 1)[1] in chosen
            )
        )

    def _lock_reasons(self) -> dict[str, list[str]]:
        """Why each stale lock task is stale, in the lock metadata's own terms."""
        locks = StoredLocks(self.plan, self.layout)
        reasons: dict[str, list[str]] = {}
        for layer in self.plan.enabled:
            state = locks.state(layer.env_name)
            if not state.valid:
                reasons[f"lock:{layer.env_name}"] = [
                    _LOCK_FIELD_REASONS.get(f, f) for f in state.changed_fields
                ]
        return reasons

    def graph(
        self,
        include: Sequence[str] = (),
        *,
        allow_missing: bool = False,
        tasks: bool = False,
        with_status: bool = False,
        all_edges: bool = False,
    ) -> Graph:
        """The layer graph (or, with `tasks`, the task graph) as data for `report.render`.

        The task graph is drawn as its transitive reduction unless `all_edges`; `with_status`
        colours tasks by state and adds a legend.
        """
        from venvstacks.report.show import readable_task_graph
        from venvstacks.tasks.view import TaskView, task_graph

        layers = self._layers(include, allow_missing)
        if not tasks:
            return layer_graph(self.plan, layers, StoredLocks(self.plan, self.layout))
        views = [
            TaskView(t.name, t.state if with_status else "", t.why if with_status else (), t.needs)
            for t in self._status(layers).tasks
        ]
        drawing = task_graph(f"{self.spec.path.name} tasks", views, [l.env_name for l in layers])
        if not with_status:
            nodes = tuple(replace(n, state=None) for n in drawing.nodes)
            drawing = Graph(drawing.title, nodes, drawing.edges, drawing.groups)
        return readable_task_graph(drawing, all_edges=all_edges, legend=with_status)

    # --- running tasks ----------------------------------------------------------------------

    def lock(
        self, options: LockOptions | None = None, *, progress: ProgressListener | None = None
    ) -> BuildResult:
        """Lock the selected layers; only layers whose inputs changed are re-resolved."""
        options = options or LockOptions()
        layers = self._layers(options.include, options.allow_missing)
        if not layers:
            return BuildResult("lock", self.build_dir, {})
        tasks = self._tasks(options.sources, options.reset, options.allow_missing)
        if options.clean:
            self._forget_runtimes({layer.runtime for layer in layers})
        selected = [f"lock:{layer.env_name}" for layer in layers]
        return self._run("lock", tasks, selected, options.jobs, progress, layers)

    def build(
        self, options: BuildOptions | None = None, *, progress: ProgressListener | None = None
    ) -> BuildResult:
        """Build the selected layers' environments for this platform (see `BuildOptions`)."""
        options = options or BuildOptions()
        layers = self._layers(
            options.include, options.allow_missing, with_derived=options.with_derived
        )
        lock_options = self._lock_options(options.sources, options.reset, options.allow_missing)
        publishing = None
        to_publish: tuple[LayerPlan, ...] = ()
        if options.publish is not None:
            request = options.publish
            if options.clean:
                request = replace(request, force=True)
            publishing = _publishing.internal_options(self, request, export=False)
            to_publish = self._layers(
                options.include,
                True,
                with_dependencies=request.with_dependencies,
                with_derived=request.with_derived,
            )
        tasks = StackTasks(
            self.plan,
            self.layout,
            lock_options=lock_options,
            runtime_options=self._runtime_options(options.sources),
            publishing=publishing,
            cache=_layer_cache(options.sources),
        )
        stale = self._stale_locks(layers, tasks)
        if stale and not (options.lock_if_needed or lock_options.reset):
            raise StackError(
                f"layers without a valid lock: {', '.join(stale)} "
                "(run `venvstacks lock`, or pass --lock-if-needed)"
            )
        if options.clean:  # only what was asked for: lower layers pulled in by include are kept
            self._clean_envs(
                self._layers(options.include, True, False, with_derived=options.with_derived)
            )
        selected = tasks.names("link", layers) if options.build else []
        if not options.build and options.lock_if_needed:
            selected = [f"lock:{layer.env_name}" for layer in layers]
        if publishing is not None:
            selected += tasks.names("archive", to_publish)
        if not selected:
            return BuildResult("build", self.build_dir, {})
        archived = [name.split(":", 1)[1] for name in selected if name.startswith("archive:")]
        before = _publishing.snapshot(publishing, archived) if publishing else {}
        try:
            result = self._run("build", tasks, selected, options.jobs, progress, layers)
        except StackError:  # what did build is still shared
            _share(tasks, lock_options, layers, progress)
            raise
        result = replace(result, remote_cache=_share(tasks, lock_options, layers, progress))
        if publishing is None:
            return result
        published = _publishing.collect(self, publishing, archived, before, result.ran)
        return _publishing.with_published(result, published)

    def publish(
        self, options: PublishOptions | None = None, *, progress: ProgressListener | None = None
    ) -> PublishResult:
        """Archive the selected built layers with their metadata; never locks or builds."""
        return _publishing.publish(self, options or PublishOptions(), progress, export=False)

    def export(
        self, options: ExportOptions | None = None, *, progress: ProgressListener | None = None
    ) -> PublishResult:
        """Export the selected built layers as ready-to-run folders; never locks or builds."""
        return _publishing.publish(self, options or ExportOptions(), progress, export=True)

    # --- helpers ----------------------------------------------------------------------------

    def _run(
        self,
        command: str,
        tasks: StackTasks,
        selected: list[str],
        jobs: int,
        progress: ProgressListener | None,
        layers: Sequence[LayerPlan],
    ) -> BuildResult:
        run = run_stack_tasks(self.layout, tasks, selected, jobs, progress)
        outcomes = task_outcomes(run)
        return BuildResult(
            command,
            self.build_dir,
            layer_outcomes(self.layout, self.plan.enabled, outcomes, cache_sources(run)),
            selected=tuple(layer.env_name for layer in layers),
            ran=tuple(run.executed),
            up_to_date=tuple(run.up_to_date),
        )

    def _tasks(self, sources: Sources, reset: Sequence[str], allow_missing: bool) -> StackTasks:
        return StackTasks(
            self.plan,
            self.layout,
            lock_options=self._lock_options(sources, reset, allow_missing),
            runtime_options=self._runtime_options(sources),
            cache=_layer_cache(sources),
        )

    def _reset_envs(self, reset: Sequence[str], allow_missing: bool) -> set[str]:
        """The layers `--reset-lock` names (an error naming the spec when one names none)."""
        if not reset:
            return set()
        chosen, unmatched = select_layers(
            self.plan, reset, with_dependencies=False, with_derived=False
        )
        warning = require_matches(
            self.plan, unmatched, allow_missing=allow_missing, option="--reset-lock"
        )
        if warning:
            _log.warning("warning: %s", warning)
        return {layer.env_name for layer in chosen}

    def _runtime_options(self, sources: Sources) -> envbuild.RuntimeOptions:
        from venvstacks.runtimes.request import archive_dirs_from

        dirs = [self.spec.spec_dir / p for p in sources.runtime_archives]
        archive_dirs = archive_dirs_from(
            dirs, os.environ, list(self.spec.settings.runtime_archives)
        )
        return envbuild.RuntimeOptions(
            archive_dirs=tuple(archive_dirs),
            fallback=sources.runtime_fallback or self.spec.settings.runtime_fallback,
            base_url=os.environ.get("VENVSTACKS_PBS_BASE_URL"),
        )

    def _lock_options(
        self, sources: Sources, reset: Sequence[str], allow_missing: bool
    ) -> locking.LockOptions:
        reset_envs = self._reset_envs(reset, allow_missing)
        wheels = tuple((self.spec.spec_dir / p).absolute() for p in sources.local_wheels)
        missing = [str(p) for p in wheels if not p.is_dir()]
        if missing:
            raise StackError(f"--local-wheels folder does not exist: {', '.join(missing)}")
        return locking.LockOptions(
            use_index=sources.use_index,
            local_wheels=wheels,
            reset=frozenset(reset_envs),
            exclude_newer=self._exclude_newer(),
        )

    def _exclude_newer(self) -> Any:
        from venvstacks.spec.indexes import parse_timestamp

        text = os.environ.get("UV_EXCLUDE_NEWER")
        if not text:
            return self.spec.uv.exclude_newer
        problems: list[str] = []
        value = parse_timestamp(text, "UV_EXCLUDE_NEWER", problems)
        if problems:
            raise StackError(problems[0])
        return value

    def _stale_locks(self, layers: Sequence[LayerPlan], tasks: StackTasks) -> list[str]:
        needed: dict[str, None] = {}
        for layer in layers:
            for env in (*layer.dependencies, layer.env_name):
                needed[env] = None
        # Asked through the tasks: their lock checks then reuse the answers on a no-op.
        return [env for env in needed if not tasks.lock_valid(env)]

    def _forget_runtimes(self, runtimes: set[str]) -> None:
        """Remove provisioned runtime interpreters so that their runtime tasks unpack them again."""
        for env in sorted(runtimes):
            shutil.rmtree(self.layout.runtime_cache / env, ignore_errors=True)
            (self.layout.runtime_cache / f"{env}.json").unlink(missing_ok=True)

    def _clean_envs(self, layers: Sequence[LayerPlan]) -> None:
        for layer in layers:
            shutil.rmtree(self.layout.env_dir(layer.env_name), ignore_errors=True)
            for op in ("install", "link"):
                self.layout.stamp(op, layer.env_name).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Stack({str(self.path)!r}, build_dir={str(self.build_dir)!r})"


def _share(
    tasks: StackTasks,
    options: locking.LockOptions,
    layers: Sequence[LayerPlan],
    progress: ProgressListener | None = None,
) -> dict[str, Any] | None:
    """With a remote cache: push what the build's layers left in the layer cache; its report.

    The pushes are a run of their own for `progress`: `begin` with every push about to run
    (`push-lock:<layer>`, `push-env:<layer>`), each one's `start` and `done`/`fail`, `end`
    (nothing at all when the registry lacks nothing).
    """
    if getattr(tasks.cache, "remote", None) is None:
        return None
    from venvstacks.api._run import emitting
    from venvstacks.cache.remote import share_build

    def around(names: Sequence[str]) -> emitting:
        return emitting(progress, names)

    stats = share_build(tasks.cache, tasks.plan, tasks.layout, options, layers, around)
    return None if stats is None else stats.to_json()


def _layer_cache(sources: Sources) -> Any:
    """The layer cache the tasks use (`$VENVSTACKS_CACHE_DIR`...), or None when it is off;
    with the remote cache behind it when one is given."""
    from venvstacks.cache.store import LayerCache

    remote = sources.remote_cache
    if remote is not None and not sources.layer_cache:
        raise StackError("the remote cache needs the layer cache (drop --no-layer-cache)")
    cache = LayerCache.from_environment() if sources.layer_cache else None
    if cache is not None and remote is not None:
        from venvstacks.cache.remote import RemoteCache as Remote
        from venvstacks.oci.transport import TransportOptions

        transport = TransportOptions(remote.plain_http, remote.insecure, remote.ca_file)
        cache.remote = Remote.open(remote.url, transport, read_only=remote.read_only)
    return cache
