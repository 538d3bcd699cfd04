"""Staging a published layer as it will be deployed at `<prefix>/<install target>` in an image.

The archive is extracted (with the deploy checks) into `<staging root>/<prefix>/<target>`, then
the layer's post-install step is applied *for the prefix*: `pyvenv.cfg` and `sitecustomize.py`
are rendered by the shipped postinstall module with the paths the container will see, and the
bytecode is compiled by the layer's own runtime with the container paths recorded in it. Every
mtime is clamped to the lock time first, so the timestamp-checked `.pyc` files stay valid in the
image and a container start rewrites nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

from venvstacks.deploy.extract import safe_extract
from venvstacks.envs._injected import postinstall
from venvstacks.image.layout import ImageError

__all__ = ["clamp_mtimes", "compile_layer", "configure_for_prefix", "stage_layer", "staged_dir"]

_COMPILE = """\
import compileall, os, sys
layer, deployed = sys.argv[1], sys.argv[2]
for name in ("lib", "Lib"):
    folder = os.path.join(layer, name)
    if os.path.isdir(folder):
        compileall.compile_dir(folder, ddir=deployed + "/" + name, quiet=1, force=True, workers=0)
        break
"""


def staged_dir(staging_root: Path, prefix: PurePosixPath, target: str) -> Path:
    """Where the layer deployed at `prefix/target` sits under the staging root."""
    return staging_root / prefix.relative_to("/") / target


def stage_layer(archive: Path, staging_root: Path, prefix: PurePosixPath, target: str) -> Path:
    """Extract a published layer archive to its staged place (checked like `deploy` does)."""
    dest = staged_dir(staging_root, prefix, target)
    safe_extract(archive, dest, expected_root=target, allow_peer_links=True)
    return dest


def configure_for_prefix(staging_root: Path, prefix: PurePosixPath, target: str) -> list[Path]:
    """Write the layer's post-install files as deploying it at `prefix/target` would."""
    staged = staged_dir(staging_root, prefix, target)
    deployed = (prefix / target).as_posix()
    try:
        config = postinstall.load_layer_config(str(staged))
        layer = postinstall.resolve_layer(deployed, config)
    except postinstall.LayerConfigError as exc:
        raise ImageError(f"{target}: {exc}") from None

    def in_staging(path: str) -> str:
        return str(staging_root / PurePosixPath(path).relative_to("/"))

    # Render with the container's paths; write into the staging tree.
    staged_layer = layer._replace(layer_dir=str(staged), site_dir=in_staging(layer.site_dir))
    written = postinstall.configure_layer(staged_layer, windows=False)
    return [Path(path) for path in written]


def clamp_mtimes(folder: Path, clamp: int) -> None:
    """Set every mtime later than `clamp` under `folder` to `clamp` (symlinks themselves)."""
    for current, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(current, name)
            status = path.lstat()
            if status.st_mtime > clamp:
                os.utime(path, (clamp, clamp), follow_symlinks=False)
    if folder.stat().st_mtime > clamp:
        os.utime(folder, (clamp, clamp))


def compile_layer(python: Path, staged: Path, deployed: PurePosixPath) -> None:
    """Precompile the staged layer's `lib` with the runtime's python, for the deployed paths.

    `-B` keeps the interpreter from caching its own imports with staging paths in them, and
    the hash seed is fixed so that the bytecode is the same on every run.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.pop("SOURCE_DATE_EPOCH", None)  # it would switch compileall to hash-checked pycs
    env["PYTHONHASHSEED"] = "0"
    result = subprocess.run(
        # Not -I (it ignores PYTHONHASHSEED): -s and a cleaned environment instead, run from the
        # prefix folder, whose entries (install targets) are not importable names.
        [str(python), "-B", "-s", "-X", "utf8", "-c", _COMPILE, str(staged), deployed.as_posix()],
        cwd=staged.parent,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImageError(f"{deployed.name}: compiling bytecode failed: {detail[0]}")
