"""Deploying published layers: verify, extract safely, post-install, record; run and verify apps.

`deploy` turns an artefacts folder (archives + `__venvstacks__/venvstacks.json`) into peer layer
folders under a target dir. Each layer is an `extract:<install target>` task (independent of
the others) and a `deploy:<install target>` task (`venvstacks.deploy.layer`), whose dependency
state lives in the target dir, so re-deploying an unchanged layer does nothing and an updated
layer replaces only itself. Layers are post-installed runtime first. A per-layer file manifest,
written at deploy time, lets `verify` report files that differ from what was published.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from venvstacks.deploy.extract import sweep_scratch, verify_archive
from venvstacks.deploy.layer import (
    STATE_DIR,
    STEPS,
    Report,
    deployed_state,
    extract_layer,
    finish_layer,
    is_current,
    layer_record,
    quiet,
    refuse_foreign,
    step,
    step_names,
)
from venvstacks.deploy.published import (
    CATEGORIES,
    PublishedLayer,
    load_published,
    select_published,
)
from venvstacks.deploy.verify import LayerDifferences, compare, read_recorded
from venvstacks.errors import DeployError, SelectionError
from venvstacks.plan.layout import METADATA_DIR, METADATA_MANIFEST
from venvstacks.plan.names import UnmatchedNames, spec_name_of
from venvstacks.publish.files import describe_os_error
from venvstacks.publish.output import write_json
from venvstacks.tasks.engine import RunResult, TaskDict, build_dir_lock, run_tasks
from venvstacks.tasks.stack import run_operation

__all__ = [
    "STATE_DIR",
    "STEPS",
    "LayerDifferences",
    "PublishedLayer",
    "deploy",
    "find_app",
    "is_current",
    "load_published",
    "run_app",
    "select",
    "step_names",
    "verify_deployment",
]

_log = logging.getLogger(__name__)


def _preflight(
    artifacts: Path,
    target_dir: Path,
    layers: Sequence[PublishedLayer],
    report: Report = quiet,
) -> set[str]:
    """Before anything in `target_dir` changes (and before waiting for its lock), check the
    layers never deployed there: their archives and that no foreign folder has their name.

    The layers with a record are left to `_decide`, under the lock, which reads each record
    and ``lstat``s its files once. Returns the install targets checked here.
    """
    checked = set()
    for layer in layers:
        if layer_record(target_dir, layer.target).exists():
            continue
        _check(artifacts, target_dir, layer, report)
        checked.add(layer.target)
    return checked


def _check(artifacts: Path, target_dir: Path, layer: PublishedLayer, report: Report) -> None:
    with step(report, "verify", layer.target):
        verify_archive(
            artifacts / layer.archive_name, int(layer.meta["archive_size"]), layer.sha256
        )
        refuse_foreign(target_dir, layer.target)


def _decide(
    artifacts: Path,
    target_dir: Path,
    layers: Sequence[PublishedLayer],
    checked: set[str],
    redeploy: Sequence[str] = (),
    report: Report = quiet,
) -> set[str]:
    """Under the target's lock (the authoritative view: another deploy may have finished
    meanwhile), the layers already deployed and unchanged; every other layer's archive is
    checked (unless `_preflight` did) before any layer changes."""
    current = set()
    for layer in layers:
        up_to_date, changed = deployed_state(target_dir, layer.target, layer.sha256)
        if up_to_date and layer.target not in redeploy:
            current.add(layer.target)
            if layer.target not in checked:
                report("skip", f"verify:{layer.target}", None)
            continue
        if changed is not None and layer.target not in redeploy:
            _log.warning(
                "%s: %s changed since it was deployed; deploying the layer again from %s",
                layer.target, changed, layer.archive_name,
            )  # fmt: skip
        if layer.target not in checked:
            _check(artifacts, target_dir, layer, report)
    return current


def deploy_tasks(
    artifacts: Path,
    target_dir: Path,
    layers: Sequence[PublishedLayer],
    current: Collection[str] = (),
    report: Report = quiet,
) -> list[TaskDict]:
    """Per layer, `extract:<install target>` (independent of the other layers, so they extract
    in parallel) and `deploy:<install target>` (compile, post-install, record: after the lower
    layers' and its own extraction); both are up to date for the layers in ``current``."""
    extracts: list[TaskDict] = []
    finishes: list[TaskDict] = []
    present = {layer.target for layer in layers}
    # The biggest archives first, so that the longest extraction is not the last one started.
    for layer in sorted(layers, key=lambda layer: -_archive_size(layer.meta)):
        state = target_dir / STATE_DIR / "stamps"
        runtime = layer.target if layer.category == "runtimes" else str(layer.meta["runtime_layer"])
        uptodate: list[Any] = [layer.target in current]
        meta = dict(layer.meta)
        extract = (extract_layer, None, artifacts, target_dir, meta)
        finish = (finish_layer, str(state / f"deploy.{layer.target}.json"), target_dir, meta)
        extracts.append(
            {
                "basename": "extract",
                "name": layer.target,
                "doc": f"extract {layer.target} from {layer.archive_name}",
                "actions": [(run_operation, list(extract))],
                "uptodate": list(uptodate),
            }
        )
        finishes.append(
            {
                "basename": "deploy",
                "name": layer.target,
                "doc": f"deploy {layer.target} from {layer.archive_name}",
                "actions": [(run_operation, [*finish, runtime, report])],
                "targets": [finish[1]],
                "task_dep": [
                    f"extract:{layer.target}",
                    *(f"deploy:{t}" for t in layer.lower if t in present),
                ],
                "uptodate": uptodate,
            }
        )
    order = [f"deploy:{layer.target}" for layer in layers]
    finishes.sort(key=lambda task: order.index(f"deploy:{task['name']}"))
    return [*extracts, *finishes]


def _archive_size(meta: Mapping[str, Any]) -> int:
    size = meta.get("archive_size")
    return size if isinstance(size, int) else 0


def _damaged(target_dir: Path, layers: Sequence[PublishedLayer]) -> dict[str, LayerDifferences]:
    """The selected layers deployed here whose files differ from their recorded manifests."""
    found = {}
    for layer in layers:
        record = layer_record(target_dir, layer.target)
        if not record.exists():
            continue
        try:
            recorded = read_recorded(record, layer.target)
        except DeployError:
            found[layer.target] = LayerDifferences(layer.target, (), (), ())
            continue
        differences = compare(layer.target, recorded, target_dir / layer.target)
        if not differences.clean:
            found[layer.target] = differences
    return found


def select(artifacts: Path, include: Sequence[str] = ()) -> list[PublishedLayer]:
    """The published layers `deploy` would deploy from ``artifacts`` (lower layers first)."""
    artifacts = artifacts.absolute()
    listed, extra = load_published(artifacts)
    layers = select_published(listed, include, extra, artifacts)
    if not layers:
        raise DeployError(f"{artifacts}: the manifest lists no layers")
    return layers


def deploy(
    artifacts: Path,
    target_dir: Path,
    include: Sequence[str] = (),
    *,
    jobs: int = 1,
    progress: Report | None = None,
    repair: bool = False,
    layers: Sequence[PublishedLayer] | None = None,
) -> tuple[list[PublishedLayer], RunResult]:
    """Deploy published layers into `target_dir`; only new or changed layers do any work.

    ``layers`` (from `select`) saves reading the manifest again. With ``repair``, every selected
    layer that `verify` would flag is extracted again from its archive (and post-installed), and
    a warning names each one. ``progress`` hears of each step (`STEPS`) of each layer.
    """
    artifacts = artifacts.absolute()
    target_dir = target_dir.absolute()
    chosen = list(layers) if layers is not None else select(artifacts, include)
    report = _relay(progress) if progress is not None else quiet
    state = target_dir / STATE_DIR
    checked = _preflight(artifacts, target_dir, chosen, report)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create {target_dir}: {describe_os_error(exc)}") from None
    with build_dir_lock(state / "deploy.lock"):
        sweep_scratch(target_dir, [layer.target for layer in chosen] + _known_targets(target_dir))
        damaged = _damaged(target_dir, chosen) if repair else {}
        for target, differences in damaged.items():
            _log.warning(
                "repairing %s: %d file(s) differ from what was published; restoring it from %s",
                target, differences.count,
                next(l.archive_name for l in chosen if l.target == target),
            )  # fmt: skip
        current = _decide(artifacts, target_dir, chosen, checked, list(damaged), report)
        tasks = deploy_tasks(artifacts, target_dir, chosen, current, report)
        try:
            result = run_tasks(
                tasks,
                [f"deploy:{l.target}" for l in chosen],
                state / "tasks.db",
                jobs=jobs,
                progress=report,
            )
        except (InvalidTask, InvalidCommand, InvalidDodoFile) as exc:
            raise DeployError(f"cannot plan the deployment: {exc}") from None
        if result.code != 0:
            _withdraw(target_dir, result)
    if result.code != 0:
        raise DeployError(_first_failure(result, chosen))
    _write_record(target_dir, chosen)
    for target in damaged:
        _log.warning("repaired %s", target)
    return chosen, result


def _withdraw(target_dir: Path, result: RunResult) -> None:
    """Remove the layers this failed run extracted but did not finish: they would look deployed
    but are not post-installed (their records are gone, so the next deploy redoes them)."""
    done = set(result.executed)
    for task in result.executed:
        operation, _, name = task.partition(":")
        if operation != "extract" or f"deploy:{name}" in done:
            continue
        layer = target_dir / name
        if layer_record(target_dir, name).exists() or not layer.is_dir() or layer.is_symlink():
            continue
        try:
            retired = Path(tempfile.mkdtemp(prefix=f".{name}.retired-", dir=target_dir))
            layer.rename(retired / name)
        except OSError:
            continue
        shutil.rmtree(retired, ignore_errors=True)


def _relay(progress: Report) -> Report:
    """The engine's events, plus `skip` for the steps of a layer found up to date."""

    def relay(event: str, name: str, seconds: float | None) -> None:
        progress(event, name, seconds)
        operation, _, target = name.partition(":")
        if event == "skip" and operation == "deploy":
            for step in ("compile", "postinstall"):
                progress("skip", f"{step}:{target}", None)

    return relay


def _first_failure(result: RunResult, layers: Sequence[PublishedLayer]) -> str:
    """The failure of the lowest layer (parallel extractions fail in any order)."""
    order = [f"{op}:{l.target}" for l in layers for op in ("extract", "deploy")]
    failed = sorted(result.failures, key=lambda n: order.index(n) if n in order else len(order))
    first = result.failures[failed[0]] if failed else f"deploy failed with status {result.code}"
    return first.strip().splitlines()[-1] if "Traceback" in first else first


def _known_targets(target_dir: Path) -> list[str]:
    try:
        return list(deployed_layers(target_dir))
    except DeployError:
        return []


def _write_record(target_dir: Path, layers: Sequence[PublishedLayer]) -> None:
    path = target_dir / STATE_DIR / "deployment.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    for layer in layers:
        known[layer.target] = {
            "category": layer.category,
            **{k: v for k, v in layer.meta.items() if k != "venvstacks_build"},
        }
    try:
        write_json(path, known)
    except OSError as exc:
        raise DeployError(f"cannot record the deployment: {describe_os_error(exc)}") from None


def deployed_layers(target_dir: Path) -> dict[str, dict[str, Any]]:
    path = target_dir / STATE_DIR / "deployment.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise DeployError(
            f"{target_dir}: nothing has been deployed or exported here (no {STATE_DIR}/deployment.json "
            f"or {METADATA_DIR}/{METADATA_MANIFEST})"
        ) from None
    except ValueError:
        raise DeployError(f"{path}: damaged deployment record") from None
    return data if isinstance(data, dict) else {}


