"""Deploying published layers: verify, extract safely, post-install, record; run and verify apps.

`deploy` turns an artefacts folder (archives + `__venvstacks__/venvstacks.json`) into peer layer
folders under a target dir. Each layer is a `deploy:<install target>` task whose dependency state
lives in the target dir, so re-deploying an unchanged layer does nothing and an updated layer
replaces only itself. Layers are post-installed runtime first. A per-layer file manifest,
written at deploy time, lets `verify` report files that differ from what was published.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from venvstacks.deploy.extract import safe_extract, sweep_scratch, verify_archive
from venvstacks.deploy.published import (
    CATEGORIES,
    PublishedLayer,
    load_published,
    select_published,
)
from venvstacks.deploy.verify import (
    LAYER_CONFIG,
    LayerDifferences,
    compare,
    file_manifest,
    layer_site_dir,
    read_recorded,
)
from venvstacks.errors import DeployError
from venvstacks.plan.layout import METADATA_DIR, METADATA_MANIFEST
from venvstacks.publish.crashpoints import crash_point
from venvstacks.publish.files import describe_os_error
from venvstacks.publish.output import write_json
from venvstacks.tasks.engine import RunResult, TaskDict, build_dir_lock, run_tasks
from venvstacks.tasks.stack import run_operation

__all__ = [
    "LayerDifferences",
    "PublishedLayer",
    "deploy",
    "find_app",
    "is_current",
    "load_published",
    "published_sha256",
    "run_app",
    "verify_deployment",
]

_log = logging.getLogger(__name__)
STATE_DIR = ".venvstacks-deploy"


def deploy_layer(
    artifacts: Path, target_dir: Path, layer_meta: Mapping[str, Any], runtime: str
) -> dict[str, Any]:
    """Verify, extract and post-install one layer; record what was deployed."""
    name = str(layer_meta["install_target"])
    try:
        return _deploy_layer(artifacts, target_dir, layer_meta, runtime, name)
    except OSError as exc:
        raise DeployError(f"layer {name}: cannot deploy: {describe_os_error(exc)}") from exc


def _deploy_layer(
    artifacts: Path, target_dir: Path, layer_meta: Mapping[str, Any], runtime: str, name: str
) -> dict[str, Any]:
    archive = artifacts / str(layer_meta["archive_name"])
    expected = str(layer_meta["archive_hashes"]["sha256"]).lower().removeprefix("sha256:")
    verify_archive(archive, int(layer_meta["archive_size"]), expected)
    layer_dir = target_dir / name
    _refuse_foreign(target_dir, name)
    crash_point("deploy-extracting")
    safe_extract(archive, layer_dir, expected_root=name, allow_peer_links=True, replace=True)
    crash_point("deploy-extracted")
    manifest = file_manifest(layer_dir, layer_site_dir(layer_dir))
    _postinstall(target_dir, name, runtime)
    record = {
        "install_target": name,
        "archive": archive.name,
        "sha256": expected,
        "files": manifest,
    }
    write_json(_layer_record(target_dir, name), record)
    return {"install_target": name, "sha256": expected}


def _postinstall(target_dir: Path, name: str, runtime: str) -> None:
    python = target_dir / runtime / "bin" / "python"
    script = target_dir / name / "postinstall.py"
    result = subprocess.run(
        [str(python), "-X", "utf8", "-I", str(script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeployError(f"layer {name}: postinstall failed in {target_dir / name}: {detail[0]}")


def _layer_present(layer_dir: Path) -> bool:
    return (layer_dir / LAYER_CONFIG).exists()


def _layer_record(target_dir: Path, name: str) -> Path:
    return target_dir / STATE_DIR / "layers" / f"{name}.json"


def _refuse_foreign(target_dir: Path, name: str) -> None:
    """Never replace a folder (or file) that is not a venvstacks layer: it may be user data."""
    path = target_dir / name
    if not (path.exists() or path.is_symlink()):
        return
    ours = _layer_record(target_dir, name).exists() or _layer_present(path)
    if path.is_dir() and not path.is_symlink() and ours:
        return
    raise DeployError(
        f"{path} already exists and is not a deployed venvstacks layer; refusing to replace it"
        " (move it away or deploy into another folder)"
    )


def _is_current(target_dir: Path, name: str, sha256: str) -> bool:
    """True when the layer was deployed here from an archive with this sha256 and is present.

    The one rule for "nothing to do", used both by the preflight checks and by the task.
    """
    try:
        recorded = json.loads(_layer_record(target_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = isinstance(recorded, dict) and recorded.get("sha256") == sha256
    return same and _layer_present(target_dir / name)


def _published_sha256(layer: PublishedLayer) -> str:
    return layer.sha256


is_current = _is_current  # the public names, for deploying from a registry (cli/registry.py)
published_sha256 = _published_sha256


def _preflight(artifacts: Path, target_dir: Path, layers: Sequence[PublishedLayer]) -> None:
    """Check every layer that will be deployed before anything in `target_dir` changes."""
    for layer in layers:
        if _is_current(target_dir, layer.target, layer.sha256):
            continue
        verify_archive(
            artifacts / layer.archive_name, int(layer.meta["archive_size"]), layer.sha256
        )
        _refuse_foreign(target_dir, layer.target)


def deploy_tasks(
    artifacts: Path,
    target_dir: Path,
    layers: Sequence[PublishedLayer],
    redeploy: Sequence[str] = (),
) -> list[TaskDict]:
    """One `deploy:<install target>` task per layer; those in ``redeploy`` always run."""
    tasks: list[TaskDict] = []
    present = {layer.target for layer in layers}
    for layer in layers:
        stamp = target_dir / STATE_DIR / "stamps" / f"deploy.{layer.target}.json"
        runtime = layer.target if layer.category == "runtimes" else str(layer.meta["runtime_layer"])
        uptodate: list[Any] = [(_is_current, [target_dir, layer.target, layer.sha256])]
        if layer.target in redeploy:
            uptodate.append(False)
        tasks.append(
            {
                "basename": "deploy",
                "name": layer.target,
                "doc": f"deploy {layer.target} from {layer.archive_name}",
                "actions": [
                    (
                        run_operation,
                        [
                            deploy_layer,
                            str(stamp),
                            artifacts,
                            target_dir,
                            dict(layer.meta),
                            runtime,
                        ],
                    )
                ],
                "targets": [str(stamp)],
                "task_dep": [f"deploy:{t}" for t in layer.lower if t in present],
                "uptodate": uptodate,
            }
        )
    return tasks


def _damaged(target_dir: Path, layers: Sequence[PublishedLayer]) -> dict[str, LayerDifferences]:
    """The selected layers deployed here whose files differ from their recorded manifests."""
    found = {}
    for layer in layers:
        record = _layer_record(target_dir, layer.target)
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


def deploy(
    artifacts: Path,
    target_dir: Path,
    include: Sequence[str] = (),
    *,
    jobs: int = 1,
    progress: Any = None,
    repair: bool = False,
) -> tuple[list[PublishedLayer], RunResult]:
    """Deploy published layers into `target_dir`; only new or changed layers do any work.

    With ``repair``, every selected layer that `verify` would flag is extracted again from its
    archive (and post-installed), and a warning names each one.
    """
    artifacts = artifacts.absolute()
    target_dir = target_dir.absolute()
    listed, extra = load_published(artifacts)
    layers = select_published(listed, include, extra, artifacts)
    if not layers:
        raise DeployError(f"{artifacts}: the manifest lists no layers")
    _preflight(artifacts, target_dir, layers)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create {target_dir}: {describe_os_error(exc)}") from None
    state = target_dir / STATE_DIR
    with build_dir_lock(state / "deploy.lock"):
        sweep_scratch(target_dir, [layer.target for layer in layers] + _known_targets(target_dir))
        damaged = _damaged(target_dir, layers) if repair else {}
        for target, differences in damaged.items():
            _log.warning(
                "repairing %s: %d file(s) differ from what was published; restoring it from %s",
                target, differences.count,
                next(l.archive_name for l in layers if l.target == target),
            )  # fmt: skip
        tasks = deploy_tasks(artifacts, target_dir, layers, list(damaged))
        try:
            result = run_tasks(
                tasks,
                [f"deploy:{l.target}" for l in layers],
                state / "tasks.db",
                jobs=jobs,
                progress=progress,
            )
        except (InvalidTask, InvalidCommand, InvalidDodoFile) as exc:
            raise DeployError(f"cannot plan the deployment: {exc}") from None
    if result.code != 0:
        first = next(iter(result.failures.values()), f"deploy failed with status {result.code}")
        raise DeployError(first.strip().splitlines()[-1] if "Traceback" in first else first)
    _write_record(target_dir, layers)
    for target in damaged:
        _log.warning("repaired %s", target)
    return layers, result


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
            if isinstance(target, str) and target and "/" not in target and target not in (".", ".."):
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
        apps = sorted(t for t, m in layers.items() if m.get("category") == "applications")
        raise DeployError(
            f"no deployed application {app!r} in {target_dir} (deployed: {', '.join(apps) or 'none'})"
        )
    # By install target: that one. By name: the newest lock version deployed (the record is kept
    # with sorted keys, where "app-x@10" sorts before "app-x@9").
    target, meta = max(candidates, key=lambda c: (c[0] == app, _lock_version(c[1])))
    return target_dir / target, str(meta["app_launch_module"])


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
            target, read_recorded(_layer_record(target_dir, target), target), target_dir / target
        )
        for target in deployed_layers(target_dir)
    ]
