"""The throw-away uv project that locks one layer: its `pyproject.toml` and uv settings.

`LockOptions` are the settings that change how (not what) layers are locked; `uv_project_settings`
builds the layer's ``[tool.uv]`` table (indexes, sources, environments for its target platforms,
``no-build``); `write_resolve_project` writes the project; `write_if_changed` is the atomic,
umask-respecting writer every lock file goes through.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from venvstacks.paths import canonical_dir
from venvstacks.pep508 import canonical_name
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.spec.indexes import layer_index_list, layer_sources

__all__ = [
    "LockOptions",
    "environment_markers",
    "find_links_folders",
    "project_name",
    "uv_project_settings",
    "write_if_changed",
    "write_resolve_project",
]


@dataclass(frozen=True)
class LockOptions:
    """Settings that change how (not what) layers are locked."""

    use_index: bool = True
    local_wheels: tuple[Path, ...] = ()
    reset: frozenset[str] = frozenset()
    exclude_newer: datetime | None = None

    def __post_init__(self) -> None:
        # One spelling per wheel folder: locks name local wheels relative to themselves.
        canonical = tuple(dict.fromkeys(canonical_dir(p) for p in self.local_wheels))
        object.__setattr__(self, "local_wheels", canonical)


def environment_markers(platforms: Sequence[TargetPlatform]) -> list[str]:
    markers = {
        "linux": "sys_platform == 'linux'",
        "macosx": "sys_platform == 'darwin'",
        "win": "sys_platform == 'win32'",
    }
    machines = {
        "x86_64": "platform_machine == 'x86_64'",
        "aarch64": "platform_machine == 'aarch64'",
        "arm64": "platform_machine == 'arm64'",
        "amd64": "platform_machine == 'AMD64'",
    }
    windows_machines = {
        "amd64": "platform_machine == 'AMD64'",
        "arm64": "platform_machine == 'ARM64'",
    }
    return [
        f"{markers[p.os_family]} and "
        f"{(windows_machines if p.os_family == 'win' else machines)[p.machine]}"
        for p in platforms
    ]


def uv_project_settings(plan: StackPlan, layer: LayerPlan, options: LockOptions) -> dict[str, Any]:
    config = plan.spec.uv
    settings: dict[str, Any] = {k: v for k, v in config.settings.items()}
    settings.pop("exclude-newer", None)
    if options.exclude_newer is not None:
        settings["exclude-newer"] = options.exclude_newer.isoformat()
    elif config.exclude_newer is not None:
        settings["exclude-newer"] = config.exclude_newer.isoformat()
    settings["no-build"] = True
    settings.setdefault("environments", environment_markers(layer.platforms))
    index = layer_index_list(config, layer.package_indexes, layer.spec.priority_indexes)
    if index:
        settings["index"] = index
    sources = layer_sources(config, layer.package_indexes)
    if sources:
        settings["sources"] = sources
    return settings


def _find_links(plan: StackPlan, links: object) -> list[Path | None]:
    """Each `[tool.uv] find-links` entry as a local folder (relative ones from the spec's
    folder), or None for a URL."""
    if not isinstance(links, list):
        return []
    folders: list[Path | None] = []
    for link in links:
        text = str(link)
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", text):
            folders.append(None)
        else:
            folders.append(canonical_dir(plan.spec.spec_dir / Path(text).expanduser()))
    return folders


def find_links_folders(plan: StackPlan) -> list[Path]:
    """The local folders of the spec's `[tool.uv] find-links` (where locked wheels come from,
    besides --local-wheels)."""
    links = plan.spec.uv.settings.get("find-links", [])
    return [folder for folder in _find_links(plan, links) if folder is not None]


def write_resolve_project(
    plan: StackPlan,
    layer: LayerPlan,
    layout: BuildLayout,
    options: LockOptions,
    constraints: Sequence[str],
) -> Path:
    """The throw-away uv project whose lock becomes the layer's lock."""
    folder = layout.resolve_dir(layer.env_name)
    folder.mkdir(parents=True, exist_ok=True)
    settings = uv_project_settings(plan, layer, options)
    if constraints:
        own = list(settings.get("constraint-dependencies", []))
        settings["constraint-dependencies"] = [*own, *constraints]
    if not options.use_index:
        settings["no-index"] = True
    if "find-links" in settings:  # uv would read relative folders from this throw-away project
        settings["find-links"] = [
            str(folder) if folder is not None else link
            for link, folder in zip(
                settings["find-links"], _find_links(plan, settings["find-links"]), strict=True
            )
        ]
    if options.local_wheels:
        links = [str(p) for p in options.local_wheels]
        settings["find-links"] = [*settings.get("find-links", []), *links]
    document = {
        "project": {
            "name": project_name(layer.env_name),
            "version": "0",
            "dependencies": sorted(layer.spec.requirements),
            "requires-python": f"=={layer.py_major_minor}.*",
        },
        "tool": {"uv": settings},
    }
    import tomlkit  # only when a layer is locked (a costly import)

    write_if_changed(folder / "pyproject.toml", tomlkit.dumps(document))
    return folder


def project_name(env: str) -> str:
    """The resolve project's name: valid for uv, and never a distribution the layer requires.

    (A runtime named like one of its requirements would otherwise depend on itself.)
    """
    body = canonical_name(re.sub(r"[^a-zA-Z0-9._-]", "-", env)).strip("-")
    return f"venvstacks-layer-{body}" if body else "venvstacks-layer"


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace `path` with `text` unless it already holds exactly that.

    Modes are those a plain ``open(path, "w")`` gives: a new file gets ``0o666`` less the umask
    (lock files are meant to be committed and shared), a replaced file keeps its mode.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        with contextlib.suppress(FileNotFoundError):
            tmp.chmod(stat.S_IMODE(path.stat().st_mode))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
