"""The stack as doit task dicts: names, dependencies, targets; run_operation as a doit action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from doit.exceptions import TaskFailed

from venvstacks.envs.build import provision_record_path
from venvstacks.errors import BuildError, LockError, StackError
from venvstacks.lock.project import LockOptions
from venvstacks.plan.layers import StackPlan, plan_stack
from venvstacks.plan.layout import BuildLayout
from venvstacks.plan.platforms import build_platform
from venvstacks.spec.stack import load_stack_spec
from venvstacks.tasks.engine import TaskDict, run_tasks, task_states
from venvstacks.tasks.stack import OPERATIONS, StackTasks, run_operation, task_name

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.7"
requirements = ["vs-base"]
platforms = ["{platform}"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[frameworks]]
name = "frame2"
frameworks = ["frame"]
requirements = ["vs-frame2"]

[[applications]]
name = "a"
frameworks = ["frame2"]
launch_module = "app_a.py"
requirements = ["vs-app-a"]

[[applications]]
name = "b"
runtime = "cpython-3.11"
launch_module = "launch_b"
support_modules = ["helper_b.py"]
requirements = ["vs-app-b"]
versioned = true
"""

RUNTIME, FRAME, FRAME2, APP_A, APP_B = (
    "cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b",
)
ENVS = (RUNTIME, FRAME, FRAME2, APP_A, APP_B)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    root = tmp_path / "stack"
    (root / "launch_b").mkdir(parents=True)
    (root / "venvstacks.toml").write_text(STACK.format(platform=build_platform()))
    (root / "app_a.py").write_text("print('a')\n")
    (root / "launch_b" / "__init__.py").write_text("")
    (root / "launch_b" / "__main__.py").write_text("print('b')\n")
    (root / "launch_b" / "__pycache__").mkdir()
    (root / "launch_b" / "__pycache__" / "x.pyc").write_text("not a module file")
    (root / "helper_b.py").write_text("VALUE = 1\n")
    return root


@pytest.fixture
def plan(stack_dir: Path) -> StackPlan:
    return plan_stack(load_stack_spec(stack_dir / "venvstacks.toml"))


@pytest.fixture
def layout(stack_dir: Path) -> BuildLayout:
    return BuildLayout.for_spec(stack_dir / "venvstacks.toml")


@pytest.fixture
def stack(plan: StackPlan, layout: BuildLayout) -> StackTasks:
    return StackTasks(plan, layout)


def _by_name(tasks: list[TaskDict]) -> dict[str, TaskDict]:
    return {f"{t['basename']}:{t['name']}": t for t in tasks}


# ---------------------------------------------------------------------------------------------
# Task names and order
# ---------------------------------------------------------------------------------------------


def test_operations_are_the_documented_ones() -> None:
    import venvstacks.tasks.stack as tasks_module

    assert OPERATIONS == ("runtime", "lock", "install", "link", "archive", "export")
    doc = tasks_module.__doc__ or ""
    for operation in OPERATIONS:
        assert f"    {operation}:" in doc


def test_task_name() -> None:
    assert task_name("lock", "app-x") == "lock:app-x"


def test_task_list_names_and_order(stack: StackTasks) -> None:
    names = [f"{t['basename']}:{t['name']}" for t in stack.all_tasks()]
    assert names == [
        f"runtime:{RUNTIME}",
        *(f"lock:{env}" for env in ENVS),
        *(f"{op}:{env}" for env in ENVS for op in ("install", "link")),
    ]


def test_every_task_has_a_doc_and_an_action(stack: StackTasks) -> None:
    for task in stack.all_tasks():
        assert task["doc"]
        assert len(task["actions"]) == 1
        action, args = task["actions"][0]
        assert action is run_operation
        assert callable(args[0])


def test_no_task_name_clashes_with_a_doit_command(stack: StackTasks) -> None:
    doit_commands = {"run", "list", "clean", "info", "forget", "ignore", "help", "strace",
                     "dumpdb", "reset-dep", "auto", "tabcompletion"}
    assert not {t["basename"] for t in stack.all_tasks()} & doit_commands


def test_names_selects_existing_tasks_only(stack: StackTasks, plan: StackPlan) -> None:
    assert stack.names("link", plan.enabled) == [f"link:{env}" for env in ENVS]
    assert stack.names("runtime", plan.enabled) == [f"runtime:{RUNTIME}"]
    assert stack.names("archive", plan.enabled) == []


def test_layers_for_another_platform_are_locked_but_not_built(tmp_path: Path) -> None:
    other = "win_arm64" if str(build_platform()) != "win_arm64" else "linux_x86_64"
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "cpython-3.11"\npython_implementation = "cpython@3.11.7"\n'
        f'requirements = []\nplatforms = ["{build_platform()}", "{other}"]\n\n'
        '[[frameworks]]\nname = "f"\nruntime = "cpython-3.11"\nrequirements = []\n'
        f'platforms = ["{other}"]\n'
    )
    stack = StackTasks(plan_stack(load_stack_spec(spec)), BuildLayout.for_spec(spec))
    names = [f"{t['basename']}:{t['name']}" for t in stack.all_tasks()]
    assert "lock:framework-f" in names
    assert "install:framework-f" not in names
    assert "link:framework-f" not in names
    assert "install:cpython-3.11" in names


