"""Packages of a pylock: markers, the shared-package marker, and what lower layers provide. Pure.

`LockedPackage` reads one ``[[packages]]`` entry; `LowerLayerPackages` collects what the lower
layers of a layer install (runtime first, then frameworks by priority), decides whether a package
of this layer comes from them, and gives the ``constraint-dependencies`` pinning them for uv.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from venvstacks.pep508 import canonical_name, plain_marker
from venvstacks.plan.platforms import TargetPlatform

if TYPE_CHECKING:
    from packaging.markers import Marker

__all__ = [
    "SHARED_MARKER",
    "LockedPackage",
    "LowerLayerPackages",
    "MarkerEnvs",
    "applicable_platforms",
    "constraint_dependencies",
    "marker_matches",
    "normalise_marker",
    "optional_str",
    "read_packages",
    "shared_marker",
    "split_shared",
]

SHARED_MARKER = "sys_platform == 'from_lower_layer'"
_SHARED_SUFFIX = f") and {SHARED_MARKER}"

MarkerEnvs = Mapping[TargetPlatform, Mapping[str, str]]

# --- markers -----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _marker(text: str) -> Marker:
    from packaging.markers import Marker  # imported when a lock has markers: it costs

    return Marker(text)


def normalise_marker(text: str) -> str:
    """packaging's canonical spelling, with single quotes as uv writes them."""
    plain = plain_marker(text)  # most markers: no need to import packaging
    return plain if plain is not None else str(_marker(text)).replace('"', "'")


def marker_matches(marker: str | None, env: Mapping[str, str]) -> bool:
    return marker is None or _marker(marker).evaluate(env, "lock_file")


def applicable_platforms(marker: str | None, envs: MarkerEnvs) -> tuple[TargetPlatform, ...]:
    """The target platforms (in the layer's order) where ``marker`` holds."""
    return tuple(target for target, env in envs.items() if marker_matches(marker, env))


def split_shared(marker: str | None) -> tuple[bool, str | None]:
    """``(is_shared, marker without the from_lower_layer clause)``."""
    if marker is None:
        return False, None
    quoted = marker.replace('"', "'")
    if quoted == SHARED_MARKER:
        return True, None
    if quoted.startswith("(") and quoted.endswith(_SHARED_SUFFIX):
        return True, quoted[1 : -len(_SHARED_SUFFIX)]
    return False, marker


def shared_marker(marker: str | None) -> str:
    return SHARED_MARKER if marker is None else f"({marker}{_SHARED_SUFFIX}"


# --- locked packages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedPackage:
    """One ``[[packages]]`` entry: canonical name, version, normalised marker, shared flag."""

    name: str
    version: str
    marker: str | None = None
    """The marker without the ``from_lower_layer`` clause, single-quoted; None if unconditional."""
    shared: bool = False
    """Provided by a lower layer (marked ``from_lower_layer`` in this lock)."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> LockedPackage:
        """Read a ``[[packages]]`` table (from tomllib or tomlkit)."""
        shared, marker = split_shared(optional_str(entry.get("marker")))
        return cls(
            name=canonical_name(str(entry["name"])),
            version=str(entry.get("version", "")),
            marker=None if marker is None else normalise_marker(marker),
            shared=shared,
        )

    @property
    def requirement(self) -> str:
        """``name==version`` or ``name==version ; marker``."""
        pin = f"{self.name}=={self.version}"
        return pin if self.marker is None else f"{pin} ; {self.marker}"


def optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def read_packages(lock_text: str) -> tuple[LockedPackage, ...]:
    """Every package of a pylock text, in file order. Raises ValueError on invalid TOML."""
    packages = tomllib.loads(lock_text).get("packages", [])
    return tuple(LockedPackage.from_entry(entry) for entry in packages)


@dataclass(frozen=True)
class LowerLayerPackages:
    """The packages a layer can take from its lower layers, in priority order.

    Per name: the conditional entries met before the first unconditional one (one per marker),
    then that unconditional one; anything after it is shadowed.
    """

    packages: tuple[LockedPackage, ...] = ()

    @classmethod
    def from_lock_texts(cls, lock_texts: Iterable[str]) -> LowerLayerPackages:
        """Collect from lower layers' locks: runtime first, then the linearised frameworks.

        Packages that a lock marks shared are skipped: the layer that installs them is in the
        list too.
        """
        by_name: dict[str, list[LockedPackage]] = {}
        for text in lock_texts:
            for pkg in read_packages(text):
                entries = by_name.setdefault(pkg.name, [])
                if pkg.shared or any(e.marker in (None, pkg.marker) for e in entries):
                    continue
                entries.append(pkg)
        return cls(tuple(pkg for entries in by_name.values() for pkg in entries))

    def provides(
        self, pkg: LockedPackage, applicable: Sequence[TargetPlatform], envs: MarkerEnvs
    ) -> bool:
        """Whether ``pkg`` (applying on ``applicable``) comes from the lower layers."""
        entries = [e for e in self.packages if e.name == pkg.name]
        if any(e.marker is None for e in entries):
            return True
        if any(e.version == pkg.version and e.marker == pkg.marker for e in entries):
            return True
        return bool(entries) and all(
            any(marker_matches(e.marker, envs[target]) for e in entries) for target in applicable
        )


def constraint_dependencies(lower: LowerLayerPackages) -> list[str]:
    """``tool.uv.constraint-dependencies`` entries pinning what the lower layers provide."""
    return [pkg.requirement for pkg in lower.packages]
