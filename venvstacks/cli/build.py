"""`venvstacks lock` and `venvstacks build`: parse options, call `Stack.lock`/`Stack.build`, render."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from venvstacks.api.options import BuildOptions, LockOptions, PublishOptions, RemoteCache, Sources
from venvstacks.api.results import BuildResult
from venvstacks.cli.cache import no_layer_cache_option
from venvstacks.cli.common import (
    build_dir_option,
    include_options,
    include_options_selecting,
    jobs_option,
    load_stack,
    selection_display_options,
    spec_argument,
)
from venvstacks.cli.output import Output, report_option, shown_and_done, subscriber
from venvstacks.cli.registry import PushRequest, build_registry_options
from venvstacks.plan.layout import relative_to_common

__all__ = ["COMMANDS", "lock_options", "sources_from"]

F = TypeVar("F", bound=Callable[..., Any])


def lock_options(func: F) -> F:
    """Options shared by the commands that may lock layers."""
    decorators = [
        click.option(
            "--index/--no-index",
            "use_index",
            default=True,
            help="Query the package indexes (--no-index: only --local-wheels).",
        ),
        click.option(
            "--local-wheels",
            metavar="DIR",
            multiple=True,
            type=click.Path(path_type=Path, file_okay=False),
            help="A folder of wheels to lock and install from; repeatable.",
        ),
        click.option(
            "--reset-lock",
            metavar="PATTERN",
            multiple=True,
            help="Re-resolve these layers from scratch (newest allowed versions); repeatable.",
        ),
        click.option(
            "--runtime-archives",
            metavar="DIR",
            multiple=True,
            type=click.Path(path_type=Path, file_okay=False),
            help="A folder of python-build-standalone runtime archives; repeatable. Also $VENVSTACKS_RUNTIME_ARCHIVES and [tool.venvstacks] runtime-archives.",
        ),
        click.option(
            "--runtime-fallback",
            type=click.Choice(["none", "host"]),
            default=None,
            help="'host': when no archive is found and the download fails, pack a matching Python from this machine.",
        ),
        jobs_option("Run up to N independent tasks at once."),
        no_layer_cache_option,
        *selection_display_options("running"),
        report_option,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def sources_from(
    use_index: bool,
    local_wheels: Sequence[Path],
    runtime_archives: Sequence[Path],
    runtime_fallback: str | None,
    layer_cache: bool = True,
    remote_cache: RemoteCache | None = None,
) -> Sources:
    """The API's `Sources`; runtime archive folders on the command line are taken from the cwd."""
    return Sources(
        use_index=use_index,
        local_wheels=tuple(local_wheels),
        runtime_archives=tuple(p.expanduser().absolute() for p in runtime_archives),
        runtime_fallback="host"
        if runtime_fallback == "host"
        else None
        if not runtime_fallback
        else "none",
        layer_cache=layer_cache,
        remote_cache=remote_cache,
    )


