"""The layer cache through the installed CLI: reverts and second build dirs run no uv at all.

uv runs are counted from `-vv` output, where `proc.run_checked` logs every command it starts
(`running: <argv>`): every uv lock, export and pip sync goes through it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow

ALL_ENVS = ["app-a", "app-b", "cpython-3.11", "framework-frame", "framework-frame2"]
FRAME_REQS = 'requirements = ["vs-frame"]'
FRAME_PINNED = 'requirements = ["vs-frame", "vs-util==1.0"]'


def build(project: StackProject, *args: str) -> subprocess.CompletedProcess[str]:
    return project.run(
        "-vv", "build", str(project.spec), "--lock-if-needed", *project.source_options(), *args
    )


def _commands(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    # Progress lines from other threads may share a line with a log record: search, not match.
    return [
        line.split("running: ", 1)[1].split()
        for line in result.stderr.splitlines()
        if "running: " in line
    ]


def uv_runs(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The uv commands a `-vv` run started: `lock --project`, `pip sync`, ..."""
    return [" ".join(argv[1:3]) for argv in _commands(result) if Path(argv[0]).name == "uv"]


def synced_layers(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Layers whose lock `uv pip sync` installed (named by the lock file's folder)."""
    return sorted(
        Path(argv[-1]).parent.name
        for argv in _commands(result)
        if Path(argv[0]).name == "uv" and argv[1:3] == ["pip", "sync"]
    )


def app_output(project: StackProject, build_dir: Path) -> str:
    out = subprocess.run(
        [str(build_dir / "app-a" / "bin" / "python"), "-m", "app_a"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return out.stdout


def test_revert_runs_no_uv_and_restores_the_same_layers(basic_stack: StackProject) -> None:
    first = build(basic_stack)
    assert sorted(synced_layers(first)) == ALL_ENVS
    original_locks = basic_stack.lock_files()
    original_app = app_output(basic_stack, basic_stack.build_dir)

    basic_stack.edit_spec(FRAME_REQS, FRAME_PINNED)
    changed = build(basic_stack)
    assert synced_layers(changed) == ["app-a", "framework-frame"]  # frame2's lock is unchanged
    assert "vs_util 1.0" in app_output(basic_stack, basic_stack.build_dir)

    basic_stack.edit_spec(FRAME_PINNED, FRAME_REQS)
    report_file = basic_stack.root / "report.json"
    reverted = build(basic_stack, "--report", str(report_file))
    assert uv_runs(reverted) == [], reverted.stderr
    report = json.loads(report_file.read_text())["layers"]
    assert report["framework-frame"]["lock"] == "cache-hit"
    assert report["framework-frame"]["env"] == "cache-hit"
    assert report["app-a"]["env"] == "cache-hit"
    assert report["app-b"]["env"] == "up-to-date"
    # The doit DB still decides what is due: the reverted layers' tasks ran (from the cache).
    ran = basic_stack.ran_tasks(reverted)
    assert {
        "lock:framework-frame",
        "install:framework-frame",
        "install:app-a",
    } <= set(ran)
    assert "install:app-b" not in ran
    assert "restored from the layer cache" in reverted.stderr
    assert app_output(basic_stack, basic_stack.build_dir) == original_app
    # The restored locks are the originals, byte for byte (apart from when they were locked).
    for name, data in basic_stack.lock_files().items():
        if name.endswith(".toml"):
            assert data == original_locks[name], name


def test_second_build_dir_restores_every_layer(basic_stack: StackProject, tmp_path: Path) -> None:
    build(basic_stack)
    other = tmp_path / "elsewhere" / "_build2"
    second = build(basic_stack, "--build-dir", str(other))
    assert uv_runs(second) == [], second.stderr
    out = app_output(basic_stack, other)
    assert str(other) in out and str(basic_stack.build_dir) not in out
    # Nothing restored into the second build dir points back at the first one.
    for cfg in other.glob("*/pyvenv.cfg"):
        assert str(basic_stack.build_dir) not in cfg.read_text(), cfg
    for link in other.rglob("*"):
        if link.is_symlink():
            assert str(basic_stack.build_dir) not in str(link.readlink()), link
    # Deleting the first build dir breaks nothing in the second.
    shutil.rmtree(basic_stack.build_dir)
    assert app_output(basic_stack, other) == out


def test_second_stack_with_an_identical_layer_reuses_it(
    stack_project: StackProject, tmp_path: Path, runtime_versions: dict[str, str]
) -> None:
    spec = f"""\
        [[runtimes]]
        name = "cpython-3.11"
        python_implementation = "cpython@{runtime_versions["3.11"]}"
        requirements = ["vs-base"]
        platforms = ["linux_x86_64"]

        [[frameworks]]
        name = "frame"
        runtime = "cpython-3.11"
        requirements = ["vs-frame"]
        """
    stack_project.write("venvstacks.toml", spec)
    build(stack_project)
    twin = StackProject(tmp_path / "twin", stack_project.runtime_archives, stack_project.wheelhouse)
    twin.write("venvstacks.toml", spec)
    result = build(twin)
    assert uv_runs(result) == [], result.stderr
    python = twin.build_dir / "framework-frame" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import vs_frame; print(vs_frame.where())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith(str(twin.build_dir / "framework-frame"))


def test_no_layer_cache_builds_everything(basic_stack: StackProject, tmp_path: Path) -> None:
    build(basic_stack)
    other = tmp_path / "_build_nocache"
    result = build(basic_stack, "--build-dir", str(other), "--no-layer-cache")
    assert synced_layers(result) == ALL_ENVS, result.stderr


def test_cache_commands(basic_stack: StackProject, isolated_layer_cache: Path) -> None:
    build(basic_stack)
    info = json.loads(basic_stack.run("cache", "info", "--json").stdout)
    assert info["location"] == str(isolated_layer_cache)
    assert info["entries"] == 10  # 5 locks + 5 environments
    assert info["size"] > 0
    text = basic_stack.run("cache", "info").stdout
    assert f"location: {isolated_layer_cache}" in text and "entries:  10" in text
    listed = json.loads(basic_stack.run("cache", "list", "--json").stdout)
    assert sorted((e["kind"], e["layer"]) for e in listed if e["kind"] == "env") == [
        ("env", name) for name in ALL_ENVS
    ]
    frame_env = next(e for e in listed if e["kind"] == "env" and e["layer"] == "framework-frame")
    detail = json.loads(
        basic_stack.run("cache", "info", frame_env["digest"][7:19], "--json").stdout
    )
    assert detail["inputs"]["layer"] == "framework-frame"
    assert detail["inputs"]["lower"][0][0] == "cpython-3.11"
    missing = basic_stack.run("cache", "info", "0000beef", check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no cache entry matches")

    pruned = json.loads(basic_stack.run("cache", "prune", "--max-size", "0", "--json").stdout)
    assert len(pruned["removed"]) == 10 and pruned["entries"] == 0
    assert json.loads(basic_stack.run("cache", "info", "--json").stdout)["entries"] == 0
    usage = basic_stack.run("cache", "prune", check=False)
    assert usage.returncode == 2


def _start_build(project: StackProject, cache_dir: Path, *args: str) -> subprocess.Popen[str]:
    import os
    import sys

    env = {**os.environ, "VENVSTACKS_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "venvstacks",
            "-vv",
            "build",
            str(project.spec),
            "--lock-if-needed",
            *project.source_options(),
            *args,
        ],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _check_every_entry(cache_dir: Path) -> int:
    from venvstacks.cache.store import LayerCache

    cache = LayerCache(cache_dir)
    entries = cache.entries()
    for entry in entries:
        assert cache.lookup(entry.kind, entry.digest) is not None, entry.folder
    return len(entries)


def test_two_builds_at_once_share_one_cache(basic_stack: StackProject, tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    twin = StackProject(tmp_path / "twin", basic_stack.runtime_archives, basic_stack.wheelhouse)
    twin.write("venvstacks.toml", basic_stack.spec.read_text())
    for name in ("app_a.py", "helper_b.py", "launch_b/__init__.py", "launch_b/__main__.py"):
        twin.write(name, (basic_stack.root / name).read_text())
    runs = [_start_build(p, shared) for p in (basic_stack, twin)]
    for run in runs:
        _out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
    assert _check_every_entry(shared) == 10
    for project in (basic_stack, twin):
        assert "vs_app_a" in app_output(project, project.build_dir)
    third = _start_build(basic_stack, shared, "--build-dir", str(tmp_path / "third"))
    _, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert uv_runs(subprocess.CompletedProcess([], 0, "", err)) == []


def test_killed_builds_leave_no_damaged_entry(basic_stack: StackProject, tmp_path: Path) -> None:
    import os
    import signal
    import time

    shared = tmp_path / "shared-cache"
    for n, delay in enumerate((2.0, 4.0, 6.0)):
        run = _start_build(basic_stack, shared, "--build-dir", str(tmp_path / f"b{n}"))
        time.sleep(delay)
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        _check_every_entry(shared)
    final = _start_build(basic_stack, shared)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    assert _check_every_entry(shared) == 10
    assert "vs_app_a" in app_output(basic_stack, basic_stack.build_dir)
    leftovers = shared / "v1" / "tmp"
    subprocess.run(
        [*__import__("fixtures_stacks").VENVSTACKS, "cache", "prune", "--older-than", "1000"],
        env={**os.environ, "VENVSTACKS_CACHE_DIR": str(shared)},
        check=True,
        capture_output=True,
    )
    assert not leftovers.exists() or list(leftovers.iterdir()) == []
