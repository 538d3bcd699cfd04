"""Running a stack's tasks for the API: the build-dir lock, progress events, failures, outcomes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Self

from venvstacks.api.results import LayerOutcome, Outcome, ProgressEvent, ProgressListener
from venvstacks.envs import build as envbuild
from venvstacks.errors import StackError
from venvstacks.plan.layers import LayerPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.tasks.engine import RunResult, build_dir_lock, run_tasks
from venvstacks.tasks.stack import StackTasks

__all__ = [
    "cache_sources",
    "emitting",
    "layer_outcomes",
    "raise_failures",
    "run_stack_tasks",
    "task_outcomes",
]

_log = logging.getLogger("venvstacks")


def _involved(tasks: StackTasks, selected: Sequence[str]) -> list[str]:
    """The selected tasks and every task they need, in the stack's task order."""
    from venvstacks.tasks.view import task_needs

    needs = task_needs(tasks.all_tasks())
    involved: set[str] = set()
    pending = list(selected)
    while pending:
        name = pending.pop()
        if name not in involved:
            involved.add(name)
            pending.extend(needs.get(name, ()))
    return [name for name in needs if name in involved]


class emitting:
    """Sends `begin` on entry and `end` on exit (whatever happened) to a progress listener, and
    turns the engine's (event, task, seconds) callbacks into `ProgressEvent`s."""

    def __init__(self, listener: ProgressListener | None, tasks: Sequence[str] = ()) -> None:
        self._listener = listener
        self._tasks = tuple(tasks)

    def __call__(self, event: str, name: str, seconds: float | None) -> None:
        if self._listener is not None and event in ("start", "done", "skip", "fail"):
            self._listener(ProgressEvent(event, name, seconds))  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        if self._listener is not None:
            self._listener(ProgressEvent("begin", tasks=self._tasks))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener(ProgressEvent("end"))


def raise_failures(result: RunResult, what: str = "task run") -> None:
    """A failed run raises its first failure; the others are logged as errors first."""
    if result.code == 0:
        return
    lines = [
        message if message.startswith("layer ") else f"{name}: {message}"
        for name, message in result.failures.items()
    ]
    if not lines:
        lines = [f"{what} failed with status {result.code}"]
    first, *rest = lines
    for line in rest:
        _log.error("error: %s", line)
    raise StackError(first)


def run_stack_tasks(
    layout: BuildLayout,
    tasks: StackTasks,
    selected: Sequence[str],
    jobs: int,
    progress: ProgressListener | None,
) -> RunResult:
    """Run `selected` (and what they need) under the build-dir lock; raise on failure."""
    with build_dir_lock(layout.lock_file), emitting(progress, _involved(tasks, selected)) as emit:
        envbuild.sweep_staging(layout)
        result = run_tasks(
            tasks.all_tasks(), list(selected), layout.task_db, jobs=jobs, progress=emit
        )
    raise_failures(result)
    return result


def task_outcomes(result: RunResult) -> dict[str, Outcome]:
    outcomes = {name: Outcome.UP_TO_DATE for name in result.up_to_date}
    for name in result.executed:
        # A lock or install served from the layer cache ran, but without doing the work.
        hit = result.values.get(name, {}).get("cache") == "hit"
        outcomes[name] = Outcome.CACHE_HIT if hit else Outcome.RAN
    return outcomes


def cache_sources(result: RunResult) -> dict[str, str]:
    """Per task served from the layer cache: where from ("local" or "remote")."""
    found = {}
    for name in result.executed:
        values = result.values.get(name, {})
        if values.get("cache") == "hit":
            found[name] = str(values.get("cache_source") or "local")
    return found


def _combined(outcomes: Iterable[Outcome | None]) -> Outcome | None:
    """RAN when any step ran; UP_TO_DATE when every step was; None when a step was not run."""
    seen = list(outcomes)
    if any(o is Outcome.RAN for o in seen):
        return Outcome.RAN
    if seen and all(o is not None for o in seen):
        return Outcome.CACHE_HIT if Outcome.CACHE_HIT in seen else Outcome.UP_TO_DATE
    return None


def layer_outcomes(
    layout: BuildLayout,
    layers: Sequence[LayerPlan],
    outcomes: Mapping[str, Outcome],
    sources: Mapping[str, str] | None = None,
) -> dict[str, LayerOutcome]:
    """Per layer that the run touched (build order): lock and env outcomes, each task's outcome."""
    found: dict[str, LayerOutcome] = {}
    for layer in layers:
        env = layer.env_name
        tasks = {
            name: outcome for name, outcome in outcomes.items() if name.split(":", 1)[1] == env
        }
        if not tasks:
            continue
        lock = tasks.get(f"lock:{env}")
        built = _combined(tasks.get(f"{op}:{env}") for op in ("install", "link"))
        if built is Outcome.RAN and tasks.get(f"install:{env}") is Outcome.CACHE_HIT:
            built = Outcome.CACHE_HIT  # restored; the link step always runs after a restore
        found[env] = LayerOutcome(
            name=env,
            kind=str(layer.kind),
            lock=lock,
            env=built,
            lock_file=layout.lock(env).pylock if lock is not None else None,
            locked_at=_locked_at(layout, env) if lock is not None else None,
            env_dir=layout.env_dir(env) if built is not None else None,
            tasks=tasks,
            cache={
                step: (sources or {})[f"{op}:{env}"]
                for step, op in (("lock", "lock"), ("env", "install"))
                if f"{op}:{env}" in (sources or {})
            },
        )
    return found


def _locked_at(layout: BuildLayout, env: EnvName) -> str | None:
    try:
        value = json.loads(layout.lock(env).metadata.read_text(encoding="utf-8"))["locked_at"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None