@click.command()
@spec_argument
@build_dir_option
@include_options
@lock_options
@click.option(
    "--if-needed/--no-if-needed",
    default=True,
    help="Accepted for compatibility: layers are only relocked when their inputs changed (use --reset-lock to force).",
)
@click.option(
    "--lock-dependencies/--no-lock-dependencies",
    default=False,
    help="Accepted for compatibility: lower layers are always brought up to date first.",
)
@click.option(
    "--clean/--no-clean",
    default=False,
    help="Unpack the runtimes' interpreters afresh before locking.",
)
@click.pass_context
def lock(
    ctx: click.Context,
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    use_index: bool,
    local_wheels: tuple[Path, ...],
    reset_lock: tuple[str, ...],
    runtime_archives: tuple[Path, ...],
    runtime_fallback: str | None,
    jobs: int,
    no_layer_cache: bool,
    show_first: bool,
    show_only: bool,
    as_json: bool,
    report: str | None,
    if_needed: bool,
    lock_dependencies: bool,
    clean: bool,
) -> None:
    """Lock the layers of a stack: requirements/<layer>/pylock.<layer>.toml and its metadata.

    Only layers whose inputs (requirements, lower layers' locks, targets, indexes) changed are
    re-resolved; a relock that gives the same lock changes no file.
    """
    out = Output(as_json=as_json, report=report)
    stack = load_stack(spec_path, build_dir)
    options = LockOptions(
        include=include,
        allow_missing=allow_missing,
        sources=sources_from(
            use_index, local_wheels, runtime_archives, runtime_fallback, not no_layer_cache
        ),
        reset=reset_lock,
        clean=clean,
        jobs=jobs,
    )
    if shown_and_done(
        out, stack, options, show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    result = stack.lock(options, progress=subscriber(ctx))
    _render_locked(out, result)
    out.report(result.to_json())


def _render_locked(out: Output, result: BuildResult) -> None:
    locked = [result.layers[name] for name in result.selected if name in result.layers]
    if not locked:
        out.say("No environments found to lock")
        return
    base, relative = relative_to_common([layer.lock_file for layer in locked if layer.lock_file])
    out.say("Locked environments:")
    for layer, rel in zip(locked, relative, strict=True):
        out.say(f"  {rel} (locked at: {layer.locked_at})")
    out.say(f"All paths reported relative to {base}")


@click.command()
@spec_argument
@build_dir_option
@include_options_selecting(
    "Their lower layers are built too; the layers built on them only with "
    "--build-derived. With --publish, only the included layers are archived (see "
    "--publish-dependencies, --publish-derived)."
)
@lock_options
@click.option(
    "--lock-if-needed/--no-lock-if-needed",
    "lock_if_needed",
    default=False,
    help="Lock layers whose lock is missing or out of date, instead of failing.",
)
@click.option("--lock/--no-lock", "lock_alias", default=False, hidden=True)
@click.option(
    "--clean/--no-clean",
    default=False,
    help="Rebuild the selected environments (and, with --publish, archives) from scratch.",
)
@click.option(
    "--build-dependencies/--no-build-dependencies",
    default=False,
    help="Accepted for compatibility: lower layers are always brought up to date first.",
)
@click.option("--lock-dependencies/--no-lock-dependencies", default=False, hidden=True)
@click.option(
    "--publish/--no-publish",
    "do_publish",
    default=False,
    help="Also publish archives of the built layers (see `venvstacks publish`).",
)
@click.option(
    "--output-dir",
    metavar="DIR",
    default=None,
    help="With --publish: where archives go (default: _artifacts beside the spec).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tar.xz", "tar.gz", "tar.zst", "zip"]),
    default=None,
    help="With --publish: archive format (default tar.xz).",
)
@click.option(
    "--tag-outputs/--no-tag-outputs",
    default=False,
    help="With --publish: add platform and build number to archive names.",
)
@click.option(
    "--compression-level",
    "level",
    type=click.IntRange(0, 22),
    default=None,
    help="With --publish: compression level (default: xz 1, gz 6, zst 3, zip 6).",
)
@click.option(
    "--build/--no-build",
    "do_build",
    default=True,
    help="--no-build: only lock (with --lock-if-needed) and/or publish; layers an archive needs are still brought up to date.",
)
@click.option(
    "--build-derived",
    is_flag=True,
    help="With --include: also build the layers built on the included ones.",
)
@click.option(
    "--publish-dependencies",
    is_flag=True,
    help="With --include --publish: also publish the lower layers of the included ones.",
)
@click.option(
    "--publish-derived",
    is_flag=True,
    help="With --include --publish: also publish the layers built on the included ones.",
)
@click.option(
    "--include-dependencies/--no-include-dependencies",
    default=None,
    help="Accepted for compatibility: --include-dependencies also publishes the lower layers.",
)
@click.option("--force/--no-force", default=False, hidden=True)
@build_registry_options
@click.pass_context
def build(
    ctx: click.Context,
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    use_index: bool,
    local_wheels: tuple[Path, ...],
    reset_lock: tuple[str, ...],
    runtime_archives: tuple[Path, ...],
    runtime_fallback: str | None,
    jobs: int,
    no_layer_cache: bool,
    show_first: bool,
    show_only: bool,
    as_json: bool,
    report: str | None,
    lock_if_needed: bool,
    lock_alias: bool,
    clean: bool,
    build_dependencies: bool,
    lock_dependencies: bool,
    do_publish: bool,
    output_dir: str | None,
    fmt: Any,
    tag_outputs: bool,
    level: int | None,
    do_build: bool,
    build_derived: bool,
    publish_dependencies: bool,
    publish_derived: bool,
    include_dependencies: bool | None,
    force: bool,
    push: PushRequest | None,
    remote_cache: RemoteCache | None,
) -> None:
    """Build the environments of a stack in the build dir (default _build beside the spec).

    Only layers whose lock, lower layers or app modules changed are rebuilt; independent layers
    build in parallel with -j N. Environments are built aside and swapped in, so an interrupted
    build leaves the previous environment (or none), never a half-built one.
    """
    out = Output(as_json=as_json, report=report)
    if push is not None and not do_publish:
        raise click.UsageError("--to needs --publish")
    if remote_cache is not None and no_layer_cache:
        raise click.UsageError("--remote-cache needs the layer cache: drop --no-layer-cache")
    stack = load_stack(spec_path, build_dir)
    publishing = None
    if do_publish:
        publishing = PublishOptions(
            with_dependencies=publish_dependencies or bool(include_dependencies),
            with_derived=publish_derived,
            output_dir=output_dir,
            fmt=fmt,
            tag_outputs=tag_outputs,
            compression_level=level,
            force=force,
        )
    options = BuildOptions(
        include=include,
        allow_missing=allow_missing,
        with_derived=build_derived,
        sources=sources_from(
            use_index,
            local_wheels,
            runtime_archives,
            runtime_fallback,
            not no_layer_cache,
            remote_cache,
        ),
        reset=reset_lock,
        lock_if_needed=lock_if_needed or lock_alias,
        clean=clean,
        build=do_build,
        publish=publishing,
        jobs=jobs,
    )
    if shown_and_done(
        out, stack, options, show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    result = stack.build(options, progress=subscriber(ctx))
    if not result.selected:
        out.say("No environments found to build on this platform")
    else:
        out.say(
            f"Built {len(result.built)} layer(s) in {stack.build_dir} "
            f"({len(result.ran)} task(s) ran, {len(result.up_to_date)} up to date)"
        )
    if result.remote_cache is not None:
        _render_remote(out, result.remote_cache)
    if result.published is not None:
        from venvstacks.cli.publish import render_published

        render_published(out, result.published)
        if push is not None and result.published.layers and not result.published.dry_run:
            from venvstacks.cli.registry import push_output

            push_output(result.published.output_dir, push, say=out.say)
    out.report(result.to_json())


def _render_remote(out: Output, data: Any) -> None:
    pushed = data.get("pushed", {})
    parts = [f"{len(data.get('restored', []))} restored", f"{data.get('not_found', 0)} not found"]
    if not data.get("read_only"):
        parts += [f"{len(pushed.get(kind, []))} {kind}" for kind in ("uploaded", "mounted")]
        parts.append(f"{len(pushed.get('present', []))} already there")
    if data.get("failures"):
        parts.append(f"{data['failures']} failed (see the warnings)")
    out.say(f"Remote cache {data.get('reference')}: {', '.join(parts)}")


COMMANDS = [lock, build]
