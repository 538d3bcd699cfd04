"""Locking's pure helpers and its view of stored locks (no uv runs here).

The resolve project's pyproject, dropping local find-links indexes from a lock, explaining a
conflict with lower layers, uv's hints in venvstacks' terms; and `layer_inputs` /
`stored_lock_state` against small lock files written by the tests.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from venvstacks.lock import pylock as lockfile
from venvstacks.lock.inputs import EXTRA_INPUTS_KEY, layer_inputs, stored_lock_state
from venvstacks.lock.project import (
    LockOptions,
    find_links_folders,
    uv_project_settings,
    write_if_changed,
    write_resolve_project,
)
from venvstacks.lock.resolve import drop_local_indexes
from venvstacks.lock.uvrun import explain_conflicts, lower_providers
from venvstacks.paths import canonical_dir
from venvstacks.plan.layers import StackPlan, plan_stack
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.names import EnvName
from venvstacks.spec.stack import load_stack_spec

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.7"
requirements = ["vs-base"]
platforms = ["linux_x86_64", "macosx_arm64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame", "Torch>=2", "alpha; sys_platform == 'linux'"]
package_indexes = {{ torch = "torch" }}
platforms = ["linux_x86_64"]

[[applications]]
name = "a"
frameworks = ["frame"]
launch_module = "app_a.py"
requirements = ["vs-app-a"]
priority_indexes = ["mirror"]

[[applications]]
name = "b"
runtime = "cpython-3.11"
launch_module = "app_b.py"
support_modules = ["helper_b.py"]
requirements = ["vs-app-b"]
versioned = true

[tool.uv]
{uv_settings}

[[tool.uv.index]]
name = "pypi"
url = "https://pypi.org/simple"
default = true

[[tool.uv.index]]
name = "torch"
url = "https://download.pytorch.org/whl/cpu"
explicit = true

[[tool.uv.index]]
name = "mirror"
url = "https://mirror.example/simple"
explicit = true
"""

RUNTIME, FRAME, APP_A, APP_B = "cpython-3.11", "framework-frame", "app-a", "app-b"


