"""Typed, frozen option objects for the public API: what each `Stack` method is asked to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "BuildOptions",
    "ExportOptions",
    "LockOptions",
    "PublishOptions",
    "RemoteCache",
    "Sources",
]

RuntimeFallback = Literal["none", "host"]
ArchiveFormatName = Literal["tar.xz", "tar.gz", "tar.zst", "zip"]


@dataclass(frozen=True)
class RemoteCache:
    """An OCI registry repository used as a shared layer cache (`build --remote-cache`).

    `url` is `oci://HOST[:PORT]/REPO`. A local cache miss is looked up there; after a build, the
    layers it lacks are pushed unless `read_only`. `plain_http`, `insecure` and `ca_file` are the
    transport options of `publish --to`; credentials are found the same way. A registry failure
    never fails the build (a warning, then the layer is built locally).
    """

    url: str
    read_only: bool = False
    plain_http: bool = False
    insecure: bool = False
    ca_file: Path | None = None


@dataclass(frozen=True)
class Sources:
    """Where locking finds packages and building finds runtime interpreters.

    Relative paths are taken from the spec's folder. Runtime archive folders are searched in
    order: these, then `$VENVSTACKS_RUNTIME_ARCHIVES`, then `[tool.venvstacks] runtime-archives`.
    `runtime_fallback=None` keeps the spec's setting. `layer_cache=False` neither restores from
    nor stores into the layer cache (`venvstacks.cache`); `remote_cache` adds a registry behind
    it (it needs the layer cache).
    """

    use_index: bool = True
    local_wheels: tuple[Path, ...] = ()
    runtime_archives: tuple[Path, ...] = ()
    runtime_fallback: RuntimeFallback | None = None
    layer_cache: bool = True
    remote_cache: RemoteCache | None = None


@dataclass(frozen=True)
class LockOptions:
    """`Stack.lock`: lock the selected layers (and bring their lower layers' locks up to date).

    `include` holds fnmatch patterns on build names (`app-*`, `framework-web`); empty means every
    layer. The included layers' lower layers and the layers built on them are selected too.
    `reset` names layers to re-resolve from scratch; `clean` unpacks their runtimes afresh.
    """

    include: tuple[str, ...] = ()
    allow_missing: bool = False
    sources: Sources = Sources()
    reset: tuple[str, ...] = ()
    clean: bool = False
    jobs: int = 1


@dataclass(frozen=True)
class PublishOptions:
    """Where and how layers are archived (`Stack.publish`, and `BuildOptions.publish`).

    `output_dir` defaults to `[tool.venvstacks] output-dir`, else `_artifacts` beside the spec;
    `fmt` and `compression_level` default to the spec's settings, else tar.xz at its default level.
    `include` selects exactly the matching layers (their lower layers only with
    `with_dependencies`, the layers built on them only with `with_derived`).
    `dry_run` writes nothing and reports the metadata a real run would start from.
    """

    include: tuple[str, ...] = ()
    allow_missing: bool = False
    with_dependencies: bool = False
    with_derived: bool = False
    output_dir: Path | str | None = None
    fmt: ArchiveFormatName | None = None
    tag_outputs: bool = False
    compression_level: int | None = None
    force: bool = False
    dry_run: bool = False
    jobs: int = 1


@dataclass(frozen=True)
class ExportOptions:
    """`Stack.export`: ready-to-run folders instead of archives (`_export` beside the spec)."""

    include: tuple[str, ...] = ()
    allow_missing: bool = False
    with_dependencies: bool = False
    with_derived: bool = False
    output_dir: Path | str | None = None
    force: bool = False
    dry_run: bool = False
    jobs: int = 1


@dataclass(frozen=True)
class BuildOptions:
    """`Stack.build`: build environments (and optionally lock and publish) for this platform.

    `include` selects the matching layers and their lower layers (`with_derived` adds the layers
    built on them). A layer without a valid lock is an error unless `lock_if_needed` (or a
    `reset` naming it). `clean` rebuilds the included environments from scratch (and, with
    `publish`, rewrites their archives). `build=False` only locks (with `lock_if_needed`) and/or
    publishes. `publish` also archives the built layers; its own `include` is ignored: the build's
    selection is used, widened by its `with_dependencies`/`with_derived`.
    """

    include: tuple[str, ...] = ()
    allow_missing: bool = False
    with_derived: bool = False
    sources: Sources = Sources()
    reset: tuple[str, ...] = ()
    lock_if_needed: bool = False
    clean: bool = False
    build: bool = True
    publish: PublishOptions | None = None
    jobs: int = 1
