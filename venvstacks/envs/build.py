"""Building layer environments: provision runtimes, install locks, link layers together.

Each operation works on one layer and is safe to interrupt: environments are built in a temporary
sibling folder and renamed into place, so a half-built environment is never taken for a good one.
The operations are plain functions; `tasks.py` wraps them as doit tasks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvstacks.envs import dynlib
from venvstacks.envs._injected import postinstall
from venvstacks.envs.localwheels import find_local_wheels, write_sync_lock
from venvstacks.envs.manifest import record_folder
from venvstacks.envs.oserrors import free_space, os_errors
from venvstacks.envs.sourcetree import copy_module, default_source_filter
from venvstacks.errors import BuildError, RuntimeProvisionError, StackError
from venvstacks.lock.project import find_links_folders
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName, LayerKind
from venvstacks.plan.platforms import (
    build_platform,
    parse_linux_target,
    uv_python_platform,
)
from venvstacks.proc import ProcessFailed, run_checked, tail, uv_command
from venvstacks.runtimes.request import RuntimeSource

__all__ = [
    "RuntimeOptions",
    "deployed_config",
    "env_manifest_path",
    "install_layer",
    "link_layer",
    "provision_runtime",
    "runtime_manifest_path",
    "runtime_python",
]

_log = logging.getLogger(__name__)
LAYER_CONFIG = Path("share/venv/metadata/venvstacks_layer.json")


@dataclass(frozen=True)
class RuntimeOptions:
    archive_dirs: tuple[Path, ...] = ()
    fallback: str = "none"
    base_url: str | None = None


def runtime_python(layout: BuildLayout, runtime_env: EnvName) -> Path:
    """The provisioned (lock-time) interpreter of a runtime layer."""
    return layout.runtime_cache / runtime_env / "bin" / "python3"


def provision_record_path(layout: BuildLayout, runtime_env: EnvName) -> Path:
    return layout.runtime_cache / f"{runtime_env}.json"


def env_manifest_path(layout: BuildLayout, env: EnvName) -> Path:
    """The manifest of a layer's environment, written by its install and link tasks."""
    return layout.state_dir / "manifests" / f"env.{env}.json"


def runtime_manifest_path(layout: BuildLayout, runtime_env: EnvName) -> Path:
    """The manifest of a runtime's unpacked interpreter, written by its runtime task."""
    return layout.state_dir / "manifests" / f"runtime.{runtime_env}.json"


def provision_runtime(
    plan: StackPlan, env: EnvName, layout: BuildLayout, options: RuntimeOptions
) -> dict[str, Any]:
    """Find, verify and unpack a runtime's interpreter into the build dir's runtime cache."""
    layer = plan[env]
    with os_errors(env, f"unpacking the runtime into {layout.runtime_cache / env}"):
        source = _provision(layer, env, layout, options)
        record_folder(layout.runtime_cache / env, runtime_manifest_path(layout, env))
        record = _source_record(source)
        record_path = provision_record_path(layout, env)
        record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _provision(
    layer: LayerPlan, env: EnvName, layout: BuildLayout, options: RuntimeOptions
) -> RuntimeSource:
    # Imported here: finding and unpacking a runtime (tarfile, archive scans) is rare work.
    from venvstacks.runtimes.install import install_runtime
    from venvstacks.runtimes.resolve import find_runtime

    try:
        source = find_runtime(
            layer.python_implementation,
            archive_dirs=options.archive_dirs,
            fallback="host" if options.fallback == "host" else "none",
            cache_dir=layout.runtime_cache / "archives",
            base_url=options.base_url,
        )
        if source.notice or source.warning:
            _log.warning("warning: %s: %s", env, source.notice or source.warning)
        install_runtime(source, layout.runtime_cache / env)
    except RuntimeProvisionError as exc:
        if exc.layer is not None:
            raise
        raise RuntimeProvisionError(env, exc.detail) from None
    return source


def _source_record(source: RuntimeSource) -> dict[str, Any]:
    return {
        "archive": source.archive.name,
        "sha256": source.sha256,
        "kind": str(source.kind),
        # Archive folders are the builder's own paths: record the archive's name, not where it was.
        "description": source.description
        if str(source.kind) == "host-packed"
        else f"{source.kind} {source.archive.name}",
        "version": source.version,
        "portable": source.portable,
        **({"warning": source.warning} if source.warning else {}),
    }


