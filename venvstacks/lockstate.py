"""The state of each layer's stored lock: is it valid for the current spec, and its deployed name."""

from __future__ import annotations

import json

from venvstacks.graph import LayerPlan, StackPlan
from venvstacks.layout import BuildLayout

__all__ = ["StoredLocks"]


class StoredLocks:
    """Reads lock metadata from `requirements/<env>/` (a `report.LockView`)."""

    def __init__(self, plan: StackPlan, layout: BuildLayout) -> None:
        self._plan = plan
        self._layout = layout

    def has_valid_lock(self, layer: LayerPlan) -> bool:
        paths = self._layout.lock(layer.env_name)
        return paths.pylock.exists() and paths.metadata.exists()

    def install_target(self, layer: LayerPlan) -> str | None:
        if not layer.spec.versioned:
            return layer.env_name
        paths = self._layout.lock(layer.env_name)
        if not self.has_valid_lock(layer):
            return None
        version = json.loads(paths.metadata.read_text())["lock_version"]
        return f"{layer.env_name}@{version}"
