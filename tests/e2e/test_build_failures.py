"""Builds that fail, are killed, or race: the build dir must stay usable and the cause be clear.

DESIGN §2: a failed task is never up to date, and a half-built environment is never taken for a
good one (environments are built in a `.<env>.new` sibling and renamed into place).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fixtures_stacks import VENVSTACKS, StackProject

pytestmark = pytest.mark.slow

RUNTIME = "cpython-3.11"
BUILD_TASKS = 16  # runtime:, then lock, install and link of the basic stack's five layers


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def build_dir_entries(project: StackProject) -> set[str]:
    return {p.name for p in project.build_dir.iterdir()}


def staging_leftovers(project: StackProject) -> set[str]:
    """Temporary folders of interrupted builds: `.<env>.new`, `.<env>.old`, unpack scratch."""
    found = {
        p.name
        for p in project.build_dir.iterdir()
        if p.name.startswith(".") and p.name.endswith((".new", ".old"))
    }
    runtimes = project.build_dir / ".venvstacks" / "runtimes"
    found |= {p.name for p in runtimes.iterdir() if ".unpacking-" in p.name}
    return found


def python_imports(python: Path, *modules: str) -> dict[str, bool]:
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [str(python), "-c", code, *modules], capture_output=True, text=True, check=True, cwd="/"
    )
    found = json.loads(result.stdout)
    assert isinstance(found, dict)
    return found


def check_apps_run(project: StackProject) -> None:
    assert len(project.run_app("app-a", "app_a").splitlines()) == 6
    assert project.run_app("app-b", "launch_b").split()[0] == "app-b"


# ---------------------------------------------------------------------------------------------
# A layer that fails to install
# ---------------------------------------------------------------------------------------------


def test_failed_install_keeps_the_previous_env_and_says_why(basic_stack: StackProject) -> None:
    basic_stack.build()
    site = basic_stack.build_dir / "app-a" / "lib" / "python3.11" / "site-packages"
    installed = sorted(p.name for p in site.iterdir())
    basic_stack.edit_spec('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-broken"]')

    failed = basic_stack.build(check=False)

    assert failed.returncode == 1
    assert error_lines(failed) == [failed.stderr.splitlines()[-1]], failed.stderr
    (error,) = error_lines(failed)
    assert error.startswith("error: layer app-a: ")
    assert "vs-broken" in error and "The wheel is invalid" in error
    assert "install:app-a" in basic_stack.ran_tasks(failed)
    # The previous environment is untouched, and no staging folder is left behind.
    assert sorted(p.name for p in site.iterdir()) == installed
    check_apps_run(basic_stack)
    assert staging_leftovers(basic_stack) == set()

    # A failed task is never up to date: the same build fails the same way.
    again = basic_stack.build(check=False)
    assert again.returncode == 1 and error_lines(again) == [error]

    basic_stack.edit_spec('requirements = ["vs-app-a", "vs-broken"]', 'requirements = ["vs-app-a"]')
    basic_stack.build()
    check_apps_run(basic_stack)
    assert python_imports(basic_stack.python("app-a"), "vs_broken") == {"vs_broken": False}
    assert staging_leftovers(basic_stack) == set()
    assert basic_stack.ran_tasks(basic_stack.build()) == []


def test_failed_parallel_build_still_says_why(basic_stack: StackProject) -> None:
    basic_stack.build()
    basic_stack.edit_spec('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-broken"]')
    basic_stack.edit_spec('requirements = ["vs-app-b"]', 'requirements = ["vs-app-b", "vs-util"]')
    for _attempt in range(3):
        failed = basic_stack.build("-j", "2", check=False)
        assert failed.returncode == 1
        assert [line.split(":")[1].strip() for line in error_lines(failed)] == ["layer app-a"], (
            failed.stderr
        )


# ---------------------------------------------------------------------------------------------
# A build killed while it installs a layer
# ---------------------------------------------------------------------------------------------


def kill_when_staging(project: StackProject, env: str, timeout: float = 120) -> None:
    """Start a build and SIGKILL it (and its uv children) once it stages `env`."""
    staging = project.build_dir / f".{env}.new"
    argv = [*VENVSTACKS, "build", str(project.spec), "--lock-if-needed", *project.source_options()]
    proc = subprocess.Popen(
        argv,
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not staging.exists():
            assert proc.poll() is None, f"the build ended before it staged {env}"
            assert time.monotonic() < deadline, f"the build did not stage {env}"
            time.sleep(0.001)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_first_build_leaves_no_env_and_the_next_build_repairs_it(
    basic_stack: StackProject,
) -> None:
    kill_when_staging(basic_stack, RUNTIME)

    envs = {name for name in build_dir_entries(basic_stack) if not name.startswith(".")}
    assert envs == set(), "nothing was swapped into place: no environment may exist"

    rebuilt = basic_stack.build()
    assert RUNTIME in " ".join(basic_stack.ran_tasks(rebuilt))
    check_apps_run(basic_stack)
    assert staging_leftovers(basic_stack) == set()
    assert basic_stack.ran_tasks(basic_stack.build()) == []


def test_killed_rebuild_keeps_the_old_env_and_the_next_build_repairs_it(
    basic_stack: StackProject,
) -> None:
    basic_stack.build()
    basic_stack.edit_spec('requirements = ["vs-base"]', 'requirements = ["vs-base", "vs-app-b"]')
    kill_when_staging(basic_stack, RUNTIME)

    # The old runtime environment is still there, whole, and the apps still run from it.
    assert python_imports(basic_stack.python(RUNTIME), "vs_base", "vs_app_b") == {
        "vs_base": True,
        "vs_app_b": False,
    }
    check_apps_run(basic_stack)

    rebuilt = basic_stack.build()
    assert f"install:{RUNTIME}" in basic_stack.ran_tasks(rebuilt)
    assert python_imports(basic_stack.python(RUNTIME), "vs_app_b") == {"vs_app_b": True}
    check_apps_run(basic_stack)
    assert staging_leftovers(basic_stack) == set()
    assert basic_stack.ran_tasks(basic_stack.build()) == []


def test_stale_staging_is_removed_when_its_layer_needs_no_rebuild(
    basic_stack: StackProject,
) -> None:
    basic_stack.build()
    basic_stack.edit_spec('requirements = ["vs-base"]', 'requirements = ["vs-base", "vs-app-b"]')
    kill_when_staging(basic_stack, RUNTIME)
    basic_stack.edit_spec('requirements = ["vs-base", "vs-app-b"]', 'requirements = ["vs-base"]')

    rebuilt = basic_stack.build()
    assert f"install:{RUNTIME}" not in basic_stack.ran_tasks(rebuilt)
    check_apps_run(basic_stack)
    assert staging_leftovers(basic_stack) == set()


# ---------------------------------------------------------------------------------------------
# Two builds of one build dir at once
# ---------------------------------------------------------------------------------------------


def test_two_builds_at_once_take_turns(basic_stack: StackProject) -> None:
    argv = [
        *VENVSTACKS,
        "-v",
        "build",
        str(basic_stack.spec),
        "--lock-if-needed",
        *basic_stack.source_options(),
    ]
    procs = [
        subprocess.Popen(
            argv, cwd=basic_stack.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [subprocess.CompletedProcess(p.args, 0, *p.communicate()) for p in procs]

    for proc, result in zip(procs, results, strict=True):
        assert proc.returncode == 0, result.stderr
    ran = [basic_stack.ran_tasks(result) for result in results]
    # One build did all the work; the other waited for the build dir, then found it done.
    assert sorted(map(len, ran)) == [0, BUILD_TASKS], ran
    waited = [r for r in results if "waiting for venvstacks (pid" in r.stderr]
    assert len(waited) == 1 and basic_stack.ran_tasks(waited[0]) == []
    json.loads((basic_stack.build_dir / ".venvstacks" / "tasks.db").read_text())
    check_apps_run(basic_stack)
    assert basic_stack.ran_tasks(basic_stack.build()) == []


# ---------------------------------------------------------------------------------------------
# User errors: a clear line, exit status 1
# ---------------------------------------------------------------------------------------------


def test_missing_runtime_archive_says_where_to_get_one(
    basic_stack: StackProject, tmp_path: Path
) -> None:
    empty = tmp_path / "no-archives"
    empty.mkdir()
    result = basic_stack.run(
        "build",
        str(basic_stack.spec),
        "--lock-if-needed",
        "--runtime-archives",
        str(empty),
        "--local-wheels",
        str(basic_stack.wheelhouse),
        "--no-index",
        check=False,
        # Never reach the real download site, whatever this machine's network.
        env={"VENVSTACKS_PBS_BASE_URL": "http://127.0.0.1:9/"},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == error_lines(result), result.stderr
    (error,) = error_lines(result)
    assert error.startswith(f"error: layer {RUNTIME}: ")
    # The folder that was given and searched is named, with how to fill it.
    assert "no archive for cpython@" in error
    assert str(empty) in error
    assert "venvstacks runtime pack" in error
    assert not any(not name.startswith(".") for name in build_dir_entries(basic_stack))


def test_conflict_with_a_lower_layer_pin_names_both_layers(basic_stack: StackProject) -> None:
    basic_stack.edit_spec(
        'requirements = ["vs-frame"]', 'requirements = ["vs-frame", "vs-util==2.0"]'
    )
    basic_stack.edit_spec(
        'requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-util==1.0"]'
    )

    result = basic_stack.lock(check=False)

    assert result.returncode == 1
    first = error_lines(result)[0]
    assert first.startswith("error: layer app-a: ")
    assert "framework-frame" in first and "vs-util==2.0" in first, result.stderr
    # The layers below were locked; the failed layer got no lock.
    locks = basic_stack.lock_files()
    assert any(name.startswith("framework-frame/pylock.") for name in locks)
    assert not any(name.startswith("app-a/pylock.") for name in locks)
