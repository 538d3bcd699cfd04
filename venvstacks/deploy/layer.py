"""Deploying one layer: extracting it, then compiling, post-installing and recording it.

`extract_layer` puts a layer's folder in place from its archive (read once, see `extract` and
`stream`); `finish_layer` byte-compiles its ``lib`` on every CPU with its runtime, notes its file
manifest, runs its ``postinstall.py`` and writes its record, which is what makes it deployed.
Each step is reported as ``<step>:<install target>`` (`STEPS`) to a progress callback.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from venvstacks.deploy.extract import safe_extract
from venvstacks.deploy.published import PublishedLayer
from venvstacks.deploy.verify import (
    LAYER_CONFIG,
    file_manifest,
    file_stats,
    first_changed,
    layer_site_dir,
)
from venvstacks.errors import DeployError
from venvstacks.publish.crashpoints import crash_point
from venvstacks.publish.files import describe_os_error
from venvstacks.publish.output import write_json

__all__ = [
    "STATE_DIR",
    "STEPS",
    "Report",
    "deployed_state",
    "extract_layer",
    "finish_layer",
    "is_current",
    "layer_record",
    "quiet",
    "refuse_foreign",
    "step",
    "step_names",
]

STATE_DIR = ".venvstacks-deploy"


STEPS = ("verify", "extract", "compile", "postinstall")
"""The steps of deploying a layer, as progress shows them (`<step>:<install target>`)."""

Report = Callable[[str, str, float | None], None]
"""The engine's progress callback: (event, task or step name, seconds)."""


def quiet(event: str, name: str, seconds: float | None) -> None:
    pass


@contextmanager
def step(report: Report, which: str, name: str) -> Iterator[None]:
    """Report a step's start, then its end (``done`` or ``fail``) with its duration."""
    task = f"{which}:{name}"
    report("start", task, None)
    started = time.monotonic()
    try:
        yield
    except BaseException:
        report("fail", task, time.monotonic() - started)
        raise
    report("done", task, time.monotonic() - started)


def step_names(layers: Sequence[PublishedLayer]) -> list[str]:
    """Every step of deploying ``layers``, for the progress display."""
    return [f"{name}:{layer.target}" for layer in layers for name in STEPS]


def extract_layer(
    artifacts: Path, target_dir: Path, layer_meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Extract one layer into place, reading its archive once (hashed as it is extracted).

    The layer is not recorded as deployed until `finish_layer` ran, so a kill between the two
    leaves a layer that the next deploy extracts again.
    """
    name = str(layer_meta["install_target"])
    archive = artifacts / str(layer_meta["archive_name"])
    expected = str(layer_meta["archive_hashes"]["sha256"]).lower().removeprefix("sha256:")
    try:
        refuse_foreign(target_dir, name)
        # From here on, the record no longer describes the folder: the layer is not deployed.
        layer_record(target_dir, name).unlink(missing_ok=True)
        crash_point("deploy-extracting")
        safe_extract(
            archive,
            target_dir / name,
            expected_root=name,
            allow_peer_links=True,
            replace=True,
            size=int(layer_meta["archive_size"]),
            sha256=expected,
        )
    except OSError as exc:
        raise DeployError(f"layer {name}: cannot deploy: {describe_os_error(exc)}") from exc
    crash_point("deploy-extracted")
    return {"install_target": name, "sha256": expected}


def finish_layer(
    target_dir: Path,
    layer_meta: Mapping[str, Any],
    runtime: str,
    report: Report = quiet,
) -> dict[str, Any]:
    """Compile the extracted layer's bytecode, post-install it and record it as deployed."""
    name = str(layer_meta["install_target"])
    archive = str(layer_meta["archive_name"])
    expected = str(layer_meta["archive_hashes"]["sha256"]).lower().removeprefix("sha256:")
    layer_dir = target_dir / name
    try:
        with step(report, "compile", name):
            _compile(target_dir, name, runtime)
        manifest = file_manifest(layer_dir, layer_site_dir(layer_dir))
        with step(report, "postinstall", name):
            _postinstall(target_dir, name, runtime)
        record = {
            "install_target": name,
            "archive": Path(archive).name,
            "sha256": expected,
            "files": manifest,
            "stats": file_stats(layer_dir, manifest),
        }
        write_json(layer_record(target_dir, name), record)
    except OSError as exc:
        raise DeployError(f"layer {name}: cannot deploy: {describe_os_error(exc)}") from exc
    return {"install_target": name, "sha256": expected}


def _compile(target_dir: Path, name: str, runtime: str) -> None:
    """Byte-compile the layer's ``lib`` on every CPU with its runtime (best effort, as
    post-install's own pass, which then finds everything up to date)."""
    lib = target_dir / name / "lib"
    if not lib.is_dir():
        return
    python = target_dir / runtime / "bin" / "python"
    subprocess.run(
        [str(python), "-X", "utf8", "-I", "-m", "compileall", "-q", "-j", "0", str(lib)],
        capture_output=True,
        check=False,
    )


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


def layer_record(target_dir: Path, name: str) -> Path:
    return target_dir / STATE_DIR / "layers" / f"{name}.json"


def refuse_foreign(target_dir: Path, name: str) -> None:
    """Never replace a folder (or file) that is not a venvstacks layer: it may be user data."""
    path = target_dir / name
    if not (path.exists() or path.is_symlink()):
        return
    ours = layer_record(target_dir, name).exists() or _layer_present(path)
    if path.is_dir() and not path.is_symlink() and ours:
        return
    raise DeployError(
        f"{path} already exists and is not a deployed venvstacks layer; refusing to replace it"
        " (move it away or deploy into another folder)"
    )


def _record(target_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        recorded = json.loads(layer_record(target_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _changed_file(recorded: dict[str, Any], layer_dir: Path) -> str | None:
    stats = recorded.get("stats")  # records written before stats were kept tell nothing
    return first_changed(layer_dir, stats) if isinstance(stats, dict) else None


def deployed_state(target_dir: Path, name: str, sha256: str) -> tuple[bool, str | None]:
    """Whether the layer is current here, and the file that changed since it was deployed.

    Current: deployed here from an archive with this sha256, present, and none of its files
    changed since (by ``lstat``: size, mtime or mode; or gone). The changed file is named when
    the layer was deployed from this archive but a file differs (else None). One read of the
    record and one ``lstat`` of each recorded file: the one rule for "nothing to do".
    """
    recorded = _record(target_dir, name)
    if recorded is None or recorded.get("sha256") != sha256:
        return False, None
    layer_dir = target_dir / name
    changed = _changed_file(recorded, layer_dir)
    return changed is None and _layer_present(layer_dir), changed


def is_current(target_dir: Path, name: str, sha256: str) -> bool:
    """True when the layer is deployed here from this archive, unchanged (`deployed_state`)."""
    return deployed_state(target_dir, name, sha256)[0]
