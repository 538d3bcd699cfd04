"""Deploying published layers: verify, extract safely, post-install, record; run and verify apps.

`deploy` turns an artefacts folder (archives + `__venvstacks__/venvstacks.json`) into peer layer
folders under a target dir. Each layer is a `deploy:<install target>` task whose dependency state
lives in the target dir, so re-deploying an unchanged layer does nothing and an updated layer
replaces only itself. Layers are post-installed runtime first. A per-layer file manifest,
written at deploy time, lets `verify` report files that differ from what was published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from venvstacks.deploy.extract import safe_extract, verify_archive
from venvstacks.errors import DeployError, StackError
from venvstacks.plan.layout import METADATA_DIR, METADATA_MANIFEST
from venvstacks.plan.platforms import build_platform
from venvstacks.tasks.engine import RunResult, TaskDict, build_dir_lock, run_tasks
from venvstacks.tasks.stack import run_operation

__all__ = [
    "LayerDifferences",
    "PublishedLayer",
    "deploy",
    "find_app",
    "load_published",
    "run_app",
    "verify_deployment",
]

_log = logging.getLogger(__name__)
STATE_DIR = ".venvstacks-deploy"
LAYER_CONFIG = Path("share/venv/metadata/venvstacks_layer.json")
# Written by postinstall, or caches: not part of what was published.
_POSTINSTALL_OUTPUTS = ("pyvenv.cfg",)
_CATEGORIES = ("runtimes", "frameworks", "applications")


@dataclass(frozen=True)
class PublishedLayer:
    category: str
    meta: Mapping[str, Any]

    @property
    def target(self) -> str:
        return str(self.meta["install_target"])

    @property
    def lower(self) -> list[str]:
        """Install targets this layer needs: its runtime, then its frameworks."""
        if self.category == "runtimes":
            return []
        return [str(self.meta["runtime_layer"]), *map(str, self.meta.get("required_layers", []))]


def _manifest_path(artifacts: Path) -> Path:
    plain = artifacts / METADATA_DIR / METADATA_MANIFEST
    if plain.exists():
        return plain
    tagged = artifacts / METADATA_DIR / f"venvstacks-{build_platform()}.json"
    if tagged.exists():
        return tagged
    raise DeployError(
        f"{artifacts}: no {METADATA_DIR}/{METADATA_MANIFEST} (is this a publish output dir?)"
    )


def load_published(artifacts: Path) -> list[PublishedLayer]:
    """The published layers, runtimes first, from the stack manifest."""
    path = _manifest_path(artifacts)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        layers = data["layers"]
        return [PublishedLayer(cat, meta) for cat in _CATEGORIES for meta in layers.get(cat, [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DeployError(f"{path}: not a valid venvstacks manifest ({exc})") from None


def select_published(
    layers: Sequence[PublishedLayer], include: Sequence[str]
) -> list[PublishedLayer]:
    """The layers matching `include` (layer names or install targets) and everything they need."""
    if not include:
        return list(layers)
    by_target = {layer.target: layer for layer in layers}
    wanted: dict[str, None] = {}
    unmatched = []
    for pattern in include:
        matches = [
            l
            for l in layers
            if fnmatchcase(l.target, pattern)
            or fnmatchcase(str(l.meta.get("layer_name", "")), pattern)
        ]
        if not matches:
            unmatched.append(pattern)
        for layer in matches:
            for needed in [*layer.lower, layer.target]:
                wanted[needed] = None
    if unmatched:
        raise DeployError(f"no published layers match {', '.join(map(repr, unmatched))}")
    missing = [t for t in wanted if t not in by_target]
    if missing:
        raise DeployError(
            f"the artefacts lack layers that the selection needs: {', '.join(missing)}"
        )
    return [l for l in layers if l.target in wanted]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _published_files(layer_dir: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(layer_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            yield Path(folder) / name
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                yield Path(folder) / name


def file_manifest(layer_dir: Path, site_dir: str | None) -> dict[str, str]:
    """Every published entry of a deployed layer: sha256 for files, `->target` for symlinks."""
    skip = {*_POSTINSTALL_OUTPUTS}
    if site_dir:
        skip.add(f"{site_dir}/sitecustomize.py")
    result: dict[str, str] = {}
    for path in _published_files(layer_dir):
        rel = path.relative_to(layer_dir).as_posix()
        if rel in skip:
            continue
        result[rel] = f"->{path.readlink()}" if path.is_symlink() else _file_digest(path)
    return result


def _layer_site_dir(layer_dir: Path) -> str | None:
    try:
        config = json.loads((layer_dir / LAYER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    site = config.get("site_dir") if isinstance(config, dict) else None
    return site if isinstance(site, str) else None


def deploy_layer(
    artifacts: Path, target_dir: Path, layer_meta: Mapping[str, Any], runtime: str
) -> dict[str, Any]:
    """Verify, extract and post-install one layer; record what was deployed."""
    name = str(layer_meta["install_target"])
    archive = artifacts / str(layer_meta["archive_name"])
    expected = layer_meta.get("archive_hashes", {}).get("sha256")
    verify_archive(archive, int(layer_meta["archive_size"]), str(expected))
    layer_dir = target_dir / name
    _refuse_foreign(target_dir, name)
    safe_extract(archive, layer_dir, expected_root=name, allow_peer_links=True, replace=True)
    manifest = file_manifest(layer_dir, _layer_site_dir(layer_dir))
    _postinstall(target_dir, name, runtime)
    record = {
        "install_target": name,
        "archive": archive.name,
        "sha256": expected,
        "files": manifest,
    }
    state = _layer_record(target_dir, name)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {"install_target": name, "sha256": str(expected)}


def _postinstall(target_dir: Path, name: str, runtime: str) -> None:
    python = target_dir / runtime / "bin" / "python"
    script = target_dir / name / "postinstall.py"
    result = subprocess.run(
        [str(python), "-X", "utf8", "-I", str(script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeployError(f"{name}: postinstall failed: {detail[0]}")


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
    hashes = layer.meta.get("archive_hashes")
    return str(hashes.get("sha256")) if isinstance(hashes, Mapping) else ""


def _preflight(artifacts: Path, target_dir: Path, layers: Sequence[PublishedLayer]) -> None:
    """Check every layer that will be deployed before anything in `target_dir` changes."""
    for layer in layers:
        if _is_current(target_dir, layer.target, _published_sha256(layer)):
            continue
        meta = layer.meta
        try:
            size = int(meta["archive_size"])
            expected = str(meta["archive_hashes"]["sha256"])
            archive = artifacts / str(meta["archive_name"])
        except (KeyError, TypeError, ValueError):
            raise DeployError(
                f"{layer.target}: incomplete archive metadata in the manifest"
            ) from None
        verify_archive(archive, size, expected)
        _refuse_foreign(target_dir, layer.target)


def deploy_tasks(
    artifacts: Path, target_dir: Path, layers: Sequence[PublishedLayer]
) -> list[TaskDict]:
    tasks: list[TaskDict] = []
    for layer in layers:
        stamp = target_dir / STATE_DIR / "stamps" / f"deploy.{layer.target}.json"
        runtime = layer.target if layer.category == "runtimes" else str(layer.meta["runtime_layer"])
        tasks.append(
            {
                "basename": "deploy",
                "name": layer.target,
                "doc": f"deploy {layer.target} from {layer.meta['archive_name']}",
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
                "task_dep": [f"deploy:{t}" for t in layer.lower],
                "uptodate": [(_is_current, [target_dir, layer.target, _published_sha256(layer)])],
            }
        )
    return tasks


def deploy(
    artifacts: Path,
    target_dir: Path,
    include: Sequence[str] = (),
    *,
    jobs: int = 1,
    progress: Any = None,
) -> tuple[list[PublishedLayer], RunResult]:
    """Deploy published layers into `target_dir`; only new or changed layers do any work."""
    artifacts = artifacts.absolute()
    target_dir = target_dir.absolute()
    layers = select_published(load_published(artifacts), include)
    if not layers:
        raise DeployError(f"{artifacts}: the manifest lists no layers")
    _preflight(artifacts, target_dir, layers)
    target_dir.mkdir(parents=True, exist_ok=True)
    state = target_dir / STATE_DIR
    with build_dir_lock(state / "deploy.lock"):
        tasks = deploy_tasks(artifacts, target_dir, layers)
        result = run_tasks(
            tasks,
            [f"deploy:{l.target}" for l in layers],
            state / "tasks.db",
            jobs=jobs,
            progress=progress,
        )
    if result.code != 0:
        first = next(iter(result.failures.values()), f"deploy failed with status {result.code}")
        raise DeployError(first)
    _write_record(target_dir, layers)
    return layers, result


def _write_record(target_dir: Path, layers: Sequence[PublishedLayer]) -> None:
    path = target_dir / STATE_DIR / "deployment.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    for layer in layers:
        known[layer.target] = {
            "category": layer.category,
            **{k: v for k, v in layer.meta.items() if k != "venvstacks_build"},
        }
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def deployed_layers(target_dir: Path) -> dict[str, dict[str, Any]]:
    path = target_dir / STATE_DIR / "deployment.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise DeployError(
            f"{target_dir}: nothing has been deployed here (no {STATE_DIR}/deployment.json)"
        ) from None
    except ValueError:
        raise DeployError(f"{path}: damaged deployment record") from None
    return data if isinstance(data, dict) else {}


def find_app(target_dir: Path, app: str) -> tuple[Path, str]:
    """The deployed folder and launch module of an application (by layer name or install target)."""
    layers = deployed_layers(target_dir)
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


@dataclass(frozen=True)
class LayerDifferences:
    target: str
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    added: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.added)


def verify_deployment(target_dir: Path) -> list[LayerDifferences]:
    """Compare every deployed layer's files with the manifest recorded when it was deployed."""
    target_dir = target_dir.absolute()
    results = []
    for target in deployed_layers(target_dir):
        state = target_dir / STATE_DIR / "layers" / f"{target}.json"
        try:
            recorded: dict[str, str] = json.loads(state.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError):
            raise StackError(f"{state}: no file manifest for {target} (redeploy it)") from None
        layer_dir = target_dir / target
        current = file_manifest(layer_dir, _layer_site_dir(layer_dir)) if layer_dir.exists() else {}
        current.pop("postinstall.py", None) if "postinstall.py" not in recorded else None
        results.append(
            LayerDifferences(
                target,
                tuple(sorted(set(recorded) - set(current))),
                tuple(sorted(k for k in recorded if k in current and current[k] != recorded[k])),
                tuple(sorted(set(current) - set(recorded))),
            )
        )
    return results