def exported_layers(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The layers of a `local-export` folder, from its stack manifest (None when it has none)."""
    path = folder / METADATA_DIR / METADATA_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError:
        raise DeployError(f"{path}: damaged stack manifest") from None
    layers = data.get("layers") if isinstance(data, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for category in CATEGORIES:
        entries = layers.get(category, []) if isinstance(layers, dict) else []
        for meta in entries if isinstance(entries, list) else []:
            target = meta.get("install_target") if isinstance(meta, dict) else None
            if (
                isinstance(target, str)
                and target
                and "/" not in target
                and target not in (".", "..")
            ):
                found[target] = {**meta, "category": category}
    return found


def runnable_layers(folder: Path) -> dict[str, dict[str, Any]]:
    """The layers of a deployment, or of a `local-export` folder that was never deployed."""
    if not (folder / STATE_DIR / "deployment.json").exists():
        exported = exported_layers(folder)
        if exported is not None:
            return exported
    return deployed_layers(folder)


def find_app(target_dir: Path, app: str) -> tuple[Path, str]:
    """The folder and launch module of an application (by layer name or install target), in a
    deployment or a `local-export` folder."""
    layers = runnable_layers(target_dir)
    candidates = [
        (target, meta)
        for target, meta in layers.items()
        if meta.get("category") == "applications"
        and app
        in (target, meta.get("layer_name"), str(meta.get("layer_name", "")).removeprefix("app-"))
    ]
    if not candidates:
        problem = _unknown_app(target_dir, app, layers)
        raise SelectionError(problem.message(), problem.details())
    # By install target: that one. By name: the newest lock version deployed (the record is kept
    # with sorted keys, where "app-x@10" sorts before "app-x@9").
    target, meta = max(candidates, key=lambda c: (c[0] == app, _lock_version(c[1])))
    return target_dir / target, str(meta["app_launch_module"])


def _unknown_app(target_dir: Path, app: str, layers: Mapping[str, Any]) -> UnmatchedNames:
    """What to tell of an APP naming no application of a deployment (or export) folder."""
    record = target_dir / STATE_DIR / "deployment.json"
    source = record if record.exists() else target_dir / METADATA_DIR / METADATA_MANIFEST
    apps = {t: m for t, m in layers.items() if m.get("category") == "applications"}
    names = [str(m.get("layer_name", t)) for t, m in sorted(apps.items())]
    others = [
        f"{app!r} is deployed as a {str(m.get('category', 'layer')).rstrip('s')}, not an application"
        for t, m in layers.items()
        if t not in apps and app in (t, m.get("layer_name"), spec_name_of(str(m.get("layer_name"))))
    ]
    return UnmatchedNames(
        option="APP",
        unmatched=(app,),
        known=tuple(dict.fromkeys(spec_name_of(n) for n in names)),
        also_known=(*names, *sorted(apps)),
        source=str(source),
        noun="deployed application",
        notes=tuple(others[:1]),
    )


def _lock_version(meta: Mapping[str, Any]) -> int:
    version = meta.get("lock_version")
    return version if isinstance(version, int) else 0


def run_app(target_dir: Path, app: str, args: Sequence[str]) -> int:
    """Run a deployed application's launch module; its exit status is returned."""
    layer_dir, module = find_app(target_dir.absolute(), app)
    python = layer_dir / "bin" / "python"
    if not python.exists():
        raise DeployError(f"{layer_dir}: no bin/python (deployment damaged? run venvstacks verify)")
    # Safe path: the caller's current folder must not shadow the app's own modules.
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    return subprocess.run([str(python), "-m", module, *args], check=False, env=env).returncode


def verify_deployment(target_dir: Path) -> list[LayerDifferences]:
    """Compare every deployed layer's files with the manifest recorded when it was deployed."""
    target_dir = target_dir.absolute()
    return [
        compare(
            target, read_recorded(layer_record(target_dir, target), target), target_dir / target
        )
        for target in deployed_layers(target_dir)
    ]