class Stack:
    """A stack folder in tmp_path whose spec can be edited and re-planned."""

    def __init__(self, root: Path, uv_settings: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.spec = root / "venvstacks.toml"
        self.spec.write_text(STACK.format(uv_settings=uv_settings))
        (root / "app_a.py").write_text("print('a')\n")
        (root / "app_b.py").write_text("print('b')\n")
        (root / "helper_b.py").write_text("VALUE = 1\n")
        self.layout = BuildLayout.for_spec(self.spec)

    @property
    def plan(self) -> StackPlan:
        return plan_stack(load_stack_spec(self.spec))

    def edit(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text
        self.spec.write_text(text.replace(old, new, 1))

    def store_lock(self, env: str, packages: dict[str, str], *, extra: bool = True) -> None:
        """Write a lock for `env` that is valid for the current spec (as `lock_layer` would)."""
        plan = self.plan
        inputs = layer_inputs(plan, plan[env], self.layout)
        text = pylock(packages)
        meta = lockfile.next_metadata(
            None, text, inputs.hashes, datetime(2025, 1, 2, tzinfo=UTC), plan[env].spec.versioned
        )
        paths = self.layout.lock(EnvName(env))
        paths.folder.mkdir(parents=True, exist_ok=True)
        paths.pylock.write_text(text)
        data = json.loads(lockfile.render_metadata(meta))
        if extra:
            data[EXTRA_INPUTS_KEY] = inputs.extra_inputs_hash
        paths.metadata.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def state(self, env: str) -> tuple[bool, tuple[str, ...]]:
        plan = self.plan
        state = stored_lock_state(plan, plan[env], self.layout)
        return state.valid, state.changed_fields


def pylock(packages: dict[str, str], shared: frozenset[str] = frozenset()) -> str:
    lines = ['lock-version = "1.0"', 'created-by = "uv"', 'requires-python = "==3.11.*"', ""]
    for name, version in packages.items():
        lines += ["[[packages]]", f'name = "{name}"', f'version = "{version}"']
        if name in shared:
            lines.append(f'marker = "{lockfile.SHARED_MARKER}"')
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path / "stack")


# ---------------------------------------------------------------------------------------------
# write_resolve_project: the uv project whose lock becomes the layer's lock
# ---------------------------------------------------------------------------------------------


def _resolve_project(
    stack: Stack, env: str, options: LockOptions | None = None, constraints: tuple[str, ...] = ()
) -> dict[str, Any]:
    plan = stack.plan
    folder = write_resolve_project(
        plan, plan[env], stack.layout, options or LockOptions(), constraints
    )
    assert folder == stack.layout.resolve_dir(EnvName(env))
    return tomllib.loads((folder / "pyproject.toml").read_text())


def test_resolve_project_of_a_runtime(stack: Stack) -> None:
    data = _resolve_project(stack, RUNTIME)
    assert data["project"] == {
        "name": "venvstacks-layer-cpython-3-11",
        "version": "0",
        "dependencies": ["vs-base"],
        "requires-python": "==3.11.*",
    }
    uv = data["tool"]["uv"]
    assert uv["no-build"] is True
    assert uv["environments"] == [
        "sys_platform == 'linux' and platform_machine == 'x86_64'",
        "sys_platform == 'darwin' and platform_machine == 'arm64'",
    ]
    assert [i["name"] for i in uv["index"]] == ["pypi"]  # explicit indexes only when used
    assert "sources" not in uv
    for absent in ("no-index", "find-links", "constraint-dependencies", "exclude-newer"):
        assert absent not in uv


def test_resolve_project_dependencies_are_sorted(stack: Stack) -> None:
    data = _resolve_project(stack, FRAME)
    assert data["project"]["dependencies"] == [
        "Torch>=2",
        'alpha; sys_platform == "linux"',
        "vs-frame",
    ]
    assert data["project"]["name"] == "venvstacks-layer-framework-frame"
    assert data["tool"]["uv"]["environments"] == [
        "sys_platform == 'linux' and platform_machine == 'x86_64'"
    ]


def test_resolve_project_package_indexes_give_index_and_sources(stack: Stack) -> None:
    uv = _resolve_project(stack, FRAME)["tool"]["uv"]
    assert [i["name"] for i in uv["index"]] == ["torch", "pypi"]
    assert uv["index"][0]["explicit"] is True
    assert uv["sources"] == {"torch": {"index": "torch"}}


def test_resolve_project_inherits_package_indexes_and_adds_priority(stack: Stack) -> None:
    uv = _resolve_project(stack, APP_A)["tool"]["uv"]
    assert [i["name"] for i in uv["index"]] == ["mirror", "torch", "pypi"]
    assert uv["index"][0]["explicit"] is False  # a priority index is searched for everything
    assert uv["sources"] == {"torch": {"index": "torch"}}


def test_resolve_project_lock_options(stack: Stack, tmp_path: Path) -> None:
    options = LockOptions(
        use_index=False,
        local_wheels=(tmp_path / "w1", tmp_path / "w2"),
        exclude_newer=datetime(2024, 3, 1, 12, tzinfo=UTC),
    )
    constraints = ("vs-base==1.0", "other==2 ; sys_platform == 'linux'")
    uv = _resolve_project(stack, APP_B, options, constraints)["tool"]["uv"]
    assert uv["no-index"] is True
    assert uv["find-links"] == [str(tmp_path / "w1"), str(tmp_path / "w2")]
    assert uv["constraint-dependencies"] == ["vs-base==1.0", "other==2 ; sys_platform == 'linux'"]
    assert uv["exclude-newer"] == "2024-03-01T12:00:00+00:00"


def test_resolve_project_keeps_the_stacks_uv_settings(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path / "s",
        'index-strategy = "unsafe-best-match"\nfind-links = ["/shared/wheels"]\n'
        'exclude-newer = "2023-01-01T00:00:00Z"\n'
        "environments = [\"sys_platform == 'linux'\"]\n",
    )
    uv = _resolve_project(stack, RUNTIME, LockOptions(local_wheels=(tmp_path / "w",)))["tool"]["uv"]
    assert uv["index-strategy"] == "unsafe-best-match"
    assert uv["find-links"] == ["/shared/wheels", str(tmp_path / "w")]
    assert uv["exclude-newer"] == "2023-01-01T00:00:00+00:00"
    assert uv["environments"] == ["sys_platform == 'linux'"]
    # the option beats the stack's setting
    uv = _resolve_project(
        stack, RUNTIME, LockOptions(exclude_newer=datetime(2024, 1, 1, tzinfo=UTC))
    )["tool"]["uv"]
    assert uv["exclude-newer"] == "2024-01-01T00:00:00+00:00"


def test_relative_find_links_are_read_from_the_spec_folder(tmp_path: Path) -> None:
    """uv would read a relative find-links folder from the throw-away project in the build dir;
    the lock's inputs keep the spelling of the spec (copying the spec folder keeps them valid)."""
    stack = Stack(
        tmp_path / "s", 'find-links = ["wheels", "../shared", "https://example.org/links/"]\n'
    )
    uv = _resolve_project(stack, RUNTIME)["tool"]["uv"]
    spec_dir = canonical_dir(tmp_path / "s")
    assert uv["find-links"] == [
        str(spec_dir / "wheels"), str(spec_dir.parent / "shared"), "https://example.org/links/"
    ]  # fmt: skip
    assert find_links_folders(stack.plan) == [spec_dir / "wheels", spec_dir.parent / "shared"]
    assert uv_project_settings(stack.plan, stack.plan[RUNTIME], LockOptions())["find-links"] == [
        "wheels", "../shared", "https://example.org/links/"
    ]  # fmt: skip


def test_resolve_project_is_only_rewritten_when_it_changes(stack: Stack) -> None:
    plan = stack.plan
    folder = write_resolve_project(plan, plan[RUNTIME], stack.layout, LockOptions(), [])
    pyproject = folder / "pyproject.toml"
    before = pyproject.stat().st_mtime_ns
    pyproject.touch()
    touched = pyproject.stat().st_mtime_ns
    write_resolve_project(plan, plan[RUNTIME], stack.layout, LockOptions(), [])
    assert pyproject.stat().st_mtime_ns == touched >= before
    write_resolve_project(plan, plan[RUNTIME], stack.layout, LockOptions(), ["x==1"])
    assert "x==1" in pyproject.read_text()


def testwrite_if_changed(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "file.txt"
    assert write_if_changed(path, "one\n") is True
    assert write_if_changed(path, "one\n") is False
    assert write_if_changed(path, "two\n") is True
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"], "no temporary files left"


# ---------------------------------------------------------------------------------------------
# drop_local_indexes
# ---------------------------------------------------------------------------------------------

LOCAL_LOCK = """\
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "vs-base"
version = "1.0"
index = "file:///home/me/wheels"
wheels = [{ path = "../../wheels/vs_base-1.0-py3-none-any.whl", hashes = { sha256 = "ab" } }]

[[packages]]
name = "numpy"
version = "2.0"
index = "https://pypi.org/simple"

[[packages]]
name = "local"
version = "0.1"
"""


def test_drop_local_indexes() -> None:
    dropped = drop_local_indexes(LOCAL_LOCK)
    data = tomllib.loads(dropped)
    assert [p.get("index") for p in data["packages"]] == [None, "https://pypi.org/simple", None]
    assert data["packages"][0]["wheels"][0]["path"] == "../../wheels/vs_base-1.0-py3-none-any.whl"
    assert dropped == LOCAL_LOCK.replace('index = "file:///home/me/wheels"\n', "")


def test_drop_local_indexes_leaves_other_locks_alone() -> None:
    text = LOCAL_LOCK.replace('index = "file:///home/me/wheels"\n', "")
    assert drop_local_indexes(text) == text
    assert drop_local_indexes('lock-version = "1.0"\n') == 'lock-version = "1.0"\n'


# ---------------------------------------------------------------------------------------------
# explain_conflicts, lower_providers and uv hints
# ---------------------------------------------------------------------------------------------

UV_CONFLICT = """\
  \u00d7 No solution found when resolving dependencies:
  ╰─▶ Because only vs-base<=1.0 is available and vs-frame==2.0 depends on vs-base>=2.0, we can
      conclude that vs-frame==2.0 cannot be used.
      And because you require vs-frame==2.0 and Other_Pkg!=3, we can conclude that your
      requirements are unsatisfiable.
"""

PROVIDERS = {
    "vs-base": "vs-base==1.0 from cpython-3.11",
    "other-pkg": "other-pkg==3 from framework-frame",
    "numpy": "numpy==2.0 from framework-frame",
}


def test_explain_conflicts_names_the_lower_pins_uv_mentions() -> None:
    assert explain_conflicts(UV_CONFLICT, PROVIDERS) == [
        "other-pkg==3 from framework-frame",
        "vs-base==1.0 from cpython-3.11",
    ]


@pytest.mark.parametrize(
    "output",
    ["", "error: no matching distribution for vs-app-a", "numpy is required"],
)
def test_explain_conflicts_without_a_mentioned_pin(output: str) -> None:
    assert explain_conflicts(output, PROVIDERS) == []


def test_lower_providers_first_lower_layer_wins(stack: Stack) -> None:
    layout = stack.layout
    for env, packages, shared in (
        (FRAME, {"vs-frame": "1.0", "Vs_Base": "1.0", "numpy": "2.0"}, {"Vs_Base"}),
        (RUNTIME, {"vs-base": "1.0", "numpy": "1.26"}, set()),
    ):
        paths = layout.lock(EnvName(env))
        paths.folder.mkdir(parents=True, exist_ok=True)
        paths.pylock.write_text(pylock(packages, frozenset(shared)))
    assert lower_providers(layout, [EnvName(FRAME), EnvName(RUNTIME)]) == {
        "vs-frame": "vs-frame==1.0 from framework-frame",
        "numpy": "numpy==2.0 from framework-frame",
        "vs-base": "vs-base==1.0 from cpython-3.11",  # shared in frame: the runtime installs it
    }


# ---------------------------------------------------------------------------------------------
# layer_inputs and stored_lock_state against lock files written here
# ---------------------------------------------------------------------------------------------


def test_no_lock_is_not_valid(stack: Stack) -> None:
    assert stack.state(RUNTIME) == (False, ("metadata", "pylock"))


def test_a_stored_lock_is_valid_until_an_input_changes(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    assert stack.state(RUNTIME) == (True, ())


def test_requirements_change(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    stack.edit('requirements = ["vs-base"]', 'requirements = ["vs-base", "extra"]')
    assert stack.state(RUNTIME) == (False, ("lock_input_hash",))


def test_requirement_order_and_spelling_do_not_matter(stack: Stack) -> None:
    stack.store_lock(FRAME, {"vs-frame": "1.0"})
    stack.edit(
        """requirements = ["vs-frame", "Torch>=2", "alpha; sys_platform == 'linux'"]""",
        """requirements = ["alpha ;sys_platform=='linux'", "Torch >= 2", "vs-frame"]""",
    )
    valid, changed = stack.state(FRAME)
    # the runtime has no stored lock, so the lower-layer part of the inputs is unchanged too
    assert (valid, changed) == (True, ())


def test_hand_edited_lock(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    pylock_path = stack.layout.lock(EnvName(RUNTIME)).pylock
    pylock_path.write_text(pylock_path.read_text().replace('"1.0"', '"1.1"'))
    assert stack.state(RUNTIME) == (False, ("requirements_hash",))
    pylock_path.write_text("not [ toml")
    assert stack.state(RUNTIME) == (False, ("requirements_hash",))


def test_a_comment_in_the_lock_keeps_it_valid(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    pylock_path = stack.layout.lock(EnvName(RUNTIME)).pylock
    pylock_path.write_text(pylock_path.read_text() + "# note\n")
    assert stack.state(RUNTIME) == (True, ())


def test_python_x_y_change(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    stack.edit("cpython@3.11.7", "cpython@3.11.9")
    assert stack.state(RUNTIME) == (True, ()), "only X.Y counts"
    stack.edit("cpython@3.11.9", "cpython@3.12.1")
    assert stack.state(RUNTIME) == (False, ("other_inputs_hash",))


def test_platforms_change_is_an_extra_input(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    stack.edit('platforms = ["linux_x86_64", "macosx_arm64"]', 'platforms = ["linux_x86_64"]')
    assert stack.state(RUNTIME) == (False, ("other_inputs_hash", EXTRA_INPUTS_KEY))


def test_index_change_is_an_extra_input(stack: Stack) -> None:
    stack.store_lock(FRAME, {"vs-frame": "1.0"})
    stack.edit("https://download.pytorch.org/whl/cpu", "https://download.pytorch.org/whl/cu121")
    assert stack.state(FRAME) == (False, (EXTRA_INPUTS_KEY,))


def test_locks_without_the_extra_key_are_accepted(stack: Stack) -> None:
    """Locks written by venvstacks 0.8.0 lack venvstacks_inputs_hash."""
    stack.store_lock(RUNTIME, {"vs-base": "1.0"}, extra=False)
    stack.edit(
        'platforms = ["linux_x86_64", "macosx_arm64"]',
        'platforms = ["macosx_arm64", "linux_x86_64"]',
    )
    assert stack.state(RUNTIME) == (True, ())


def test_a_relocked_lower_layer_changes_the_upper_layers_inputs(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    stack.store_lock(FRAME, {"vs-frame": "1.0"})
    assert stack.state(FRAME) == (True, ())
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})  # same content: same requirements_hash
    assert stack.state(FRAME) == (True, ())
    stack.store_lock(RUNTIME, {"vs-base": "2.0"})
    assert stack.state(FRAME) == (False, (EXTRA_INPUTS_KEY,))


def test_versioned_app_modules_are_version_inputs(stack: Stack) -> None:
    stack.store_lock(APP_B, {"vs-app-b": "1.0"})
    stack.store_lock(APP_A, {"vs-app-a": "1.0"})
    (stack.root / "helper_b.py").write_text("VALUE = 2\n")
    (stack.root / "app_a.py").write_text("print('edited')\n")
    plan = stack.plan
    state = stored_lock_state(plan, plan[APP_B], stack.layout)
    assert state.changed_fields == ("version_inputs_hash",)
    assert not state.needs_full_lock, "only the version is bumped, uv does not run"
    assert stack.state(APP_A) == (True, ()), "an unversioned app's lock ignores its modules"


def test_layer_inputs(stack: Stack) -> None:
    plan = stack.plan
    inputs = layer_inputs(plan, plan[APP_A], stack.layout)
    assert inputs.requirements == ("vs-app-a",)
    assert inputs.lower_locks == (FRAME, RUNTIME)
    assert inputs.lock_input_hash == lockfile.lock_input_hash(["vs-app-a"])
    assert inputs.other_inputs_hash == lockfile.other_inputs_hash(
        py_version="3.11",
        linux_target="glibc@2.28",
        macosx_target=None,
        runtime_env_name=RUNTIME,
        framework_names=["frame"],
    )
    assert inputs.version_inputs_hash == lockfile.version_inputs_hash(
        env_name=APP_A, versioned=False
    )
    assert inputs.hashes == lockfile.LockInputs(
        inputs.lock_input_hash, inputs.other_inputs_hash, inputs.version_inputs_hash
    )


def test_layer_inputs_of_a_runtime_for_macos(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MACOSX_DEPLOYMENT_TARGET", "12.0")
    plan = stack.plan
    inputs = layer_inputs(plan, plan[RUNTIME], stack.layout)
    assert inputs.lower_locks == ()
    assert inputs.other_inputs_hash == lockfile.other_inputs_hash(
        py_version="3.11", linux_target="glibc@2.28", macosx_target="12.0"
    )


def test_damaged_metadata_is_not_valid(stack: Stack) -> None:
    stack.store_lock(RUNTIME, {"vs-base": "1.0"})
    meta = stack.layout.lock(EnvName(RUNTIME)).metadata
    meta.write_text("{not json")
    assert stack.state(RUNTIME) == (False, ("metadata",))
    meta.write_text('{"lock_version": 1}')
    assert stack.state(RUNTIME) == (False, ("metadata",))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        target = tmp_path / "requirements" / "x" / "pylock.x.toml"
        assert write_if_changed(target, "a\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
        target.chmod(0o640)  # a replaced file keeps its mode, as with open(path, "w")
        assert write_if_changed(target, "b\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        assert [p.name for p in target.parent.iterdir()] == [target.name]
    finally:
        os.umask(old)
