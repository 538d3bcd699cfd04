"""The `archive:` operation: publish one layer as an archive plus metadata, reusing what is intact.

An archive is reused only when the layer's deployed content, the format, the compression level
and the lock fields are the same as when it was written *and* the file still has its recorded
size and sha256 (a stat key remembered with the hash avoids re-reading an untouched file). A
damaged or missing archive is written again. `archive_build` goes up only when the new bytes
differ from the previously published ones, so `--force` or a clean rebuild that reproduces the
same archive keeps it. Writing goes through `output.commit_archive` (crash-consistent).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from venvstacks.errors import PublishError
from venvstacks.plan.layers import StackPlan
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.plan.platforms import build_platform
from venvstacks.publish import output
from venvstacks.publish.crashpoints import crash_point
from venvstacks.publish.files import describe_os_error, partial_file
from venvstacks.publish.formats import archive_suffix
from venvstacks.publish.layers import (
    PublishOptions,
    archive_name,
    layer_metadata,
    prepare_deployed_copy,
    tree_fingerprint,
)

__all__ = [
    "archive_layer",
    "output_intact",
    "planned_manifest",
    "record_path",
    "sweep_publish_staging",
]

_log = logging.getLogger(__name__)
ARCHIVE_ONLY_KEYS = ("archive_size", "archive_hashes")
_LOCK_FIELDS = ("lock_version", "locked_at", "requirements_hash", "install_target")


def record_path(layout: BuildLayout, operation: str, env: EnvName) -> Path:
    """Where the build dir remembers what it last published for a layer (per destination)."""
    return layout.state_dir / "publish-records" / f"{operation}.{env}.json"


@dataclass
class _Record:
    """The build dir's record of one layer's archive in one destination."""

    path: Path
    outputs: dict[str, Any]
    destination: str

    @classmethod
    def load(cls, path: Path, options: PublishOptions, env: EnvName) -> _Record:
        data = output.read_json(path) or {}
        outputs = data.get("outputs")
        return cls(
            path,
            dict(outputs) if isinstance(outputs, dict) else {},
            str(options.metadata_path(env)),
        )

    @property
    def entry(self) -> dict[str, Any] | None:
        value = self.outputs.get(self.destination)
        return value if isinstance(value, dict) else None

    def save(self, entry: Mapping[str, Any]) -> None:
        self.outputs[self.destination] = dict(entry)
        output.write_json(self.path, {"outputs": self.outputs})


def _archive_sha(meta: Mapping[str, Any] | None) -> str | None:
    hashes = meta.get("archive_hashes") if meta else None
    value = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    return value if isinstance(value, str) else None


def _build_number(meta: Mapping[str, Any] | None) -> int | None:
    value = meta.get("archive_build") if meta else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def output_intact(options: PublishOptions, env: EnvName, record: Path) -> bool:
    """doit up-to-date check: the layer's metadata names its final archive, whole and unchanged
    (for an export, its folder). A damaged, missing or half-switched archive makes the task run."""
    meta = output.read_json(options.metadata_path(env))
    if meta is None:
        return False
    if options.export:
        return (options.output_dir / str(meta.get("install_target", ""))).is_dir()
    build = _build_number(meta)
    if build is None or "install_target" not in meta:
        return False
    name = meta.get("archive_name")
    if name != archive_name(meta, build, options):
        return False
    entry = _Record.load(record, options, env).entry or {}
    known = entry.get("verified")
    path = options.output_dir / str(name)
    known_key = known if isinstance(known, list) else None
    return (
        output.archive_intact(path, meta.get("archive_size"), _archive_sha(meta), known_key)
        is not None
    )


def _same_content(
    previous: Mapping[str, Any] | None,
    entry: Mapping[str, Any] | None,
    fingerprint: str,
    options: PublishOptions,
    meta: Mapping[str, Any],
) -> bool:
    """True when the previously published archive holds exactly what would be written now."""
    if previous is None or entry is None:
        return False
    if entry.get("fingerprint") != fingerprint or entry.get("format") != str(options.fmt):
        return False
    if entry.get("level") != options.level or entry.get("sha256") != _archive_sha(previous):
        return False
    return all(previous.get(key) == meta[key] for key in _LOCK_FIELDS)


def _timestamp(locked_at: str) -> int:
    return int(datetime.fromisoformat(locked_at).timestamp())


def sweep_publish_staging(layout: BuildLayout) -> None:
    """Remove staging folders that other (dead) processes left (call holding the build-dir lock)."""
    root = layout.state_dir / "publish"
    if not root.is_dir():
        return
    mine = f"{os.getpid()}."
    for path in root.iterdir():
        if not path.name.startswith(mine):
            _log.info("removing %s, left by an interrupted publish", path)
            shutil.rmtree(path, ignore_errors=True)


def archive_layer(
    plan: StackPlan, env: EnvName, layout: BuildLayout, options: PublishOptions, record: Path
) -> dict[str, Any]:
    """Publish one layer as an archive plus `env_metadata/<layer>.json`; returns the metadata."""
    try:
        return _archive_layer(plan, env, layout, options, record)
    except OSError as exc:
        where = "" if exc.filename else f" into {options.output_dir}"
        raise PublishError(env, f"cannot publish{where}: {describe_os_error(exc)}") from exc


def _staging(
    layout: BuildLayout, env: EnvName, *, sweep: bool = True
) -> tempfile.TemporaryDirectory[str]:
    """A staging folder for one layer's deployed copy; ``sweep`` (under the build-dir lock only)
    first removes those that dead processes left."""
    root = layout.state_dir / "publish"
    root.mkdir(parents=True, exist_ok=True)
    if sweep:
        sweep_publish_staging(layout)
    return tempfile.TemporaryDirectory(prefix=f"{os.getpid()}.{env}.", dir=root)


def _archive_layer(
    plan: StackPlan, env: EnvName, layout: BuildLayout, options: PublishOptions, path: Path
) -> dict[str, Any]:
    meta = layer_metadata(plan, layout, env)
    previous = output.read_json(options.metadata_path(env))
    record = _Record.load(path, options, env)
    meta_dir = options.manifest_path().parent
    options.output_dir.mkdir(parents=True, exist_ok=True)
    output.sweep_output(options.output_dir, meta_dir)
    target = str(meta["install_target"])
    suffix = archive_suffix(options.fmt)
    layer = output.LayerOutput(
        plan, env, options.output_dir, options.metadata_path, options.manifest_path()
    )
    with _staging(layout, env) as tmp:
        staged = prepare_deployed_copy(plan, layout, env, Path(tmp) / target)
        fingerprint = tree_fingerprint(staged)
        entry = record.entry
        reused = _reuse(previous, entry, fingerprint, options, meta)
        if reused is not None:
            result, current = reused
            final = options.output_dir / str(result["archive_name"])
            sha = str(_archive_sha(result))
            if current != final:  # finish a switch a killed run left half-done
                output.commit_archive(layer, current, sha, final, suffix, result)
            else:
                output.publish_metadata(layer, result)
            _log.info("%s: archive unchanged", env)
        else:
            from venvstacks.publish.archive import file_info, write_archive_to

            with partial_file(options.output_dir / f"{target}{suffix}") as (partial, sink):
                crash_point("archive-started")
                try:
                    write_archive_to(
                        staged, target, sink, fmt=options.fmt,
                        clamp_mtime=_timestamp(str(meta["locked_at"])), level=options.level,
                    )  # fmt: skip
                except OSError as exc:
                    raise PublishError(
                        env, f"cannot write archive {partial}: {describe_os_error(exc)}"
                    ) from exc
                partial.chmod(0o644)
                info = file_info(partial)
                crash_point("archive-written")
                result = _new_result(meta, previous, info.size, info.sha256, options)
                final = options.output_dir / str(result["archive_name"])
                output.commit_archive(layer, partial, info.sha256, final, suffix, result)
            _log.info("%s: wrote %s (%d bytes)", env, final.name, info.size)
    sha = str(_archive_sha(result))
    record.save(
        {
            "fingerprint": fingerprint,
            "format": str(options.fmt),
            "level": options.level,
            "archive": final.name,
            "sha256": sha,
            "verified": [*output.stat_key(final), sha],
        }
    )
    return result


def _reuse(
    previous: Mapping[str, Any] | None,
    entry: Mapping[str, Any] | None,
    fingerprint: str,
    options: PublishOptions,
    meta: Mapping[str, Any],
) -> tuple[dict[str, Any], Path] | None:
    """The refreshed metadata and the file holding the archive, when the old archive is reusable."""
    if (
        options.force
        or previous is None
        or not _same_content(previous, entry, fingerprint, options, meta)
    ):
        return None
    build = _build_number(previous)
    current = options.output_dir / str(previous.get("archive_name", ""))
    known = entry.get("verified") if entry else None
    intact = output.archive_intact(
        current, previous.get("archive_size"), _archive_sha(previous),
        known if isinstance(known, list) else None,
    )  # fmt: skip
    if build is None or intact is None or "/" in current.name:
        return None
    result = {
        **meta,
        **{key: previous[key] for key in ARCHIVE_ONLY_KEYS},
        "archive_build": build,
        "archive_name": archive_name(meta, build, options),
        "target_platform": str(build_platform()),
    }
    return result, current


def _new_result(
    meta: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    size: int,
    sha256: str,
    options: PublishOptions,
) -> dict[str, Any]:
    """Metadata for freshly written bytes: the same build when they equal the published ones."""
    build = _planned_build(
        meta,
        previous,
        sha256 == _archive_sha(previous) and size == (previous or {}).get("archive_size"),
    )
    return {
        **meta,
        "archive_build": build,
        "archive_name": archive_name(meta, build, options),
        "target_platform": str(build_platform()),
        "archive_size": size,
        "archive_hashes": {"sha256": sha256},
    }


def _planned_build(
    meta: Mapping[str, Any], previous: Mapping[str, Any] | None, same_bytes: bool
) -> int:
    last = _build_number(previous)
    if previous is None or last is None or previous.get("lock_version") != meta["lock_version"]:
        return 1
    return last if same_bytes else last + 1


# ---------------------------------------------------------------------------------------------
# Dry run: what a real publish would write
# ---------------------------------------------------------------------------------------------


def _planned_layer(
    plan: StackPlan, layout: BuildLayout, env: EnvName, options: PublishOptions
) -> dict[str, Any]:
    meta = layer_metadata(plan, layout, env)
    if options.export:
        return meta
    previous = output.read_json(options.metadata_path(env))
    last = _build_number(previous)
    if previous is None or last is None or previous.get("lock_version") != meta["lock_version"]:
        build = 1
    else:
        build = _dry_run_build(plan, layout, env, options, meta, previous, last)
    return {
        **meta,
        "archive_build": build,
        "archive_name": archive_name(meta, build, options),
        "target_platform": str(build_platform()),
    }


def _dry_run_build(
    plan: StackPlan,
    layout: BuildLayout,
    env: EnvName,
    options: PublishOptions,
    meta: Mapping[str, Any],
    previous: Mapping[str, Any],
    last: int,
) -> int:
    """The archive_build a real publish would give: the same one when the bytes would be equal."""
    entry = _Record.load(record_path(layout, "archive", env), options, env).entry
    target = str(meta["install_target"])
    with _staging(layout, env, sweep=False) as tmp:
        staged = prepare_deployed_copy(plan, layout, env, Path(tmp) / target)
        fingerprint = tree_fingerprint(staged)
        if _same_content(previous, entry, fingerprint, options, meta):
            return last
        if entry is not None and entry.get("sha256") == _archive_sha(previous):
            return last + 1  # the record describes the published archive: the content differs
        # No record of how the published archive was made: write one aside and compare.
        from venvstacks.publish.archive import file_info, write_archive_to

        with partial_file(Path(tmp) / f"{target}.dry-run") as (partial, sink):
            write_archive_to(
                staged, target, sink, fmt=options.fmt,
                clamp_mtime=_timestamp(str(meta["locked_at"])), level=options.level,
            )  # fmt: skip
            info = file_info(partial)
    same = info.sha256 == _archive_sha(previous) and info.size == previous.get("archive_size")
    return last if same else last + 1


def planned_manifest(
    plan: StackPlan, layout: BuildLayout, envs: Sequence[EnvName], options: PublishOptions
) -> dict[str, Any]:
    """The stack manifest a real publish of ``envs`` would write, without `archive_size` and
    `archive_hashes` (which only writing the archives tells). Writes nothing in the output dir."""
    planned = {env: _planned_layer(plan, layout, env, options) for env in envs}
    current = output.render_manifest(
        plan, options.output_dir, options.metadata_path, options.export
    )["layers"]
    by_env = {str(meta.get("layer_name")): meta for entries in current.values() for meta in entries}
    layers: dict[str, list[Any]] = {category: [] for category in output.CATEGORIES}
    for layer in plan.enabled:
        meta = planned.get(layer.env_name) or by_env.get(layer.env_name)
        if meta is not None:
            stripped = {k: v for k, v in meta.items() if k not in ARCHIVE_ONLY_KEYS}
            layers[layer.kind.category].append(stripped)
    return {"layers": layers}
