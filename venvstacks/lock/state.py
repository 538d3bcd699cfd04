"""The state of each layer's stored lock: is it valid for the current spec, and its deployed name."""

from __future__ import annotations

from functools import cache

from venvstacks.lock.resolve import StoredLockState, stored_lock_state
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout

__all__ = ["StoredLocks"]


class StoredLocks:
    """Reads lock metadata from `requirements/<env>/` (a `report.LockView`)."""

    def __init__(self, plan: StackPlan, layout: BuildLayout) -> None:
        self._plan = plan
        self._layout = layout
        self.state = cache(self._state)

    def _state(self, env: str) -> StoredLockState:
        layer = self._plan[env]
        state = stored_lock_state(self._plan, layer, self._layout)
        if state.valid and any(not self.state(d).valid for d in layer.dependencies):
            return StoredLockState(False, ("lower layer lock",), state.metadata, state.extra_hash)
        return state

    def has_valid_lock(self, layer: LayerPlan) -> bool:
        return self.state(layer.env_name).valid

    def install_target(self, layer: LayerPlan) -> str | None:
        """The deployed name; None for a versioned layer without a valid lock."""
        if not layer.spec.versioned:
            return layer.env_name
        state = self.state(layer.env_name)
        if not state.valid or state.metadata is None:
            return None
        return f"{layer.env_name}@{state.metadata.lock_version}"
