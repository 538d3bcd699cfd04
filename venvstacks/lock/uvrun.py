"""Running `uv lock` and `uv export` for one layer, and explaining a failure in the layer's terms."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from venvstacks.errors import LockError
from venvstacks.lock.packages import read_packages
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.proc import ProcessFailed, run_checked, tail, uv_command

__all__ = ["explain_conflicts", "lower_providers", "run_uv_lock"]


def _venvstacks_hints(uv_output: str) -> str:
    """uv's advice in venvstacks' terms: a layer's platforms set the environments it locks for."""
    return re.sub(
        r"hint: The resolution failed for an environment that is not the current one.*",
        "hint: the resolution failed for one of the layer's target platforms; "
        "set `platforms = [...]` on the layer to lock for fewer platforms",
        uv_output,
    )


def lower_providers(layout: BuildLayout, lower_envs: Sequence[EnvName]) -> dict[str, str]:
    """Which lower layer installs each package (`name==version` → env), first one wins."""
    providers: dict[str, str] = {}
    for env in lower_envs:
        for pkg in read_packages(layout.lock(env).pylock.read_text(encoding="utf-8")):
            if not pkg.shared:
                providers.setdefault(pkg.name, f"{pkg.requirement} from {env}")
    return providers


def explain_conflicts(output: str, providers: Mapping[str, str]) -> list[str]:
    """Lower-layer pins that uv's explanation mentions: the likely cause of a failed lock."""
    mentioned = {
        canonicalize_name(m) for m in re.findall(r"([A-Za-z0-9][\w.-]*)(?:==|<|>|!=|~=)", output)
    }
    return [providers[name] for name in sorted(mentioned) if name in providers]


def run_uv_lock(
    env: EnvName, project: Path, python: Path, reset: bool, providers: Mapping[str, str]
) -> str:
    """Resolve and export the layer's lock; return the raw pylock text from uv."""
    uv = uv_command()
    common = ["--project", str(project), "--python", str(python), "--no-color", "--quiet"]
    if reset:
        (project / "uv.lock").unlink(missing_ok=True)
    try:
        run_checked([*uv, "lock", *common, "--upgrade"], cwd=project)
        with tempfile.TemporaryDirectory(dir=project) as tmp:
            out = Path(tmp) / "pylock.toml"
            run_checked(
                [
                    *uv,
                    "export",
                    *common,
                    "--locked",
                    "--format",
                    "pylock.toml",
                    "--no-header",
                    "--no-emit-project",
                    "--no-annotate",
                    "-o",
                    str(out),
                ],
                cwd=project,
            )
            return out.read_text(encoding="utf-8")
    except ProcessFailed as exc:
        conflicts = explain_conflicts(exc.output, providers)
        cause = (
            f"its requirements conflict with lower layers ({'; '.join(conflicts)})"
            if conflicts
            else "uv could not resolve its requirements"
        )
        raise LockError(env, f"{cause}; uv says:\n{_venvstacks_hints(tail(exc.output))}") from None
