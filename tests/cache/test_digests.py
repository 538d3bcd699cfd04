"""Input digests change with every input of a lock or an environment, and with nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from venvstacks.cache.digests import env_digest, lock_digest, uv_identity
from venvstacks.lock.resolve import LockOptions
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
"""

RUNTIME, FRAME, APP = EnvName("cpython-3.11"), EnvName("framework-frame"), EnvName("app-a")


class Stack:
    def __init__(self, root: Path, build_dir: str = "_build") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.spec = root / "venvstacks.toml"
        if not self.spec.exists():
            self.spec.write_text(STACK)
            (root / "app_a.py").write_text("print('a')\n")
        self.layout = BuildLayout.for_spec(self.spec, build_dir)
        for env in (RUNTIME, FRAME, APP):
            self.write_lock(env, f"# lock of {env}\n")
        self.layout.runtime_cache.mkdir(parents=True)
        (self.layout.runtime_cache / f"{RUNTIME}.json").write_text(
            '{"sha256": "abc", "version": "3.11.7"}'
        )

    @property
    def plan(self) -> StackPlan:
        return plan_stack(load_stack_spec(self.spec))

    def write_lock(self, env: str, text: str) -> None:
        lock = self.layout.lock(EnvName(env)).pylock
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(text)

    def lock_digest(self, env: EnvName, options: LockOptions | None = None) -> str:
        plan = self.plan
        return lock_digest(plan, plan[env], self.layout, options or LockOptions()).digest

    def env_digest(self, env: EnvName) -> str:
        return env_digest(self.plan, env, self.layout).digest


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path / "stack")


def test_digests_are_stable(stack: Stack) -> None:
    assert stack.lock_digest(APP) == stack.lock_digest(APP)
    assert stack.env_digest(APP) == stack.env_digest(APP)
    assert len({stack.env_digest(e) for e in (RUNTIME, FRAME, APP)}) == 3


def test_the_build_dir_and_the_stack_folder_are_not_inputs(tmp_path: Path, stack: Stack) -> None:
    elsewhere = Stack(tmp_path / "other", "../somewhere/_b")
    for env in (RUNTIME, FRAME, APP):
        assert elsewhere.lock_digest(env) == stack.lock_digest(env)
        assert elsewhere.env_digest(env) == stack.env_digest(env)


def test_app_modules_are_not_environment_inputs(stack: Stack) -> None:
    before = stack.env_digest(APP)
    (stack.spec.parent / "app_a.py").write_text("print('changed')\n")
    assert stack.env_digest(APP) == before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('requirements = ["vs-frame"]', 'requirements = ["vs-frame", "vs-util"]'),
        ('platforms = ["linux_x86_64"]', 'platforms = ["linux_x86_64", "linux_aarch64"]'),
        ('requirements = ["vs-frame"]', 'requirements = ["vs-frame"]\nlinux_target = "glibc@2.34"'),
        (
            'requirements = ["vs-base"]',
            'requirements = ["vs-base"]\n\n[tool.uv]\nresolution = "lowest"',
        ),
    ],
    ids=["requirements", "platforms", "glibc", "uv-setting"],
)
def test_spec_edits_change_the_frame_lock_digest(stack: Stack, old: str, new: str) -> None:
    before = stack.lock_digest(FRAME)
    text = stack.spec.read_text()
    stack.spec.write_text(text.replace(old, new, 1))
    assert stack.lock_digest(FRAME) != before


def test_lower_lock_content_and_runtime_change_lock_digests(stack: Stack) -> None:
    before = stack.lock_digest(APP)
    stack.write_lock(FRAME, "# another lock\n")
    assert stack.lock_digest(APP) != before
    stack.write_lock(FRAME, f"# lock of {FRAME}\n")
    assert stack.lock_digest(APP) == before  # a revert gives back the same digest
    (stack.layout.runtime_cache / f"{RUNTIME}.json").write_text('{"sha256": "def"}')
    assert stack.lock_digest(APP) != before


def test_lock_options_change_lock_digests(stack: Stack, tmp_path: Path) -> None:
    base = stack.lock_digest(FRAME)
    newer = LockOptions(exclude_newer=datetime(2025, 1, 1, tzinfo=UTC))
    assert stack.lock_digest(FRAME, newer) != base
    assert stack.lock_digest(FRAME, LockOptions(use_index=False)) != base
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "x-1-py3-none-any.whl").write_bytes(b"one")
    with_wheels = stack.lock_digest(FRAME, LockOptions(local_wheels=(wheels,)))
    assert with_wheels != base
    (wheels / "x-1-py3-none-any.whl").write_bytes(b"two")
    assert stack.lock_digest(FRAME, LockOptions(local_wheels=(wheels,))) != with_wheels


def test_env_digest_follows_the_lock_and_lower_layers(stack: Stack) -> None:
    app, frame = stack.env_digest(APP), stack.env_digest(FRAME)
    stack.write_lock(FRAME, "# another lock\n")
    assert stack.env_digest(FRAME) != frame
    assert stack.env_digest(APP) != app  # through its lower layer's digest
    stack.write_lock(FRAME, f"# lock of {FRAME}\n")
    assert (stack.env_digest(FRAME), stack.env_digest(APP)) == (frame, app)


def test_env_digest_covers_local_wheels_named_by_the_lock(stack: Stack) -> None:
    folder = stack.layout.lock(FRAME).folder
    (folder / "w.whl").write_bytes(b"one")
    stack.write_lock(FRAME, '[[packages]]\nname = "w"\nwheels = [{ path = "w.whl" }]\n')
    before = stack.env_digest(FRAME)
    (folder / "w.whl").write_bytes(b"two!")
    assert stack.env_digest(FRAME) != before


def test_uv_identity_needs_no_subprocess() -> None:
    assert uv_identity().startswith("uv ")
