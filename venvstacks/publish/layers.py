"""Publishing layers: deployed copies, reproducible archives, local exports, layer metadata.

A layer is published from a *deployed copy* of its build environment: hard links to the built
files, with what only made sense in the build dir taken out (`pyvenv.cfg`, the build-time
`sitecustomize.py`) and what deployment needs put in (`postinstall.py`, a `bin/python` wrapper
and `bin/python_` link that point at peer layers by their deployed names). An archive is only
rewritten when the content of that copy changed, so `archive_build` counts real rebuilds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks import __version__
from venvstacks.envs import build as envbuild
from venvstacks.envs._injected import postinstall
from venvstacks.envs.sourcetree import default_source_filter, hash_module
from venvstacks.errors import PublishError
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import METADATA_DIR, METADATA_ENV_DIR, METADATA_MANIFEST, BuildLayout
from venvstacks.plan.names import EnvName, LayerKind
from venvstacks.plan.platforms import build_platform
from venvstacks.proc import uv_command
from venvstacks.publish import output
from venvstacks.publish.files import describe_os_error
from venvstacks.publish.formats import ArchiveFormat, archive_suffix

__all__ = [
    "PublishOptions",
    "archive_name",
    "export_layer",
    "layer_metadata",
    "prepare_deployed_copy",
    "tree_fingerprint",
    "write_manifest",
]

_log = logging.getLogger(__name__)
POSTINSTALL_SOURCE = Path(postinstall.__file__)


@dataclass(frozen=True)
class PublishOptions:
    """Where and how layers are published."""

    output_dir: Path
    fmt: ArchiveFormat = ArchiveFormat.TAR_XZ
    tag_outputs: bool = False
    force: bool = False
    export: bool = False  # local-export instead of archives
    level: int | None = None  # compression level; None: the format's default

    @property
    def platform_tag(self) -> str:
        return f"-{build_platform()}" if self.tag_outputs else ""

    def metadata_path(self, env: EnvName) -> Path:
        tag = "" if self.export else self.platform_tag
        return self.output_dir / METADATA_DIR / METADATA_ENV_DIR / f"{env}{tag}.json"

    def manifest_path(self) -> Path:
        tag = "" if self.export else self.platform_tag
        name = METADATA_MANIFEST if not tag else f"venvstacks{tag}.json"
        return self.output_dir / METADATA_DIR / name


def _lock_metadata(layout: BuildLayout, env: EnvName) -> dict[str, Any]:
    try:
        data = json.loads(layout.lock(env).metadata.read_text())
    except (OSError, ValueError):
        raise PublishError(env, "has no valid lock metadata (lock and build it first)") from None
    return data if isinstance(data, dict) else {}


def _app_modules(layer: LayerPlan) -> dict[str, Any]:
    spec = layer.spec
    if spec.kind is not LayerKind.APPLICATION or spec.launch_module is None:
        return {}
    keep = default_source_filter(spec.launch_module.parent)
    fields: dict[str, Any] = {
        "app_launch_module": spec.launch_module.stem,
        "app_launch_module_hash": hash_module(spec.launch_module, source_filter=keep),
    }
    if spec.support_modules:
        fields["app_support_modules"] = [
            {"name": p.stem, "hash": hash_module(p, source_filter=keep)}
            for p in spec.support_modules
        ]
    return fields


def layer_metadata(plan: StackPlan, layout: BuildLayout, env: EnvName) -> dict[str, Any]:
    """The published keys every layer has (0.8.0's `LayerSpecMetadata`), plus provenance."""
    layer = plan[env]
    lock = _lock_metadata(layout, env)
    runtime = plan[layer.runtime]
    meta: dict[str, Any] = {
        "layer_name": env,
        "install_target": envbuild.install_target(plan, layout, env),
        "requirements_hash": lock["requirements_hash"],
        "lock_version": lock["lock_version"],
        "locked_at": lock["locked_at"],
        "runtime_layer": envbuild.install_target(plan, layout, runtime.env_name),
        "python_implementation": runtime.python_implementation,
        "bound_to_implementation": layer.kind is LayerKind.RUNTIME,
    }
    if layer.kind is not LayerKind.RUNTIME:
        meta["required_layers"] = [
            envbuild.install_target(plan, layout, f) for f in layer.frameworks
        ]
    meta.update(_app_modules(layer))
    meta["venvstacks_build"] = {
        "venvstacks_version": __version__,
        "uv_version": _uv_version(),
        "runtime": envbuild.runtime_provenance(layout, runtime.env_name),
    }
    return meta


@functools.cache
def _uv_version() -> str:
    """The version of the uv venvstacks runs (found once, through the thread-safe lookup)."""
    try:
        out = subprocess.run(
            [*uv_command(), "--version"], capture_output=True, text=True, check=False
        )
        return out.stdout.split()[1] if out.returncode == 0 else "unknown"
    except (OSError, IndexError):
        return "unknown"


def _replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a new file at `path` (never through a hard link shared with the build env)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def prepare_deployed_copy(plan: StackPlan, layout: BuildLayout, env: EnvName, dest: Path) -> Path:
    """A copy of the built layer as it is deployed (see the module docstring)."""
    layer = plan[env]
    source = layout.env_dir(env)
    if not source.exists():
        raise PublishError(env, f"environment {source} is not built (run venvstacks build)")
    envbuild.copy_tree_linked(source, dest)
    (dest / "pyvenv.cfg").unlink(missing_ok=True)
    site = dest / envbuild.site_dir(layer)
    (site / "sitecustomize.py").unlink(missing_ok=True)
    if layer.kind is not LayerKind.RUNTIME:
        _point_at_deployed_peers(plan, layout, layer, dest)
    shutil.copyfile(POSTINSTALL_SOURCE, dest / "postinstall.py")
    return dest


def _point_at_deployed_peers(
    plan: StackPlan, layout: BuildLayout, layer: LayerPlan, dest: Path
) -> None:
    bin_dir = dest / "bin"
    runtime_target = envbuild.install_target(plan, layout, layer.runtime)
    python_ = bin_dir / "python_"
    if python_.is_symlink() or python_.exists():
        python_.unlink()
    python_.symlink_to(f"../../{runtime_target}/bin/python")
    dynlibs = [
        f"../../{envbuild.install_target(plan, layout, d)}/share/venv/dynlib"
        for d in layer.dependencies
    ]
    wrapper = postinstall.render_python_wrapper(dynlibs, macos=sys.platform == "darwin")
    _replace_file(bin_dir / "python", wrapper, 0o755)


def tree_fingerprint(root: Path) -> str:
    """A digest of a folder's names, kinds, executable bits, link targets and file contents."""
    digest = hashlib.sha256()
    for path in _walk_sorted(root):
        rel = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            digest.update(f"L {rel} {path.readlink()}\n".encode())
        elif stat.S_ISDIR(info.st_mode):
            digest.update(f"D {rel}\n".encode())
        else:
            executable = bool(info.st_mode & 0o111)
            digest.update(f"F {rel} {executable} {info.st_size}\n".encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _walk_sorted(root: Path) -> Iterator[Path]:
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name == "__pycache__":
            continue
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_sorted(entry)


def archive_name(meta: Mapping[str, Any], build: int, options: PublishOptions) -> str:
    """The final archive name of a layer's metadata at archive build ``build``."""
    base = str(meta["install_target"])
    if options.tag_outputs:
        base = f"{base}-{build_platform()}-{build}"
    return base + archive_suffix(options.fmt)


def export_layer(
    plan: StackPlan, env: EnvName, layout: BuildLayout, options: PublishOptions, record_path: Path
) -> dict[str, Any]:
    """Export one layer as a ready-to-run folder `<output>/<install target>/`, post-installed."""
    meta = layer_metadata(plan, layout, env)
    target = options.output_dir / str(meta["install_target"])
    staging = target.with_name(f".{target.name}.new")
    if staging.exists():
        shutil.rmtree(staging)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        prepare_deployed_copy(plan, layout, env, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    envbuild.swap_into_place(staging, target)
    _run_postinstall(env, target)
    layer = output.LayerOutput(
        plan, env, options.output_dir, options.metadata_path, options.manifest_path(), True
    )
    output.publish_metadata(layer, meta)
    output.write_json(record_path, {"exported": str(target)})
    return meta


def _run_postinstall(env: EnvName, layer_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "utf8", "-I", str(layer_dir / "postinstall.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PublishError(
            env, f"postinstall failed in {layer_dir}: {result.stderr.strip()[-500:]}"
        )


def write_manifest(plan: StackPlan, envs: Sequence[EnvName], options: PublishOptions) -> Path:
    """`__venvstacks__/venvstacks.json`: every layer of the stack with current metadata here.

    ``envs`` (the layers this run published) must all be there. Layers published earlier keep
    their entries, so a partial publish never hides the rest (0.8.0 listed only ``envs``).
    Debris of interrupted publishes is swept first.
    """
    meta_dir = options.manifest_path().parent
    try:
        output.sweep_output(options.output_dir, meta_dir)
        with output.metadata_lock(meta_dir):
            try:
                manifest = output.render_manifest(
                    plan, options.output_dir, options.metadata_path, options.export, envs
                )
            except KeyError as exc:
                env = EnvName(str(exc.args[0]))
                raise PublishError(
                    env, f"missing or incomplete metadata {options.metadata_path(env)}"
                ) from None
            path = options.manifest_path()
            output.write_json(path, manifest)
    except OSError as exc:
        raise PublishError(None, f"cannot write {meta_dir}: {describe_os_error(exc)}") from exc
    return path
