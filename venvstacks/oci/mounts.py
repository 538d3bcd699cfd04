"""A small local record of which repositories of a registry hold which blobs, so a push can
mount a blob from another repository instead of uploading it. Only a hint: a stale or lost
record costs an upload, never correctness (the registry answers 202 and the upload proceeds).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from venvstacks.paths import default_cache_dir

__all__ = ["MountRecord"]

_MAX_DIGESTS = 4096  # per registry; the oldest are forgotten first
_MAX_CANDIDATES = 3


class MountRecord:
    """`{registry: {digest: [repository, ...]}}` in `<cache>/oci/blobs.json`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_dir() / "oci" / "blobs.json"

    def _load(self) -> dict[str, dict[str, list[str]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def candidates(self, registry: str, digest: str, repository: str) -> list[str]:
        """Other repositories of `registry` that held `digest`, most recent first."""
        repos = self._load().get(registry, {}).get(digest, [])
        return [r for r in reversed(repos) if isinstance(r, str) and r != repository][
            :_MAX_CANDIDATES
        ]

    def add(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        data = self._load()
        known = data.setdefault(registry, {})
        for digest in digests:
            repos = [r for r in known.pop(digest, []) if r != repository]
            known[digest] = [*repos[-7:], repository]
        while len(known) > _MAX_DIGESTS:
            del known[next(iter(known))]
        self._save(data)

    def _save(self, data: Mapping[str, object]) -> None:
        """Write atomically; a record that cannot be written is skipped (it is only a hint)."""
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".blobs.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, sort_keys=False)
                Path(name).replace(self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    Path(name).unlink()
