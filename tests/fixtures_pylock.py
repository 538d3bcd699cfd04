"""Synthetic pylock texts for the lock tests: `pkg` entries with https wheels, as uv spells them."""

from __future__ import annotations

import hashlib

from venvstacks.lock.packages import SHARED_MARKER

__all__ = ["TINY", "pkg", "pylock"]


def pkg(
    name: str,
    version: str = "1.0",
    marker: str | None = None,
    tags: tuple[str, ...] = ("any",),
    index: str | None = "https://pypi.org/simple",
) -> str:
    """One synthetic ``[[packages]]`` entry with https wheels, as uv spells them."""
    lines = ["", "[[packages]]", f'name = "{name}"', f'version = "{version}"']
    if marker is not None:
        lines.append(f'marker = "{marker}"')
    if index is not None:
        lines.append(f'index = "{index}"')
    wheels = []
    for tag in tags:
        filename = f"{name}-{version}-py3-none-{tag}.whl"
        digest = hashlib.sha256(filename.encode()).hexdigest()
        url = f"https://files.example/{filename}"
        wheels.append(f'{{ url = "{url}", hashes = {{ sha256 = "{digest}" }} }}')
    if wheels:
        lines.append(f"wheels = [{', '.join(wheels)}]")
    return "\n".join(lines) + "\n"


def pylock(*entries: str) -> str:
    return 'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = "==3.11.*"\n' + "".join(
        entries
    )


TINY = pylock(
    pkg("a", "1.0", marker="os_name == 'nt'"),
    pkg("b", "2.0", index=None, tags=("win_amd64", "any")),
    pkg("c", "3.0", marker=SHARED_MARKER, index=None, tags=()),
)
