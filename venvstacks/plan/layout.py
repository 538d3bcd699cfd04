"""Every path venvstacks reads or writes for a stack, in one place. Pure path arithmetic."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from venvstacks.paths import canonical_dir, canonical_file
from venvstacks.plan.names import EnvName, lock_file_stem

__all__ = ["BuildLayout", "LockPaths", "canonical_dir", "canonical_file"]

STATE_DIR_NAME = ".venvstacks"
METADATA_DIR = "__venvstacks__"
METADATA_MANIFEST = "venvstacks.json"
METADATA_ENV_DIR = "env_metadata"


@dataclass(frozen=True)
class LockPaths:
    """The files of one layer's lock under `requirements/<env>/`."""

    folder: Path
    requirements_in: Path
    pylock: Path
    metadata: Path
    summary: Path

    @classmethod
    def for_env(cls, requirements_dir: Path, env: EnvName) -> LockPaths:
        folder = requirements_dir / env
        stem = lock_file_stem(env)
        return cls(
            folder=folder,
            requirements_in=folder / f"requirements-{stem}.in",
            pylock=folder / f"pylock.{stem}.toml",
            metadata=folder / f"pylock.{stem}.meta.json",
            summary=folder / f"packages-{env}.txt",
        )

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.requirements_in, self.pylock, self.metadata, self.summary)


@functools.lru_cache(maxsize=4096)  # pure; asked for each layer many times per build
def _lock_paths(requirements_dir: Path, env: EnvName) -> LockPaths:
    return LockPaths.for_env(requirements_dir, env)


@dataclass(frozen=True)
class BuildLayout:
    """Paths of one stack: its spec folder, lock folder, build folder and output folders."""

    spec_path: Path
    build_dir: Path

    @classmethod
    def for_spec(cls, spec_path: Path, build_dir: Path | str | None = None) -> BuildLayout:
        """Build dir defaults to `_build` beside the spec; relative paths are from the spec dir."""
        spec_path = canonical_file(spec_path)
        chosen = Path(build_dir).expanduser() if build_dir is not None else Path("_build")
        return cls(spec_path, canonical_dir(spec_path.parent / chosen))

    @property
    def spec_dir(self) -> Path:
        return self.spec_path.parent

    @property
    def requirements_dir(self) -> Path:
        return self.spec_dir / "requirements"

    def lock(self, env: EnvName) -> LockPaths:
        return _lock_paths(self.requirements_dir, env)

    def env_dir(self, env: EnvName) -> Path:
        return self.build_dir / env

    def resolve_dir(self, env: EnvName) -> Path:
        """The throw-away uv project used to lock one layer."""
        return self.state_dir / "resolve" / env

    @property
    def state_dir(self) -> Path:
        """venvstacks' own bookkeeping inside the build dir (task DB, stamps, caches)."""
        return self.build_dir / STATE_DIR_NAME

    @property
    def task_db(self) -> Path:
        return self.state_dir / "tasks.db"

    @property
    def lock_file(self) -> Path:
        """Taken for the whole of a build, so that two builds never share a build dir."""
        return self.state_dir / "build.lock"

    @property
    def runtime_cache(self) -> Path:
        return self.state_dir / "runtimes"

    def stamp(self, task: str, env: EnvName) -> Path:
        """A file a task writes last, holding what it produced (its target for doit)."""
        return self.state_dir / "stamps" / f"{task}.{env}.json"

    def output_dir(self, given: Path | str | None, default: str) -> Path:
        """An output folder: relative to the spec's folder, in its canonical spelling."""
        return canonical_dir(
            self.spec_dir / Path(given if given is not None else default).expanduser()
        )


def relative_to_common(paths: list[Path]) -> tuple[Path, list[Path]]:
    """The common folder of `paths`, and each path relative to it (for compact reports)."""

    if not paths:
        return Path.cwd(), []
    base = Path(os.path.commonpath([str(p) for p in paths]))
    if len(paths) == 1:
        base = base.parent
    return base, [p.relative_to(base) for p in paths]
