"""Typed results of the public API: per layer (keyed by build name), what ran, what was up to date,
what was written and where. Every result turns into the JSON of `--report` / `--json`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "REPORT_VERSION",
    "BuildResult",
    "DeployResult",
    "LayerOutcome",
    "Outcome",
    "ProgressEvent",
    "ProgressListener",
    "PublishResult",
    "PublishedLayer",
    "StatusResult",
    "TaskStatus",
    "VerifiedLayer",
    "VerifyResult",
]

REPORT_VERSION = 1
"""Bumped when a key of a report changes meaning; new keys and outcomes may appear at any time."""


class Outcome(StrEnum):
    """What happened to one step of one layer. More values may appear (read unknown ones as "ran")."""

    UP_TO_DATE = "up-to-date"
    RAN = "ran"
    CACHE_HIT = "cache-hit"


# --- progress ---------------------------------------------------------------------------------

EventKind = Literal["begin", "start", "done", "skip", "fail", "end"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run: `begin` (with every task that may run, in order), then `start`/`done`/
    `fail` per task that runs and `skip` per task found up to date, then `end` (always, also when
    the run fails or is interrupted)."""

    kind: EventKind
    task: str | None = None
    seconds: float | None = None
    tasks: tuple[str, ...] = ()


ProgressListener = Callable[[ProgressEvent], None]
"""Anything callable with a `ProgressEvent` (a plain function will do)."""


# --- lock, build, publish -----------------------------------------------------------------------


def _path(value: Path | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class PublishedLayer:
    """One layer's archive (or export folder) and metadata file; `outcome` RAN when written."""

    outcome: Outcome
    artefact: Path
    metadata_path: Path
    metadata: Mapping[str, Any]

    def to_json(self, export: bool) -> dict[str, Any]:
        return {
            "publish": str(self.outcome),
            "export" if export else "archive": str(self.artefact),
            "metadata": str(self.metadata_path),
        }


@dataclass(frozen=True)
class LayerOutcome:
    """What a run did to one layer. `None` means the step was not part of the run."""

    name: str
    kind: str  # "runtime", "framework" or "application"
    lock: Outcome | None = None
    env: Outcome | None = None
    lock_file: Path | None = None
    locked_at: str | None = None
    env_dir: Path | None = None
    published: PublishedLayer | None = None
    tasks: Mapping[str, Outcome] = field(default_factory=dict)
    # For the steps that were a cache hit: "local" (the layer cache) or "remote" (the registry).
    cache: Mapping[str, str] = field(default_factory=dict)

    def to_json(self, export: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        if self.lock is not None:
            data["lock"] = str(self.lock)
            data["lock_file"] = _path(self.lock_file)
            data["locked_at"] = self.locked_at
        if self.env is not None:
            data["env"] = str(self.env)
            data["env_dir"] = _path(self.env_dir)
        if self.cache:
            data["cache"] = dict(self.cache)
        if self.published is not None:
            data.update(self.published.to_json(export))
        data["tasks"] = {name: str(outcome) for name, outcome in self.tasks.items()}
        return data


@dataclass(frozen=True)
class PublishResult:
    """What `Stack.publish` / `Stack.export` wrote (nothing, with `dry_run`)."""

    output_dir: Path
    export: bool
    dry_run: bool
    manifest: Path | None
    layers: Mapping[str, PublishedLayer]
    requests: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """With `dry_run`: each layer's metadata as a real run would start from."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "output_dir": str(self.output_dir),
            "dry_run": self.dry_run,
            "manifest": _path(self.manifest),
        }
        if self.dry_run:
            data["layers"] = {name: {"request": dict(m)} for name, m in self.requests.items()}
        else:
            data["layers"] = {n: p.to_json(self.export) for n, p in self.layers.items()}
        return data


@dataclass(frozen=True)
class BuildResult:
    """What `Stack.lock` or `Stack.build` did, per layer, in build order."""

    command: str  # "lock" or "build"
    build_dir: Path
    layers: Mapping[str, LayerOutcome]
    selected: tuple[str, ...] = ()
    """The layers asked for (their lower layers may have been brought up to date too)."""
    ran: tuple[str, ...] = ()
    up_to_date: tuple[str, ...] = ()
    published: PublishResult | None = None
    remote_cache: Mapping[str, Any] | None = None
    """With a remote cache: what it restored, did not find, pushed, and how many failures."""

    @property
    def built(self) -> tuple[str, ...]:
        """The layers whose environment this run built or found up to date (this platform only)."""
        return tuple(name for name, layer in self.layers.items() if layer.env is not None)

    def to_json(self) -> dict[str, Any]:
        export = self.published is not None and self.published.export
        data: dict[str, Any] = {
            "report_version": REPORT_VERSION,
            "command": self.command,
            "build_dir": str(self.build_dir),
            "selected": list(self.selected),
            "layers": {n: layer.to_json(export) for n, layer in self.layers.items()},
            "tasks": {"ran": list(self.ran), "up_to_date": list(self.up_to_date)},
        }
        if self.published is not None:
            data["output_dir"] = str(self.published.output_dir)
            data["manifest"] = _path(self.published.manifest)
        if self.remote_cache is not None:
            data["remote_cache"] = dict(self.remote_cache)
        return data


def publish_report(command: str, result: PublishResult) -> dict[str, Any]:
    """The `--report` of `publish` and `local-export`."""
    return {"report_version": REPORT_VERSION, "command": command, **result.to_json()}


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskStatus:
    """One task: `stale` (will run), `waiting` (runs only if a task it needs changes its output)
    or `up-to-date`, with the reasons in words."""

    name: str
    state: str
    why: tuple[str, ...]
    needs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "state": self.state,
            "why": list(self.why),
            "needs": list(self.needs),
        }


@dataclass(frozen=True)
class StatusResult:
    """Every task of the selected layers, in dependency order (nothing was run)."""

    tasks: tuple[TaskStatus, ...]

    @property
    def stale(self) -> tuple[TaskStatus, ...]:
        return tuple(t for t in self.tasks if t.state == "stale")

    @property
    def current(self) -> bool:
        """True when no task would run."""
        return not self.stale

    def to_json(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.tasks]


# --- deploy and verify ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployResult:
    """What `deploy_published` did: each deployed layer (by install target) updated or unchanged."""

    target_dir: Path
    layers: Mapping[str, Outcome]

    @property
    def updated(self) -> tuple[str, ...]:
        return tuple(n for n, o in self.layers.items() if o is not Outcome.UP_TO_DATE)

    def to_json(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "command": "deploy",
            "target_dir": str(self.target_dir),
            "layers": {name: {"deploy": str(outcome)} for name, outcome in self.layers.items()},
        }


@dataclass(frozen=True)
class VerifiedLayer:
    """Files of one deployed layer that differ from what was published."""

    target: str
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    added: tuple[str, ...]
    details: Mapping[str, str] = field(default_factory=dict)
    """For changed paths whose content is the same: what differs (mode, symlink target)."""

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.added)


@dataclass(frozen=True)
class VerifyResult:
    target_dir: Path
    layers: tuple[VerifiedLayer, ...]

    @property
    def clean(self) -> bool:
        return all(layer.clean for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "command": "verify",
            "target_dir": str(self.target_dir),
            "clean": self.clean,
            "layers": {
                layer.target: {
                    "clean": layer.clean,
                    "missing": list(layer.missing),
                    "changed": list(layer.changed),
                    "added": list(layer.added),
                }
                for layer in self.layers
            },
        }
