"""`venvstacks status` and `venvstacks dodo`: what would run and why; plain doit on the same tasks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from venvstacks.cli.common import (
    LoadedStack,
    build_dir_option,
    choose_layers,
    include_options,
    load_stack,
    spec_argument,
)
from venvstacks.errors import StackError
from venvstacks.lock.state import StoredLocks
from venvstacks.plan.layers import LayerPlan
from venvstacks.tasks.stack import StackTasks

__all__ = ["COMMANDS", "lock_reasons", "stack_task_views"]


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


def lock_reasons(stack: LoadedStack) -> dict[str, list[str]]:
    """Why each stale lock task is stale, in the lock metadata's own terms."""
    locks = StoredLocks(stack.plan, stack.layout)
    reasons: dict[str, list[str]] = {}
    for layer in stack.plan.enabled:
        state = locks.state(layer.env_name)
        if not state.valid:
            reasons[f"lock:{layer.env_name}"] = [
                _LOCK_FIELD_REASONS.get(f, f) for f in state.changed_fields
            ]
    return reasons


def stack_task_views(stack: LoadedStack, layers: Sequence[LayerPlan]) -> list[Any]:
    """The state of every task of the selected layers, with reasons (nothing is run)."""
    from venvstacks.tasks.engine import task_states
    from venvstacks.tasks.view import task_view

    all_tasks = StackTasks(stack.plan, stack.layout).all_tasks()
    states = task_states(all_tasks, stack.layout.task_db)
    views = task_view(all_tasks, states, stack.spec.spec_dir, lock_reasons(stack))
    chosen = {layer.env_name for layer in layers}
    return [v for v in views if v.name.split(":", 1)[1] in chosen]


@click.command()
@spec_argument
@build_dir_option
@include_options
@click.option("--json", "as_json", is_flag=True, help="Print the task states as JSON.")
def status(
    spec_path: Path,
    build_dir: str | None,
    include: tuple[str, ...],
    allow_missing: bool,
    as_json: bool,
) -> None:
    """Show every task of the stack: up to date, stale (will run) or waiting, and why.

    Nothing is run or written. 'waiting' tasks run only if what they depend on produces
    different bytes (a relock that gives the same lock stops there).
    """
    from venvstacks.tasks.view import render_status

    stack = load_stack(spec_path, build_dir)
    layers = choose_layers(stack.plan, include, allow_missing)
    views = stack_task_views(stack, layers)
    if as_json:
        data = [
            {"task": v.name, "state": v.state, "why": list(v.why), "needs": list(v.needs)}
            for v in views
        ]
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(render_status(views), nl=False)


@click.command()
@spec_argument
@build_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the dodo file (default: dodo.py beside the spec).",
)
@click.option(
    "--runtime-archives",
    metavar="DIR",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Runtime archive folders the tasks should use; repeatable.",
)
@click.option(
    "--runtime-fallback",
    type=click.Choice(["none", "host"]),
    default=None,
    help="Allow packing a host Python when no runtime archive is found.",
)
@click.option(
    "--local-wheels",
    metavar="DIR",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Wheel folders the lock tasks should use; repeatable.",
)
@click.option(
    "--index/--no-index",
    "use_index",
    default=True,
    help="Whether lock tasks query package indexes.",
)
@click.option(
    "--force", is_flag=True, help="Overwrite an existing file that venvstacks did not generate."
)
def dodo(
    spec_path: Path,
    build_dir: str | None,
    output: Path | None,
    runtime_archives: tuple[Path, ...],
    runtime_fallback: str | None,
    local_wheels: tuple[Path, ...],
    use_index: bool,
    force: bool,
) -> None:
    """Write a dodo.py so that plain `doit` drives this stack's tasks.

    The generated file uses the same task names (lock:app-x, install:framework-y, ...) and the
    same dependency state as `venvstacks build`: `doit list`, `doit link:app-x`, `doit -n 4 -P thread`.
    """
    from venvstacks.tasks.dodo import render_dodo

    stack = load_stack(spec_path, build_dir)
    target = (output or stack.spec.spec_dir / "dodo.py").absolute()
    if (
        target.exists()
        and not force
        and "Generated by `venvstacks dodo`" not in target.read_text(errors="replace")
    ):
        raise StackError(
            f"{target} exists and was not generated by venvstacks (pass --force to overwrite)"
        )
    text = render_dodo(
        spec_path=stack.spec.path,
        dodo_dir=target.parent,
        build_dir=build_dir,
        runtime_archives=[p.absolute() for p in runtime_archives],
        runtime_fallback=runtime_fallback or stack.spec.settings.runtime_fallback,
        local_wheels=[p.absolute() for p in local_wheels],
        use_index=use_index,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {target}")


COMMANDS = [status, dodo]
