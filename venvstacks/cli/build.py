"""`venvstacks lock`, `build` and `status`: run or inspect the stack's tasks."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

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
from venvstacks.envs import build as envbuild
from venvstacks.errors import StackError
from venvstacks.lock import resolve as locking
from venvstacks.lock.state import StoredLocks
from venvstacks.plan.layers import LayerPlan
from venvstacks.report.show import show_json, show_tree, stack_status
from venvstacks.tasks.engine import RunResult, build_dir_lock, run_tasks
from venvstacks.tasks.stack import StackTasks

__all__ = ["COMMANDS"]

_log = logging.getLogger("venvstacks")
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
        *selection_display_options("running"),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _runtime_options(
    stack: LoadedStack, dirs: Sequence[Path], fallback: str | None
) -> envbuild.RuntimeOptions:
    from venvstacks.runtimes.request import archive_dirs_from

    archive_dirs = archive_dirs_from(
        list(dirs), os.environ, list(stack.spec.settings.runtime_archives)
    )
    return envbuild.RuntimeOptions(
        archive_dirs=tuple(archive_dirs),
        fallback=fallback or stack.spec.settings.runtime_fallback,
        base_url=os.environ.get("VENVSTACKS_PBS_BASE_URL"),
    )


def _lock_options(
    stack: LoadedStack,
    use_index: bool,
    local_wheels: Sequence[Path],
    reset: Sequence[str],
    allow_missing: bool,
) -> locking.LockOptions:
    from venvstacks.plan.layers import require_matches, select_layers

    reset_envs: set[str] = set()
    if reset:
        chosen, unmatched = select_layers(
            stack.plan, reset, with_dependencies=False, with_derived=False
        )
        warning = require_matches(unmatched, allow_missing=allow_missing, what="--reset-lock ")
        if warning:
            _log.warning("warning: %s", warning)
        reset_envs = {layer.env_name for layer in chosen}
    wheels = tuple((stack.spec.spec_dir / p).absolute() for p in local_wheels)
    missing = [str(p) for p in wheels if not p.is_dir()]
    if missing:
        raise StackError(f"--local-wheels folder does not exist: {', '.join(missing)}")
    return locking.LockOptions(
        use_index=use_index,
        local_wheels=wheels,
        reset=frozenset(reset_envs),
        exclude_newer=_exclude_newer(stack),
    )


def _exclude_newer(stack: LoadedStack) -> Any:
    from venvstacks.spec.indexes import parse_timestamp

    text = os.environ.get("UV_EXCLUDE_NEWER")
    if not text:
        return stack.spec.uv.exclude_newer
    problems: list[str] = []
    value = parse_timestamp(text, "UV_EXCLUDE_NEWER", problems)
    if problems:
        raise StackError(problems[0])
    return value


def progress_for(ctx: click.Context, involved: Sequence[str] = ()) -> Any:
    """The progress display the command line options and the terminal call for."""
    from venvstacks.cli.progress import choose_progress

    state = ctx.obj
    return choose_progress(involved, verbose=state.verbose, quiet=state.quiet)


def _report_failures(result: RunResult) -> None:
    if result.code == 0:
        return
    lines = [
        message if message.startswith("layer ") else f"{name}: {message}"
        for name, message in result.failures.items()
    ]
    if not lines:
        lines = [f"task run failed with status {result.code}"]
    first, *rest = lines
    for line in rest:
        click.echo(f"error: {line}", err=True)
    raise StackError(first)


def run_stack_tasks(
    stack: LoadedStack, tasks: StackTasks, selected: list[str], jobs: int, ctx: click.Context
) -> RunResult:
    from venvstacks.tasks.view import task_needs

    all_tasks = tasks.all_tasks()
    needs = task_needs(all_tasks)
    involved: dict[str, None] = {}
    pending = list(selected)
    while pending:
        name = pending.pop()
        if name not in involved:
            involved[name] = None
            pending.extend(needs.get(name, ()))
    order = [name for name in needs if name in involved]
    with build_dir_lock(stack.layout.lock_file), progress_for(ctx, order) as progress:
        envbuild.sweep_staging(stack.layout)
        result = run_tasks(all_tasks, selected, stack.layout.task_db, jobs=jobs, progress=progress)
    _report_failures(result)
    return result


def show_selection(
    stack: LoadedStack, layers: Sequence[LayerPlan], ops: list[str], as_json: bool
) -> None:
    operations: dict[str, Sequence[str]] = {layer.env_name: ops for layer in layers}
    status = stack_status(stack.plan, layers, StoredLocks(stack.plan, stack.layout), operations)
    click.echo(show_json(status) if as_json else show_tree(status), nl=False)


def shown_and_done(
    stack: LoadedStack,
    layers: Sequence[LayerPlan],
    ops: list[str],
    *,
    show_first: bool,
    show_only: bool,
    as_json: bool,
) -> bool:
    """Handle --show/--show-only/--json; True when the command should stop after showing."""
    if not (show_first or show_only or as_json):
        return False
    show_selection(stack, layers, ops, as_json)
    return show_only or (as_json and not show_first)


def _stale_locks(stack: LoadedStack, layers: Sequence[LayerPlan]) -> list[str]:
    needed: dict[str, None] = {}
    for layer in layers:
        for env in (*layer.dependencies, layer.env_name):
            needed[env] = None
    return [
        env
        for env in needed
        if not locking.stored_lock_state(stack.plan, stack.plan[env], stack.layout).valid
    ]


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
    show_first: bool,
    show_only: bool,
    as_json: bool,
    if_needed: bool,
    lock_dependencies: bool,
    clean: bool,
) -> None:
    """Lock the layers of a stack: requirements/<layer>/pylock.<layer>.toml and its metadata.

    Only layers whose inputs (requirements, lower layers' locks, targets, indexes) changed are
    re-resolved; a relock that gives the same lock changes no file.
    """
    stack = load_stack(spec_path, build_dir)
    layers = choose_layers(stack.plan, include, allow_missing)
    if shown_and_done(
        stack, layers, ["lock"], show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    tasks = StackTasks(
        stack.plan,
        stack.layout,
        lock_options=_lock_options(stack, use_index, local_wheels, reset_lock, allow_missing),
        runtime_options=_runtime_options(stack, runtime_archives, runtime_fallback),
    )
    if not layers:
        click.echo("No environments found to lock")
        return
    if clean:
        _forget_runtimes(stack, {layer.runtime for layer in layers})
    run_stack_tasks(stack, tasks, [f"lock:{l.env_name}" for l in layers], jobs, ctx)
    _print_locked(stack, layers)


def _forget_runtimes(stack: LoadedStack, runtimes: set[str]) -> None:
    """Remove provisioned runtime interpreters so that their runtime tasks unpack them again."""
    import shutil

    for env in sorted(runtimes):
        shutil.rmtree(stack.layout.runtime_cache / env, ignore_errors=True)
        (stack.layout.runtime_cache / f"{env}.json").unlink(missing_ok=True)


def _print_locked(stack: LoadedStack, layers: Sequence[LayerPlan]) -> None:
    from venvstacks.plan.layout import relative_to_common

    paths = [stack.layout.lock(l.env_name).pylock for l in layers]
    base, relative = relative_to_common(paths)
    click.echo("Locked environments:")
    for layer, rel in zip(layers, relative, strict=True):
        meta = json.loads(stack.layout.lock(layer.env_name).metadata.read_text())
        click.echo(f"  {rel} (locked at: {meta['locked_at']})")
    click.echo(f"All paths reported relative to {base}")


@click.command()
@spec_argument
@build_dir_option
@include_options
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
    show_first: bool,
    show_only: bool,
    as_json: bool,
    lock_if_needed: bool,
    lock_alias: bool,
    clean: bool,
    build_dependencies: bool,
    lock_dependencies: bool,
    do_publish: bool,
    output_dir: str | None,
    fmt: str | None,
    tag_outputs: bool,
    level: int | None,
    do_build: bool,
    build_derived: bool,
    publish_dependencies: bool,
    publish_derived: bool,
    include_dependencies: bool | None,
    force: bool,
) -> None:
    """Build the environments of a stack in the build dir (default _build beside the spec).

    Only layers whose lock, lower layers or app modules changed are rebuilt; independent layers
    build in parallel with -j N. Environments are built aside and swapped in, so an interrupted
    build leaves the previous environment (or none), never a half-built one.
    """
    stack = load_stack(spec_path, build_dir)
    layers = choose_layers(stack.plan, include, allow_missing, with_derived=build_derived)
    if include_dependencies:
        publish_dependencies = True
    to_publish = choose_layers(
        stack.plan,
        include,
        allow_missing=True,
        with_dependencies=publish_dependencies,
        with_derived=publish_derived,
    )
    ops = [*(["build"] if do_build else []), *(["publish"] if do_publish else [])]
    if shown_and_done(
        stack, layers, ops, show_first=show_first, show_only=show_only, as_json=as_json
    ):
        return
    options = _lock_options(stack, use_index, local_wheels, reset_lock, allow_missing)
    stale = _stale_locks(stack, layers)
    if stale and not (lock_if_needed or lock_alias or options.reset):
        raise StackError(
            f"layers without a valid lock: {', '.join(stale)} "
            "(run `venvstacks lock`, or pass --lock-if-needed)"
        )
    publishing = None
    if do_publish:
        from venvstacks.cli.publish import publish_options_from

        publishing = publish_options_from(
            stack, output_dir, fmt, tag_outputs, force or clean, False, level
        )
    tasks = StackTasks(
        stack.plan,
        stack.layout,
        lock_options=options,
        runtime_options=_runtime_options(stack, runtime_archives, runtime_fallback),
        publishing=publishing,
    )
    if clean:  # only what was asked for: lower layers pulled in by --include are kept
        _clean_envs(
            stack,
            choose_layers(
                stack.plan, include, True, with_dependencies=False, with_derived=build_derived
            ),
        )
    selected = tasks.names("link", layers) if do_build else []
    if not do_build and (lock_if_needed or lock_alias):
        selected = [f"lock:{layer.env_name}" for layer in layers]
    if do_publish:
        selected += tasks.names("archive", to_publish)
    if not selected:
        click.echo("No environments found to build on this platform")
        return
    result = run_stack_tasks(stack, tasks, selected, jobs, ctx)
    _print_built(stack, result, layers)
    if publishing is not None:
        from venvstacks.cli.publish import report_published

        archived = [name.split(":", 1)[1] for name in selected if name.startswith("archive:")]
        report_published(stack, publishing, archived)


def _clean_envs(stack: LoadedStack, layers: Sequence[LayerPlan]) -> None:
    import shutil

    for layer in layers:
        shutil.rmtree(stack.layout.env_dir(layer.env_name), ignore_errors=True)
        for op in ("install", "link"):
            stack.layout.stamp(op, layer.env_name).unlink(missing_ok=True)


def _print_built(stack: LoadedStack, result: RunResult, layers: Sequence[LayerPlan]) -> None:
    ran = len(result.executed)
    click.echo(
        f"Built {len(layers)} layer(s) in {stack.layout.build_dir} ({ran} task(s) ran, {len(result.up_to_date)} up to date)"
    )


COMMANDS = [lock, build]
