"""StoredLocks: each layer's stored lock, invalid when a lower layer's is, and deployed names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from venvstacks.lock import pylock as lockfile
from venvstacks.lock.inputs import EXTRA_INPUTS_KEY, layer_inputs
from venvstacks.lock.state import StoredLocks
from venvstacks.plan.layers import StackPlan, plan_stack
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.spec.stack import load_stack_spec

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.7"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[applications]]
name = "a"
frameworks = ["frame"]
launch_module = "app_a.py"
requirements = ["vs-app-a"]

[[applications]]
name = "b"
runtime = "cpython-3.11"
launch_module = "app_b.py"
requirements = ["vs-app-b"]
versioned = true
"""

RUNTIME, FRAME, APP_A, APP_B = "cpython-3.11", "framework-frame", "app-a", "app-b"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "app_a.py").write_text("print('a')\n")
    (tmp_path / "app_b.py").write_text("print('b')\n")
    path = tmp_path / "venvstacks.toml"
    path.write_text(STACK)
    return path


def _plan(spec: Path) -> StackPlan:
    return plan_stack(load_stack_spec(spec))


def _store_lock(spec: Path, env: str, version: str = "1.0", lock_version: int = 1) -> None:
    """A lock of one package that is valid for the spec as it is now."""
    plan, layout = _plan(spec), BuildLayout.for_spec(spec)
    inputs = layer_inputs(plan, plan[env], layout)
    text = f'lock-version = "1.0"\n\n[[packages]]\nname = "pkg-{env}"\nversion = "{version}"\n'
    meta = lockfile.next_metadata(
        None, text, inputs.hashes, datetime(2025, 1, 2, tzinfo=UTC), plan[env].spec.versioned
    )
    data = {
        **json.loads(lockfile.render_metadata(meta)),
        "lock_version": lock_version,
        EXTRA_INPUTS_KEY: inputs.extra_inputs_hash,
    }
    paths = layout.lock(EnvName(env))
    paths.folder.mkdir(parents=True, exist_ok=True)
    paths.pylock.write_text(text)
    paths.metadata.write_text(json.dumps(data))


def _locks(spec: Path) -> StoredLocks:
    return StoredLocks(_plan(spec), BuildLayout.for_spec(spec))


def test_nothing_locked(spec: Path) -> None:
    locks = _locks(spec)
    plan = _plan(spec)
    for layer in plan.layers:
        assert not locks.has_valid_lock(layer)
        assert locks.state(layer.env_name).changed_fields == ("metadata", "pylock")


def test_every_layer_locked(spec: Path) -> None:
    for env in (RUNTIME, FRAME, APP_A, APP_B):
        _store_lock(spec, env)
    locks = _locks(spec)
    assert all(locks.has_valid_lock(layer) for layer in _plan(spec).layers)
    assert locks.state(APP_B).metadata is not None


def test_an_invalid_lower_lock_invalidates_the_layers_above(spec: Path) -> None:
    for env in (RUNTIME, FRAME, APP_A, APP_B):
        _store_lock(spec, env)
    # frame's requirements change: its own lock is invalid, and so is everything above it
    spec.write_text(STACK.replace('requirements = ["vs-frame"]', 'requirements = ["vs-frame2"]'))
    locks = _locks(spec)
    assert locks.state(RUNTIME).valid
    assert locks.state(FRAME).changed_fields == ("lock_input_hash",)
    app_a = locks.state(APP_A)
    assert not app_a.valid
    assert app_a.changed_fields == ("lower layer lock",)
    assert app_a.metadata is not None, "the stored metadata is still reported"
    assert locks.state(APP_B).valid, "app-b does not use frame"


def test_state_is_computed_once_per_layer(spec: Path) -> None:
    locks = _locks(spec)
    assert locks.state(APP_A) is locks.state(APP_A)


def test_install_target_of_an_unversioned_layer_is_its_env_name(spec: Path) -> None:
    locks = _locks(spec)
    plan = _plan(spec)
    assert locks.install_target(plan[APP_A]) == APP_A  # even without a lock
    assert locks.install_target(plan[RUNTIME]) == RUNTIME


def test_install_target_of_a_versioned_layer_needs_a_valid_lock(spec: Path) -> None:
    plan = _plan(spec)
    assert _locks(spec).install_target(plan[APP_B]) is None
    _store_lock(spec, RUNTIME)
    _store_lock(spec, APP_B, lock_version=3)
    assert _locks(spec).install_target(plan[APP_B]) == "app-b@3"
    spec.write_text(STACK.replace('"vs-app-b"', '"vs-app-b>=2"'))
    assert _locks(spec).install_target(_plan(spec)[APP_B]) is None
