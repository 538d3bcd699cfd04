"""`venvstacks publish` and `venvstacks local-export`: call `Stack.publish`/`Stack.export`, render."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from venvstacks.api.options import ExportOptions, PublishOptions
from venvstacks.api.results import PublishResult, publish_report
from venvstacks.api.stack import Stack
from venvstacks.cli.common import (
    build_dir_option,
    include_options_selecting,
    jobs_option,
    load_stack,
    selection_display_options,
    spec_argument,
)
from venvstacks.cli.output import Output, report_option, shown_and_done, subscriber
from venvstacks.cli.registry import PushRequest, push_options, push_output
from venvstacks.plan.layout import relative_to_common
from venvstacks.publish.formats import ArchiveFormat

__all__ = ["COMMANDS", "render_published"]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = [str(f) for f in ArchiveFormat]
INCLUDE_SELECTS = (
    "Their lower layers are added only with --publish-dependencies, and the layers built on "
    "them only with --publish-derived."
)


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
            report_option,
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


def render_published(out: Output, result: PublishResult) -> None:
    """The paths a publish or export wrote (the manifest itself is in the file and the report)."""
    noun = "export" if result.export else "stack"
    if result.manifest is None:
        return
    metadata = [layer.metadata_path for layer in result.layers.values()]
    artefacts = [layer.artefact for layer in result.layers.values()]
    base, relative = relative_to_common([result.manifest, *metadata, *artefacts])
    out.say(f"Full {noun} manifest saved to: {relative[0]}")
    out.say("Individual layer manifests:")
    for rel in relative[1 : 1 + len(metadata)]:
        out.say(f"  {rel}")
    out.say("Exported environments:" if result.export else "Generated artifacts:")
    for rel in relative[1 + len(metadata) :]:
        out.say(f"  {rel}")
    out.say(f"All paths reported relative to {base}")


def _render_dry_run(out: Output, stack: Stack, result: PublishResult) -> None:
    requests: dict[str, list[Any]] = {}
    for env, meta in result.requests.items():
        requests.setdefault(stack.plan[env].kind.category, []).append(dict(meta))
    what = "Environment export" if result.export else "Archive creation"
    doing = "local export" if result.export else "publishing"
    out.say(f"{what} skipped, reporting {doing} request details:")
    out.say(json.dumps({"layers": requests}, indent=2, sort_keys=True))
    where = "Environments" if result.export else "Archives and metadata"
    out.say(f"{where} will be published to {result.output_dir}")


def _render(out: Output, stack: Stack, result: PublishResult, command: str) -> None:
    if not result.layers and not result.requests:
        out.say("No environments found to publish on this platform")
    elif result.dry_run:
        _render_dry_run(out, stack, result)
    else:
        render_published(out, result)
    out.report(publish_report(command, result))


@click.command()
@spec_argument
@build_dir_option
@include_options_selecting(INCLUDE_SELECTS)
@output_options("_artifacts", archives=True)
@push_options
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
    report: str | None,
    fmt: Any,
    tag_outputs: bool,
    level: int | None,
    push: PushRequest | None,
) -> None:
    """Archive built layers reproducibly, with metadata, into the output dir.

    Writes <install target>.tar.xz (or --format) per layer, __venvstacks__/venvstacks.json and
    __venvstacks__/env_metadata/<layer>.json. Never locks or builds; an archive is only rewritten
    when the layer's content changed (archive_build counts real rebuilds). With --to
    oci://HOST[:PORT]/REPO, the published layers are also pushed to that registry repository
    (only the archives it lacks are uploaded) and the stack's index is tagged --tag.
    """
    out = Output(as_json=as_json, report=report)
    stack = load_stack(spec_path, build_dir)
    options = PublishOptions(
        include=include,
        allow_missing=allow_missing,
        with_dependencies=publish_dependencies,
        with_derived=publish_derived,
        output_dir=output_dir,
        fmt=fmt,
        tag_outputs=tag_outputs,
        compression_level=level,
        force=force,
        dry_run=dry_run,
        jobs=jobs,
    )
    if shown_and_done(
        out, stack, options, show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    result = stack.publish(options, progress=subscriber(ctx))
    _render(out, stack, result, "publish")
    if push is not None and result.layers and not result.dry_run:
        push_output(result.output_dir, push, say=out.say)


@click.command(name="local-export")
@spec_argument
@build_dir_option
@include_options_selecting(INCLUDE_SELECTS)
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
    report: str | None,
) -> None:
    """Export built layers as ready-to-run folders (post-installed in place) into the output dir.

    Each layer becomes <output>/<install target>/ with its metadata in __venvstacks__/. Files are
    hard-linked from the build dir where possible; never locks or builds.
    """
    out = Output(as_json=as_json, report=report)
    stack = load_stack(spec_path, build_dir)
    options = ExportOptions(
        include=include,
        allow_missing=allow_missing,
        with_dependencies=publish_dependencies,
        with_derived=publish_derived,
        output_dir=output_dir,
        force=force,
        dry_run=dry_run,
        jobs=jobs,
    )
    if shown_and_done(
        out, stack, options, show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    _render(out, stack, stack.export(options, progress=subscriber(ctx)), "local-export")


COMMANDS = [publish, local_export]
