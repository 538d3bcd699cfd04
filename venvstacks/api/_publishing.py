"""`Stack.publish` and `Stack.export` (and `build --publish`): choose layers, run the archive or
export tasks, and say per layer what was written and what was reused."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from venvstacks.api._run import run_stack_tasks
from venvstacks.api.options import ExportOptions, PublishOptions
from venvstacks.api.results import (
    BuildResult,
    Outcome,
    ProgressListener,
    PublishedLayer,
    PublishResult,
)
from venvstacks.errors import StackError
from venvstacks.plan.layers import LayerPlan
from venvstacks.plan.names import EnvName
from venvstacks.plan.platforms import build_platform
from venvstacks.publish import layers as publishing
from venvstacks.publish.formats import LEVEL_RANGES, ArchiveFormat

if TYPE_CHECKING:
    from venvstacks.api.stack import Stack

__all__ = ["collect", "internal_options", "publish", "publish_layers", "snapshot", "with_published"]

Request = PublishOptions | ExportOptions


def internal_options(stack: Stack, request: Request, *, export: bool) -> publishing.PublishOptions:
    """The publish layer's options: output folder, format and level settled from the spec."""
    settings = stack.spec.settings
    given = request.output_dir
    if given is None and not export and settings.output_dir:
        given = settings.output_dir
    folder = stack.layout.output_dir(
        Path(given).expanduser() if given is not None else None,
        "_export" if export else "_artifacts",
    )
    if isinstance(request, ExportOptions):
        return publishing.PublishOptions(folder.absolute(), force=request.force, export=True)
    fmt = ArchiveFormat(request.fmt or settings.archive_format or str(ArchiveFormat.TAR_XZ))
    level = request.compression_level
    if level is None:
        level = settings.compression_level
    if level is not None:
        low, high = LEVEL_RANGES[str(fmt)]
        if not low <= level <= high:
            raise StackError(f"compression level for {fmt} must be {low} to {high}, not {level}")
    return publishing.PublishOptions(
        folder.absolute(), fmt, request.tag_outputs, request.force, False, level
    )


def publish_layers(stack: Stack, request: Request) -> tuple[LayerPlan, ...]:
    """The included layers (with lower/derived layers only when asked) built for this platform."""
    layers = stack._layers(
        request.include, request.allow_missing, request.with_dependencies, request.with_derived
    )
    return tuple(layer for layer in layers if layer.targets(build_platform()))


def _ensure_built(stack: Stack, layers: Sequence[LayerPlan]) -> None:
    """publish and export never build: the selected layers must be built and current."""
    stale = sorted(
        {
            task.name.split(":", 1)[1]
            for task in stack._status(layers).tasks
            if task.name.startswith(("lock:", "install:", "link:", "runtime:"))
            and task.state != "up-to-date"
        }
    )
    if stale:
        raise StackError(
            f"not built or out of date: {', '.join(stale)} (run `venvstacks build` first)"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _identity(meta: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What tells one written archive from another (equal before and after: it was reused)."""
    if meta is None:
        return None
    return (meta.get("archive_name"), meta.get("archive_build"), meta.get("archive_hashes"))


def snapshot(options: publishing.PublishOptions, envs: Sequence[str]) -> dict[str, Any]:
    """Each layer's published archive before a run, to tell written from reused afterwards."""
    return {env: _identity(_read_json(options.metadata_path(EnvName(env)))) for env in envs}


def collect(
    stack: Stack,
    options: publishing.PublishOptions,
    envs: Sequence[str],
    before: Mapping[str, Any],
    ran: Sequence[str],
) -> PublishResult:
    """Write the stack manifest for `envs` and describe each layer's archive or folder."""
    manifest = publishing.write_manifest(stack.plan, [EnvName(e) for e in envs], options)
    operation = "export" if options.export else "archive"
    layers: dict[str, PublishedLayer] = {}
    for env in envs:
        path = options.metadata_path(EnvName(env))
        meta = _read_json(path) or {}
        if options.export:
            artefact = options.output_dir / str(meta.get("install_target", env))
            written = f"{operation}:{env}" in ran
        else:
            artefact = options.output_dir / str(meta.get("archive_name", ""))
            written = f"{operation}:{env}" in ran and _identity(meta) != before.get(env)
        outcome = Outcome.RAN if written else Outcome.UP_TO_DATE
        layers[env] = PublishedLayer(outcome, artefact, path, meta)
    return PublishResult(options.output_dir, options.export, False, manifest, layers)


def with_published(result: BuildResult, published: PublishResult) -> BuildResult:
    layers = dict(result.layers)
    for env, layer in published.layers.items():
        if env in layers:
            layers[env] = replace(layers[env], published=layer)
    return replace(result, layers=layers, published=published)


def publish(
    stack: Stack, request: Request, progress: ProgressListener | None, *, export: bool
) -> PublishResult:
    from venvstacks.tasks.stack import StackTasks

    layers = publish_layers(stack, request)
    options = internal_options(stack, request, export=export)
    if not layers:
        return PublishResult(options.output_dir, export, request.dry_run, None, {})
    _ensure_built(stack, layers)
    envs = [layer.env_name for layer in layers]
    if request.dry_run:
        from venvstacks.publish.archives import planned_manifest

        # The whole manifest a real run would write (every layer kept in it), in its order.
        planned = planned_manifest(stack.plan, stack.layout, envs, options)["layers"]
        requests: dict[str, Mapping[str, Any]] = {
            str(meta["layer_name"]): meta for entries in planned.values() for meta in entries
        }
        return PublishResult(options.output_dir, export, True, None, {}, requests)
    tasks = StackTasks(stack.plan, stack.layout, publishing=options)
    operation = "export" if export else "archive"
    before = snapshot(options, envs)
    run = run_stack_tasks(
        stack.layout, tasks, [f"{operation}:{env}" for env in envs], request.jobs, progress
    )
    return collect(stack, options, envs, before, run.executed)