# ---------------------------------------------------------------------------------------------
# Dependencies and targets of each operation
# ---------------------------------------------------------------------------------------------


def test_runtime_task(stack: StackTasks, layout: BuildLayout) -> None:
    task = _by_name(stack.all_tasks())[f"runtime:{RUNTIME}"]
    assert task["targets"] == [str(layout.runtime_cache / f"{RUNTIME}.json")]
    assert task.get("file_dep", []) == []
    assert task.get("task_dep", []) == []
    assert len(task["uptodate"]) == 2


def _pylock(layout: BuildLayout, env: str) -> str:
    return str(layout.lock(env).pylock)  # type: ignore[arg-type]


def _meta(layout: BuildLayout, env: str) -> str:
    return str(layout.lock(env).metadata)  # type: ignore[arg-type]


def test_lock_tasks(stack: StackTasks, layout: BuildLayout, stack_dir: Path) -> None:
    tasks = _by_name(stack.all_tasks())
    expected_lower = {
        RUNTIME: [],
        FRAME: [RUNTIME],
        FRAME2: [FRAME, RUNTIME],
        APP_A: [FRAME2, FRAME, RUNTIME],
        APP_B: [RUNTIME],
    }
    # Only a versioned app's lock depends on its modules (they feed its lock_version).
    modules = {
        APP_B: [
            str(stack_dir / "launch_b" / "__init__.py"),
            str(stack_dir / "launch_b" / "__main__.py"),
            str(stack_dir / "helper_b.py"),
        ],
    }
    for env, lower in expected_lower.items():
        task = tasks[f"lock:{env}"]
        assert task["targets"] == [_pylock(layout, env), _meta(layout, env)]
        assert task["task_dep"] == [f"runtime:{RUNTIME}", *(f"lock:{d}" for d in lower)]
        # Lower layers' lock *files* are inputs: a relock with the same bytes stops the cascade.
        assert task["file_dep"] == [_pylock(layout, d) for d in lower] + modules.get(env, [])
        assert len(task["uptodate"]) == 1


def test_install_tasks(stack: StackTasks, layout: BuildLayout) -> None:
    tasks = _by_name(stack.all_tasks())
    runtime = tasks[f"install:{RUNTIME}"]
    assert runtime["file_dep"] == [
        _pylock(layout, RUNTIME), str(layout.runtime_cache / f"{RUNTIME}.json")
    ]
    assert runtime["task_dep"] == []
    for env in ENVS[1:]:
        task = tasks[f"install:{env}"]
        assert task["file_dep"] == [_pylock(layout, env)]
        assert task["task_dep"] == [f"install:{RUNTIME}"]
    for env in ENVS:
        assert tasks[f"install:{env}"]["targets"] == [str(layout.stamp("install", env))]  # type: ignore[arg-type]


def test_link_tasks(stack: StackTasks, layout: BuildLayout, stack_dir: Path) -> None:
    tasks = _by_name(stack.all_tasks())
    lower = {RUNTIME: [], FRAME: [RUNTIME], FRAME2: [FRAME, RUNTIME],
             APP_A: [FRAME2, FRAME, RUNTIME], APP_B: [RUNTIME]}
    for env, deps in lower.items():
        task = tasks[f"link:{env}"]
        assert task["targets"] == [str(layout.stamp("link", env))]  # type: ignore[arg-type]
        assert task["task_dep"] == [f"install:{env}", *(f"link:{d}" for d in deps)]
        # Links depend on deployed names (an uptodate check), not on lock metadata files.
        assert task["file_dep"][:2] == [
            str(layout.stamp("install", env)),  # type: ignore[arg-type]
            str(provision_record_path(layout, RUNTIME)),
        ]
        assert not any(dep.endswith(".meta.json") for dep in task["file_dep"])  # type: ignore[union-attr]
    assert tasks[f"link:{APP_A}"]["file_dep"][-1] == str(stack_dir / "app_a.py")


def test_every_dependency_names_a_task(stack: StackTasks) -> None:
    tasks = stack.all_tasks()
    names = {f"{t['basename']}:{t['name']}" for t in tasks}
    for task in tasks:
        assert set(task.get("task_dep", [])) <= names


def test_every_file_dep_is_a_target_or_a_source(stack: StackTasks, stack_dir: Path) -> None:
    tasks = stack.all_tasks()
    targets = {target for t in tasks for target in t.get("targets", [])}
    for task in tasks:
        for dep in task.get("file_dep", []):
            assert dep in targets or Path(dep).is_file(), dep


