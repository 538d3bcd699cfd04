"""`venvstacks publish` and `venvstacks local-export`: archives or folders, with metadata."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from venvstacks.cli.build import shown_and_done
from venvstacks.cli.common import (
    LoadedStack,
    build_dir_option,
    choose_layers,
    include_options,
    jobs_option,
    load_stack,
    selection_display_options,
    spec_argument,
)
from venvstacks.errors import StackError
from venvstacks.plan.layers import LayerPlan
from venvstacks.plan.layout import relative_to_common
from venvstacks.publish.archive import LEVEL_RANGES, ArchiveFormat
from venvstacks.publish.layers import PublishOptions, layer_metadata, write_manifest

__all__ = ["COMMANDS", "publish_options_from", "report_published"]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = [str(f) for f in ArchiveFormat]


def output_options(default_dir: str, archives: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        options = [
            click.option(
                "--output-dir",
                metavar="DIR",
                default=None,
                help=f"Where to publish (default: {default_dir} beside the spec).",
            ),
            click.option(
                "--force/--no-force",
                default=False,
                help="Rebuild even when the published content is unchanged.",
            ),
            click.option(
                "--dry-run/--no-dry-run",
                default=False,
                help="Report what would be published, write nothing.",
            ),
            click.option(
                "--publish-dependencies",
                is_flag=True,
                help="Also publish the lower layers of --include'd layers.",
            ),
            click.option(
                "--publish-derived",
                is_flag=True,
                help="Also publish the layers built on --include'd layers.",
            ),
            jobs_option("Publish up to N layers at once."),
            *selection_display_options("publishing"),
        ]
        if archives:
            options += [
                click.option(
                    "--format",
                    "fmt",
                    type=click.Choice(FORMATS),
                    default=None,
                    help="Archive format (default: [tool.venvstacks] archive-format, else tar.xz, as venvstacks 0.8.0).",
                ),
                click.option(
                    "--tag-outputs/--no-tag-outputs",
                    default=False,
                    help="Add the platform and build number to archive and metadata names.",
                ),
                click.option(
                    "--compression-level",
                    "level",
                    type=click.IntRange(0, 22),
                    default=None,
                    help="Compression level (default: xz 1, gz 6, zst 3, zip 6; also "
                    "[tool.venvstacks] compression-level).",
                ),
            ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def publish_options_from(
    stack: LoadedStack,
    output_dir: str | None,
    fmt: str | None,
    tag_outputs: bool,
    force: bool,
    export: bool,
    level: int | None = None,
) -> PublishOptions:
    default = "_export" if export else "_artifacts"
    settings = stack.spec.settings
    chosen_dir = (
        Path(output_dir).expanduser()
        if output_dir
        else (settings.output_dir if not export and settings.output_dir else None)
    )
    folder = stack.layout.output_dir(chosen_dir, default)
    chosen_fmt = ArchiveFormat(fmt or settings.archive_format or str(ArchiveFormat.TAR_XZ))
    chosen_level = level if level is not None else settings.compression_level
    if chosen_level is not None:
        low, high = LEVEL_RANGES[str(chosen_fmt)]
        if not low <= chosen_level <= high:
            raise StackError(
                f"compression level for {chosen_fmt} must be {low} to {high}, not {chosen_level}"
            )
    return PublishOptions(folder.absolute(), chosen_fmt, tag_outputs, force, export, chosen_level)


def selected_layers(
    stack: LoadedStack, include: Sequence[str], allow_missing: bool, deps: bool, derived: bool
) -> tuple[LayerPlan, ...]:
    from venvstacks.plan.platforms import build_platform

    layers = choose_layers(
        stack.plan, include, allow_missing, with_dependencies=deps, with_derived=derived
    )
    return tuple(l for l in layers if l.targets(build_platform()))


def _ensure_built(stack: LoadedStack, layers: Sequence[LayerPlan]) -> None:
    """publish and local-export never build: the selected layers must be built and current."""
    from venvstacks.cli.status import stack_task_views

    views = stack_task_views(stack, layers)
    stale = sorted(
        {
            v.name.split(":", 1)[1]
            for v in views
            if v.name.startswith(("lock:", "install:", "link:", "runtime:"))
            and v.state != "up-to-date"
        }
    )
    if stale:
        raise StackError(
            f"not built or out of date: {', '.join(stale)} (run `venvstacks build` first)"
        )


def report_published(stack: LoadedStack, options: PublishOptions, envs: Sequence[str]) -> None:
    manifest = write_manifest(stack.plan, envs, options)  # type: ignore[arg-type]
    data = json.loads(manifest.read_text())
    data["layers"] = {k: data["layers"][k] for k in ("runtimes", "frameworks", "applications")}
    click.echo(json.dumps(data, indent=2, sort_keys=True))
    paths = [manifest] + [options.metadata_path(e) for e in envs]  # type: ignore[arg-type]
    if options.export:
        artefacts = [
            options.output_dir / m["install_target"]
            for kind in data["layers"].values()
            for m in kind
        ]
    else:
        artefacts = [
            options.output_dir / m["archive_name"] for kind in data["layers"].values() for m in kind
        ]
    base, relative = relative_to_common([*paths, *artefacts])
    noun = "export" if options.export else "stack"
    click.echo(f"Full {noun} manifest saved to: {relative[0]}")
    click.echo("Individual layer manifests:")
    for rel in relative[1 : len(paths)]:
        click.echo(f"  {rel}")
    click.echo("Exported environments:" if options.export else "Generated artifacts:")
    for rel in relative[len(paths) :]:
        click.echo(f"  {rel}")
    click.echo(f"All paths reported relative to {base}")


def _dry_run(stack: LoadedStack, options: PublishOptions, layers: Sequence[LayerPlan]) -> None:
    requests = {l.kind.category: [] for l in layers}  # type: dict[str, list[Any]]
    for layer in layers:
        requests[layer.kind.category].append(
            layer_metadata(stack.plan, stack.layout, layer.env_name)
        )
    what = "Environment export" if options.export else "Archive creation"
    click.echo(
        f"{what} skipped, reporting {'local export' if options.export else 'publishing'} request details:"
    )
    click.echo(json.dumps({"layers": requests}, indent=2, sort_keys=True))
    click.echo(
        f"{'Environments' if options.export else 'Archives and metadata'} will be published to {options.output_dir}"
    )


def run_publish(
    ctx: click.Context,
    stack: LoadedStack,
    layers: Sequence[LayerPlan],
    options: PublishOptions,
    jobs: int,
    dry_run: bool,
) -> None:
    from venvstacks.cli.build import run_stack_tasks
    from venvstacks.tasks.stack import StackTasks

    if not layers:
        click.echo("No environments found to publish on this platform")
        return
    if dry_run:
        _dry_run(stack, options, layers)
        return
    tasks = StackTasks(stack.plan, stack.layout, publishing=options)
    operation = "export" if options.export else "archive"
    run_stack_tasks(stack, tasks, [f"{operation}:{l.env_name}" for l in layers], jobs, ctx)
    report_published(stack, options, [l.env_name for l in layers])


@click.command()
@spec_argument
@build_dir_option
@include_options
@output_options("_artifacts", archives=True)
@click.pass_context
def publish(
    ctx: click.Context,
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    output_dir: str | None,
    force: bool,
    dry_run: bool,
    publish_dependencies: bool,
    publish_derived: bool,
    jobs: int,
    show_first: bool,
    show_only: bool,
    as_json: bool,
    fmt: str | None,
    tag_outputs: bool,
    level: int | None,
) -> None:
    """Archive built layers reproducibly, with metadata, into the output dir.

    Writes <install target>.tar.xz (or --format) per layer, __venvstacks__/venvstacks.json and
    __venvstacks__/env_metadata/<layer>.json. Never locks or builds; an archive is only rewritten
    when the layer's content changed (archive_build counts real rebuilds).
    """
    stack = load_stack(spec_path, build_dir)
    layers = selected_layers(stack, include, allow_missing, publish_dependencies, publish_derived)
    if shown_and_done(
        stack, layers, ["publish"], show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    options = publish_options_from(stack, output_dir, fmt, tag_outputs, force, False, level)
    _ensure_built(stack, layers)
    run_publish(ctx, stack, layers, options, jobs, dry_run)


@click.command(name="local-export")
@spec_argument
@build_dir_option
@include_options
@output_options("_export", archives=False)
@click.pass_context
def local_export(
    ctx: click.Context,
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    output_dir: str | None,
    force: bool,
    dry_run: bool,
    publish_dependencies: bool,
    publish_derived: bool,
    jobs: int,
    show_first: bool,
    show_only: bool,
    as_json: bool,
) -> None:
    """Export built layers as ready-to-run folders (post-installed in place) into the output dir.

    Each layer becomes <output>/<install target>/ with its metadata in __venvstacks__/. Files are
    hard-linked from the build dir where possible; never locks or builds.
    """
    stack = load_stack(spec_path, build_dir)
    layers = selected_layers(stack, include, allow_missing, publish_dependencies, publish_derived)
    if shown_and_done(
        stack, layers, ["export"], show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    options = publish_options_from(stack, output_dir, None, False, force, export=True)
    _ensure_built(stack, layers)
    run_publish(ctx, stack, layers, options, jobs, dry_run)


COMMANDS = [publish, local_export]
