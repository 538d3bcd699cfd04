"""Running `uv lock` and `uv export` for one layer, and explaining a failure in the layer's terms."""

from __future__ import annotations

import difflib
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from venvstacks.errors import LockError
from venvstacks.lock.packages import read_packages
from venvstacks.lock.project import environment_markers
from venvstacks.pep508 import canonical_name
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.proc import ProcessFailed, run_checked, tail, uv_command

__all__ = [
    "LockFailure",
    "describe_failure",
    "explain_conflicts",
    "failing_platform",
    "lower_providers",
    "run_uv_lock",
    "settings_rejected",
]


_UV_HINT = re.compile(
    r"\n*hint: The resolution failed for an environment that is not the current one.*"
)
_SPLIT = re.compile(r"resolving dependencies for split \(markers: (?P<markers>[^)\n]*)\)")
_PLATFORM_CAUSE = re.compile(r"-compatible wheels|\{[^}]*(?:sys_platform|platform_|os_name)[^}]*\}")
_TWO_REQUIREMENTS = re.compile(
    r"your project depends on (?P<a>[^\s,]+(?:\{[^}]*\})?) and (?P<b>[^\s,]+(?:\{[^}]*\})?),"
    r" we can conclude"
)
_SETTINGS_REJECTED = re.compile(
    r"warning: Failed to parse `pyproject.toml` during settings discovery:(?P<detail>.*?)(?:\n\S|\Z)",
    re.DOTALL,
)


# uv's wording when it cannot fetch from an index (connection refused, DNS, timeouts); the URL
# is cut at the index's simple/ page so the message names the index, not one package.
_UNREACHABLE = re.compile(
    r"Failed to fetch: `?(?P<url>\S+?/)(?:[^/\s`]+/)?`?\s.*?"
    r"(?:tcp connect error|dns error|Connection refused|timed out|Network is unreachable)"
)


@dataclass(frozen=True)
class LockFailure:
    """What a failed `uv lock` says, in the layer's terms."""

    cause: str
    hint: str | None


def failing_platform(output: str, platforms: Sequence[TargetPlatform]) -> TargetPlatform | None:
    """The target platform of the split uv failed on, if its markers are one platform's."""
    match = _SPLIT.search(output)
    if match is None:
        return None
    failed = _normalised(match["markers"])
    for platform, marker in zip(platforms, environment_markers(platforms), strict=True):
        if failed is not None and failed == _normalised(marker):
            return platform
    return None


def _normalised(marker: str) -> frozenset[str] | None:
    from packaging.markers import InvalidMarker, Marker

    try:
        text = str(Marker(marker)).replace('"', "'")
    except InvalidMarker:
        return None
    return frozenset(part.strip() for part in text.split(" and "))


def describe_failure(
    output: str, platforms: Sequence[TargetPlatform], providers: Mapping[str, str]
) -> LockFailure:
    """The cause of a failed lock, and the `platforms` hint only when it fits.

    The hint to set ``platforms = [...]`` is given only when the failure is specific to a
    target platform (a package without wheels for it, or a requirement conditional on it) and
    the layer has other platforms to keep. A conflict between two of the layer's requirements
    names them; pins from lower layers that uv mentions are named with their layer.
    """
    conflicts = explain_conflicts(output, providers)
    flat = " ".join(output.split())  # uv wraps its long lines at the terminal's width
    pair = _TWO_REQUIREMENTS.search(flat)
    unreachable = _UNREACHABLE.search(flat)
    if unreachable is not None:
        return LockFailure(
            f"the package index could not be reached ({unreachable['url']})",
            "hint: check the network, or lock offline with --local-wheels DIR --no-index",
        )
    if conflicts:
        cause = f"its requirements conflict with lower layers ({'; '.join(conflicts)})"
    elif pair is not None:
        cause = f"two of its requirements conflict: {pair['a']!r} and {pair['b']!r}"
    else:
        cause = "uv could not resolve its requirements"
    platform = failing_platform(output, platforms) or failing_platform(flat, platforms)
    hint = None
    if platform is not None and len(platforms) > 1 and _PLATFORM_CAUSE.search(flat):
        others = [str(p) for p in platforms if p != platform]
        hint = (
            f"hint: the resolution failed for {platform} only; to leave it out, set "
            f"`platforms = {others!r}` on the layer".replace("'", '"')
        )
    return LockFailure(cause, hint)


def settings_rejected(output: str) -> str | None:
    """uv's complaint when it ignored the project's `[tool.uv]` table (a typo, a wrong type)."""
    match = _SETTINGS_REJECTED.search(output)
    if match is None:
        return None
    detail = match["detail"]
    unknown = re.search(r"unknown field `([^`]+)`, expected one of (.*)", detail)
    if unknown is not None:
        known = re.findall(r"`([^`]+)`", unknown[2])
        close = difflib.get_close_matches(unknown[1], known, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {unknown[1]!r}{suggestion}"
    lines = [line.strip() for line in detail.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("|", "^")))


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
        canonical_name(m) for m in re.findall(r"([A-Za-z0-9][\w.-]*)(?:==|<|>|!=|~=)", output)
    }
    return [providers[name] for name in sorted(mentioned) if name in providers]


def run_uv_lock(
    env: EnvName,
    project: Path,
    python: Path,
    reset: bool,
    providers: Mapping[str, str],
    platforms: Sequence[TargetPlatform] = (),
) -> str:
    """Resolve and export the layer's lock; return the raw pylock text from uv.

    uv ignores a `[tool.uv]` table it cannot parse (with only a warning), which would drop
    every setting, venvstacks' own included: that is an error here.
    """
    uv = uv_command()
    common = ["--project", str(project), "--python", str(python), "--no-color"]
    if reset:
        (project / "uv.lock").unlink(missing_ok=True)
    try:
        output = run_checked([*uv, "lock", *common, "--upgrade"], cwd=project)
        rejected = settings_rejected(output)
        if rejected:
            raise LockError(env, f"uv rejected the [tool.uv] settings: {rejected}")
        with tempfile.TemporaryDirectory(dir=project) as tmp:
            out = Path(tmp) / "pylock.toml"
            run_checked(
                [
                    *uv,
                    "export",
                    *common,
                    "--quiet",
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
        rejected = settings_rejected(exc.output)
        if rejected:
            raise LockError(env, f"uv rejected the [tool.uv] settings: {rejected}") from None
        failure = describe_failure(exc.output, platforms, providers)
        said = _UV_HINT.sub("", tail(exc.output)).rstrip()
        hint = f"\n{failure.hint}" if failure.hint else ""
        raise LockError(env, f"{failure.cause}; uv says:\n{said}{hint}") from None