def test_tasks_are_stale_before_anything_ran(stack: StackTasks, layout: BuildLayout) -> None:
    states = {s.name: s for s in task_states(stack.all_tasks(), layout.task_db)}
    assert states[f"runtime:{RUNTIME}"].status == "run"
    assert "missing_target" in states[f"lock:{APP_A}"].reasons
    assert "uptodate_false" in states[f"lock:{APP_A}"].reasons  # no valid stored lock
    assert not layout.build_dir.exists(), "asking for states must create nothing"


def test_reset_lock_makes_the_lock_task_stale(plan: StackPlan, layout: BuildLayout) -> None:
    stack = StackTasks(plan, layout, lock_options=LockOptions(reset=frozenset({APP_A})))
    task = _by_name(stack.all_tasks())[f"lock:{APP_A}"]
    [(check, args)] = task["uptodate"]
    assert args[-1] is True
    assert check(*args) is False


def test_link_digest_changes_with_dynlib_exclude(tmp_path: Path, stack_dir: Path) -> None:
    spec = stack_dir / "venvstacks.toml"

    def link_digest() -> Any:
        stack = StackTasks(plan_stack(load_stack_spec(spec)), BuildLayout.for_spec(spec))
        return _by_name(stack.all_tasks())[f"link:{FRAME}"]["uptodate"][0].config

    before = link_digest()
    spec.write_text(spec.read_text().replace(
        'requirements = ["vs-frame"]', 'requirements = ["vs-frame"]\ndynlib_exclude = ["x*"]'
    ))
    assert link_digest() != before


# ---------------------------------------------------------------------------------------------
# run_operation: StackError -> failed task; the stamp is written last
# ---------------------------------------------------------------------------------------------


def test_run_operation_turns_a_stack_error_into_a_failed_task(tmp_path: Path) -> None:
    stamp = tmp_path / "stamps" / "op.json"

    def op(env: str) -> dict[str, Any]:
        raise LockError(env, "uv could not resolve")

    result = run_operation(op, str(stamp), "app-x")
    assert isinstance(result, TaskFailed)
    assert result.get_msg().strip() == "layer app-x: uv could not resolve"
    assert not stamp.exists()


def test_a_failed_operation_keeps_the_previous_stamp(tmp_path: Path) -> None:
    stamp = tmp_path / "op.json"
    stamp.write_text('{"old": 1}\n')

    def op() -> None:
        raise BuildError("app-x", "broken")

    assert isinstance(run_operation(op, str(stamp)), TaskFailed)
    assert stamp.read_text() == '{"old": 1}\n'


def test_other_exceptions_propagate(tmp_path: Path) -> None:
    stamp = tmp_path / "op.json"

    def op() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_operation(op, str(stamp))
    assert not stamp.exists()


def test_run_operation_writes_the_stamp_after_the_operation(tmp_path: Path) -> None:
    stamp = tmp_path / "stamps" / "deep" / "op.json"
    seen: list[bool] = []

    def op(a: int, b: int) -> dict[str, Any]:
        seen.append(stamp.exists())
        return {"sum": a + b, "path": Path("/x"), "nested": {"k": [1]}, "flag": True}

    values = run_operation(op, str(stamp), 1, 2)
    assert seen == [False]
    assert json.loads(stamp.read_text()) == {
        "flag": True, "nested": {"k": [1]}, "path": "/x", "sum": 3,
    }
    assert stamp.read_text().endswith("\n")
    # doit keeps only plain values in its DB.
    assert values == {"sum": 3, "flag": True}


def test_run_operation_without_a_dict_result(tmp_path: Path) -> None:
    stamp = tmp_path / "op.json"
    assert run_operation(lambda: None, str(stamp)) == {"result": "None"}
    assert json.loads(stamp.read_text()) == {"result": "None"}
    assert run_operation(lambda: 5, None) == {"result": "5"}


def _flaky_layer_op(marker: Path, target: Path) -> dict[str, Any]:
    if not marker.exists():
        raise StackError("layer app-x: not this time")
    target.write_text("built")
    return {"built": str(target)}


def test_run_operation_under_doit(tmp_path: Path) -> None:
    marker, target, stamp = tmp_path / "ok", tmp_path / "built", tmp_path / "stamp.json"
    tasks: list[TaskDict] = [
        {
            "basename": "install",
            "name": "app-x",
            "actions": [(run_operation, [_flaky_layer_op, str(stamp), marker, target])],
            "targets": [str(stamp)],
        }
    ]
    db = tmp_path / "tasks.db"
    failed = run_tasks(tasks, ["install:app-x"], db)
    assert failed.code == 1
    assert failed.failures == {"install:app-x": "layer app-x: not this time"}
    assert not stamp.exists()

    marker.write_text("")
    done = run_tasks(tasks, ["install:app-x"], db)
    assert done.code == 0
    assert done.executed == ["install:app-x"]
    assert json.loads(stamp.read_text()) == {"built": str(target)}
    assert f'"built": "{target}"' in db.read_text()