def runtime_provenance(layout: BuildLayout, runtime_env: EnvName) -> dict[str, Any]:
    """Where a runtime layer's interpreter came from (recorded by `provision_runtime`)."""
    try:
        data = json.loads(provision_record_path(layout, runtime_env).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def site_dir(layer: LayerPlan) -> str:
    return f"lib/python{layer.py_major_minor}/site-packages"


def _staging_dir(target: Path) -> Path:
    staging = target.with_name(f".{target.name}.new")
    if staging.exists():
        shutil.rmtree(staging)
    return staging


def swap_into_place(staging: Path, target: Path) -> None:
    """Replace `target` with `staging` so that `target` is always either old or new, whole."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists() or target.is_symlink():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _uv_sync(env: EnvName, python: Path, lock: Path, layer: LayerPlan) -> None:
    platform = build_platform()
    linux = parse_linux_target(layer.spec.linux_target or "glibc@2.28")
    argv = [
        *uv_command(),
        "pip",
        "sync",
        "--python",
        str(python),
        "--quiet",
        "--no-color",
        "--python-platform",
        uv_python_platform(platform, linux),
        "--link-mode",
        "copy",
        "--allow-empty-requirements",
        "--break-system-packages",
        str(lock),
    ]
    extra = {"MACOSX_DEPLOYMENT_TARGET": layer.spec.macosx_target or "13.0"}
    try:
        run_checked(argv, env=extra, cwd=lock.parent)
    except ProcessFailed as exc:
        if "No space left on device" in exc.output or "os error 28" in exc.output:
            where = python.parent.parent
            raise BuildError(
                env,
                f"out of disk space installing {lock.name} into {where}"
                f"{free_space(where)}: {uv_failure(exc.output)}",
            ) from None
        raise BuildError(env, f"installing {lock.name} failed: {uv_failure(exc.output)}") from None


def uv_failure(output: str) -> str:
    """uv's error and its innermost cause on one line, or else the tail of its output.

    uv reports `error: <what failed>` followed by indented `cause:` (`Caused by:` in older
    releases) lines, innermost last: `Failed to install: x.whl (x==1.0): The wheel is invalid`.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    causes = [
        line.split(":", 1)[1].strip()
        for line in lines
        if line.lower().startswith(("cause:", "caused by:"))
    ]
    if not errors:
        return "\n" + tail(output)
    return ": ".join([errors[0], *causes[-1:]])


def sweep_staging(layout: BuildLayout) -> list[Path]:
    """Remove what killed builds left behind: staging and old copies of environments.

    Call only while holding the build-dir lock, when no other build can be using them.
    """
    leftovers: list[Path] = []
    for folder in (layout.build_dir, layout.runtime_cache):
        if folder.is_dir():
            leftovers += [
                p
                for p in folder.iterdir()
                if p.is_dir()
                and p.name.startswith(".")
                and (
                    p.name.endswith((".new", ".old"))
                    or ".unpacking-" in p.name
                    or ".old-" in p.name
                )
            ]
    for path in leftovers:
        _log.info("removing %s, left by an interrupted build", path)
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def install_layer(
    plan: StackPlan, env: EnvName, layout: BuildLayout, wheel_dirs: Sequence[Path] = ()
) -> dict[str, Any]:
    """Create the layer's environment from scratch and install its lock into it.

    A local wheel the lock records (relative to the lock file) but that is not there is looked
    up by filename in `wheel_dirs` (``--local-wheels``) and the spec's find-links folders.
    """
    layer = plan[env]
    if not layer.targets(build_platform()):
        raise BuildError(env, f"does not target this platform ({build_platform()})")
    target = layout.env_dir(env)
    staging = _staging_dir(target)
    lock = layout.lock(env).pylock
    if not lock.exists():
        raise BuildError(env, f"no lock file at {lock}; run `venvstacks lock` first")
    folders = [*wheel_dirs, *find_links_folders(plan)]
    wheels = find_local_wheels(env, lock, folders)
    relocated = target.with_name(f".{target.name}.lock.new")  # swept if interrupted
    with os_errors(env, f"building the environment in {staging}"):
        try:
            if layer.kind is LayerKind.RUNTIME:
                python = _stage_runtime(layout, env, staging)
            else:
                python = _stage_venv(plan, layer, layout, staging)
            synced = lock
            if any(w.elsewhere for w in wheels):
                synced = write_sync_lock(lock, wheels, relocated)
            _uv_sync(env, python, synced, layer)
            dynlib.clean_scripts_dir(staging)
            _drop_uv_cache_records(staging / site_dir(layer))
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(relocated, ignore_errors=True)
        # (Interrupted: no time is spent removing it; the next build sweeps it away.)
    with os_errors(env, f"putting the environment in place at {target}"):
        swap_into_place(staging, target)
        # What the environment holds now: its install task is up to date only while it matches.
        record_folder(target, env_manifest_path(layout, env))
    return {"built_at": time.time_ns(), "lock": lock.name}


def copy_tree_linked(source: Path, dest: Path) -> None:
    """A copy of `source` made of hard links (copies across devices), symlinks kept as links."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    top = os.fspath(source)

    def ignore(folder: str, names: list[str]) -> set[str]:
        # Bytecode caches anywhere; build-time dot files at the top (uv's `.lock`), as 0.8.0.
        skipped = {name for name in names if name == "__pycache__"}
        if folder == top:
            skipped.update(name for name in names if name.startswith("."))
        return skipped

    shutil.copytree(source, dest, symlinks=True, copy_function=link_or_copy, ignore=ignore)


def _stage_runtime(layout: BuildLayout, env: EnvName, staging: Path) -> Path:
    source = layout.runtime_cache / env
    if not (source / "bin" / "python3").exists():
        raise BuildError(env, "the runtime has not been provisioned (its runtime task must run)")
    # Hard links: installing only adds files, and nothing in a layer is rewritten in place
    # (deployed copies replace what they change), so the provisioned runtime stays pristine.
    copy_tree_linked(source, staging)
    python = staging / "bin" / "python"
    if not python.exists():
        python.symlink_to("python3")
    return staging / "bin" / "python3"


def _stage_venv(plan: StackPlan, layer: LayerPlan, layout: BuildLayout, staging: Path) -> Path:
    base = layout.env_dir(layer.runtime) / "bin" / "python3"
    if not base.exists():
        raise BuildError(layer.env_name, f"its runtime {layer.runtime} has not been built")
    try:
        run_checked(
            [str(base), "-X", "utf8", "-Im", "venv", "--without-pip", "--symlinks", str(staging)]
        )
    except ProcessFailed as exc:
        raise BuildError(layer.env_name, f"creating the venv failed:\n{tail(exc.output)}") from None
    return staging / "bin" / "python"


def _drop_uv_cache_records(site: Path) -> None:
    """Remove uv's `uv_cache.json` (it records local wheel mtimes) and its RECORD line.

    uv uses it to decide whether to reinstall a local package into an existing environment;
    venvstacks always installs into a fresh one, and the file would make archives depend on
    when the wheels were last touched.
    """
    for cache_file in site.glob("*.dist-info/uv_cache.json"):
        cache_file.unlink()
        record = cache_file.with_name("RECORD")
        if record.exists():
            prefix = f"{cache_file.parent.name}/uv_cache.json,"
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            record.write_text(
                "".join(l for l in lines if not l.startswith(prefix)), encoding="utf-8"
            )


def install_target(plan: StackPlan, layout: BuildLayout, env: EnvName) -> str:
    """The deployed folder name of a layer: `@N` added for versioned layers."""
    layer = plan[env]
    if not layer.spec.versioned:
        return env
    try:
        meta = json.loads(layout.lock(env).metadata.read_text())
    except (OSError, ValueError):
        raise BuildError(env, "a versioned layer needs a valid lock to be named") from None
    return f"{env}@{meta['lock_version']}"


def deployed_names(plan: StackPlan, layout: BuildLayout, env: EnvName) -> str:
    """The deployed names a layer's link (and archive) depend on: its own and its lower layers'.

    Links depend on these rather than on whole lock metadata files, so a relock that keeps a
    layer's name (an unversioned layer, or unchanged lock content) relinks nothing.
    """
    names = []
    for name in (env, *plan[env].dependencies):
        try:
            names.append(install_target(plan, layout, name))
        except StackError:
            names.append(f"{name}@?")
    return " ".join(names)


def deployed_config(plan: StackPlan, layout: BuildLayout, env: EnvName) -> dict[str, Any]:
    """The layer's `venvstacks_layer.json`: paths relative to the layer folder, deployed names."""
    layer = plan[env]
    own_site = site_dir(layer)
    config: dict[str, Any] = {
        "python": "bin/python",
        "py_version": _full_py_version(layout, layer),
        "site_dir": own_site,
    }
    if layer.kind is LayerKind.RUNTIME:
        config.update(base_python="bin/python", pylib_dirs=[], dynlib_dirs=[])
        return config
    runtime_target = install_target(plan, layout, layer.runtime)
    deps = [install_target(plan, layout, d) for d in layer.dependencies]
    config["base_python"] = f"../{runtime_target}/bin/python"
    config["pylib_dirs"] = [f"../{t}/{own_site}" for t in deps]
    config["dynlib_dirs"] = [f"../{t}/share/venv/dynlib" for t in deps]
    if layer.kind is LayerKind.APPLICATION and layer.spec.launch_module is not None:
        config["launch_module"] = layer.spec.launch_module.stem
    return config


def _full_py_version(layout: BuildLayout, layer: LayerPlan) -> str:
    version = runtime_provenance(layout, layer.runtime).get("version")
    return str(version) if version else layer.py_version


def link_layer(plan: StackPlan, env: EnvName, layout: BuildLayout) -> dict[str, Any]:
    """Connect a built environment to its lower layers and add what deployment needs."""
    env_dir = layout.env_dir(env)
    if not env_dir.exists():
        raise BuildError(env, f"environment {env_dir} does not exist (its install task must run)")
    with os_errors(env, f"linking {env_dir}"):
        result = _link(plan, env, layout, env_dir)
        # Linked: from now on the environment must match this manifest to be up to date.
        record_folder(env_dir, env_manifest_path(layout, env))
    return result


def _link(plan: StackPlan, env: EnvName, layout: BuildLayout, env_dir: Path) -> dict[str, Any]:
    layer = plan[env]
    config = deployed_config(plan, layout, env)
    _write_json(env_dir / LAYER_CONFIG, config)
    site = env_dir / site_dir(layer)
    copied = _copy_app_modules(layer, site)
    libs = dynlib.find_shared_libraries(
        site, py_version=layer.py_major_minor, exclude_patterns=layer.spec.dynlib_exclude
    )
    dynlib.apply_dynlib_links(env_dir, dynlib.plan_dynlib_links(libs, layer=env))
    if layer.kind is not LayerKind.RUNTIME:
        _link_to_lower_layers(plan, layer, layout, env_dir, site)
    dynlib.make_symlinks_portable(env_dir, layout.build_dir, layer=env)
    return {
        "linked_at": time.time_ns(),
        "modules": copied,
        "install_target": install_target(plan, layout, env),
        "deployed_names": deployed_names(plan, layout, env),
    }


def _copy_app_modules(layer: LayerPlan, site: Path) -> list[str]:
    spec = layer.spec
    if spec.kind is not LayerKind.APPLICATION or spec.launch_module is None:
        return []
    keep = default_source_filter(spec.launch_module.parent)
    copied = []
    for module in (spec.launch_module, *spec.support_modules):
        copied.append(copy_module(module, site, source_filter=keep).name)
    return copied


def _link_to_lower_layers(
    plan: StackPlan, layer: LayerPlan, layout: BuildLayout, env_dir: Path, site: Path
) -> None:
    deps = [layout.env_dir(d) for d in layer.dependencies]
    pylib = [str(d / site_dir(layer)) for d in deps]
    dynlibs = [str(d / "share" / "venv" / "dynlib") for d in deps]
    text = postinstall.render_sitecustomize(pylib, dynlibs, windows=False)
    if text is not None:
        (site / "sitecustomize.py").write_text(text, encoding="utf-8")
    _write_python_wrapper(layer, layout, env_dir)


def _write_python_wrapper(layer: LayerPlan, layout: BuildLayout, env_dir: Path) -> None:
    """bin/python: a script adding lower layers' dynlib dirs to the library path, then the runtime."""
    bin_dir = env_dir / "bin"
    base = layout.env_dir(layer.runtime) / "bin" / "python"
    relative_dynlibs = [
        os.path.relpath(layout.env_dir(d) / "share" / "venv" / "dynlib", bin_dir)
        for d in layer.dependencies
    ]
    for name in ("python", "python_", "python3", f"python{layer.py_major_minor}"):
        path = bin_dir / name
        if path.is_symlink() or path.exists():
            path.unlink()
    (bin_dir / "python_").symlink_to(os.path.relpath(base, bin_dir))
    wrapper = postinstall.render_python_wrapper(relative_dynlibs, macos=sys.platform == "darwin")
    (bin_dir / "python").write_text(wrapper, encoding="utf-8")
    (bin_dir / "python").chmod(0o755)
    for alias in ("python3", f"python{layer.py_major_minor}"):
        (bin_dir / alias).symlink_to("python")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
