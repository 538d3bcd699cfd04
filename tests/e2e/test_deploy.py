"""End to end: deploy published layers with the real CLI, run the apps, move the deployment.

One module-scoped stack (the basic stack plus an `echo` app that prints its arguments and exits
with the status it is given) is built and published once with `build --lock-if-needed --publish`
(tar.zst, the fastest format here). Each test deploys into folders of its own. The test that
edits the stack (an updated layer replaces only itself) comes last.

The deployments are used with the build dir hidden (renamed away while the CLI runs), and the
moved deployment runs inside a private mount namespace (`unshare -m`) where tmpfs mounts hide
the build dir, the runtime archives and every pyenv Python, so the layers can only work from
their own peer folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_runtime import pyenv_versions_dir
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack

pytestmark = pytest.mark.slow

FMT = "tar.zst"
RUNTIME = "cpython-3.11"
TARGETS = ["cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b@1", "app-echo"]
ECHO_APP = """\
import sys
print("args:", sys.argv[1:])
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""
ECHO_LAYER = """
[[applications]]
name = "echo"
runtime = "cpython-3.11"
launch_module = "echo_app.py"
requirements = []
"""


@dataclass
class Published:
    project: StackProject
    artifacts: Path
    base: Path

    def folder(self, name: str) -> Path:
        return self.base / name

    def deploy(
        self, target: Path, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        with build_dir_hidden(self.project):
            return self.project.run("deploy", str(self.artifacts), str(target), *args, check=check)

    def vs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        with build_dir_hidden(self.project):
            return self.project.run(*args, check=check)


@contextmanager
def build_dir_hidden(project: StackProject) -> Iterator[None]:
    """The build dir renamed away (and restored), so nothing can use it by accident."""
    hidden = project.build_dir.with_name("_build.hidden")
    project.build_dir.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(project.build_dir)


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> Published:
    base = tmp_path_factory.mktemp("deploy")
    project = StackProject(base / "stack", runtime_archive_dir, wheelhouse)
    project.root.mkdir()
    write_basic_stack(project, runtime_versions)
    project.write("echo_app.py", ECHO_APP)
    project.spec.write_text(project.spec.read_text() + ECHO_LAYER)
    artifacts = base / "artifacts"
    project.run(
        "build", str(project.spec), "--lock-if-needed", *project.source_options(),
        "--publish", "--format", FMT, "--output-dir", str(artifacts),
    )  # fmt: skip
    return Published(project, artifacts, base)


def _where(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[2] for line in output.splitlines()}


def _check_app_a(output: str, deployed: Path) -> None:
    where = _where(output)
    assert where["vs_app_a"].startswith(f"{deployed}/app-a/lib/python3.11/site-packages/")
    assert where["vs_util"].startswith(f"{deployed}/app-a/lib/python3.11/site-packages/")
    assert where["vs_frame2"].startswith(f"{deployed}/framework-frame2/lib/python3.11/")
    assert where["vs_native"].startswith(f"{deployed}/framework-frame2/lib/python3.11/")
    assert where["vs_frame"].startswith(f"{deployed}/framework-frame/lib/python3.11/")
    assert where["vs_base"].startswith(f"{deployed}/cpython-3.11/lib/python3.11/")


def _check_app_b(output: str, deployed: Path) -> None:
    assert output.split() == [
        "app-b",
        "1.0",
        f"{deployed}/cpython-3.11/lib/python3.11/site-packages/vs_base/__init__.py",
        "42",
    ]


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `folder`: inode, mtime and size (symlinks not followed)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            result[str(path.relative_to(folder))] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return result


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Deploy, run, move
# ---------------------------------------------------------------------------------------------


def _rerun_postinstall(deployed: Path) -> None:
    """What a deployment tool does after moving the folder: runtime first, with its python."""
    python = deployed / RUNTIME / "bin" / "python"
    for target in TARGETS:
        subprocess.run(
            [str(python), str(deployed / target / "postinstall.py")],
            check=True, capture_output=True, text=True, cwd="/",
        )  # fmt: skip


def test_deploy_run_move_and_run_again(published: Published) -> None:
    deployed = published.folder("deployed")
    result = published.deploy(deployed)
    assert (
        f"Deployed {len(TARGETS)} layer(s) into {deployed} ({len(TARGETS)} updated" in result.stdout
    )
    assert sorted(p.name for p in deployed.iterdir()) == sorted([".venvstacks-deploy", *TARGETS])
    _check_app_a(published.vs("run", str(deployed), "a").stdout, deployed)
    _check_app_a(published.vs("run", str(deployed), "app-a").stdout, deployed)
    _check_app_b(published.vs("run", str(deployed), "b").stdout, deployed)
    _check_app_b(published.vs("run", str(deployed), "app-b@1").stdout, deployed)
    echo = published.vs("run", str(deployed), "echo", "--where")
    assert echo.stdout == "args: ['--where']\n"
    cfg = (deployed / "app-a" / "pyvenv.cfg").read_text()
    assert f"home = {deployed}/cpython-3.11/bin\n" in cfg

    moved = published.folder("moved") / "elsewhere"
    moved.parent.mkdir()
    deployed.rename(moved)
    _rerun_postinstall(moved)
    assert f"home = {moved}/cpython-3.11/bin\n" in (moved / "app-a" / "pyvenv.cfg").read_text()
    site = moved / "app-a" / "lib" / "python3.11" / "site-packages" / "sitecustomize.py"
    assert str(deployed) + "/" not in site.read_text()
    _check_app_a(published.vs("run", str(moved), "a").stdout, moved)
    _check_app_b(published.vs("run", str(moved), "b").stdout, moved)
    assert published.vs("run", str(moved), "echo").stdout == "args: []\n"
    assert published.vs("verify", str(moved)).returncode == 0


def _can_hide_with_tmpfs(probe: Path) -> str | None:
    """None when `unshare -m` + a tmpfs mount works here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && test -z "$(ls -A "$0")"', str(probe)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return f"unshare -m + mount tmpfs not permitted: {result.stderr.strip()[:200]}"
    return None


def test_moved_deployment_needs_no_build_dir_and_no_host_python(published: Published) -> None:
    """Post-install and the apps in a mount namespace without the build dir or pyenv's Pythons."""
    project = published.project
    deployed = published.folder("deployed-for-hiding")
    published.deploy(deployed)
    moved = published.folder("moved-hidden") / "stack"
    moved.parent.mkdir()
    deployed.rename(moved)
    pyenv = pyenv_versions_dir()
    hide = [project.build_dir, project.runtime_archives]
    if pyenv is not None:
        hide.append(pyenv)
    reason = _can_hide_with_tmpfs(project.build_dir)
    if reason is not None:
        pytest.skip(reason)
    python = moved / RUNTIME / "bin" / "python"
    script = "\n".join(
        [
            "set -eu",
            *(f"mount -t tmpfs tmpfs '{path}'" for path in hide),
            *(f"test -z \"$(ls -A '{path}')\"" for path in hide),
            *(f"'{python}' '{moved / target / 'postinstall.py'}'" for target in TARGETS),
            "echo ---app-a",
            f"'{moved}/app-a/bin/python' -m app_a",
            "echo ---app-b",
            f"'{moved}/app-b@1/bin/python' -m launch_b",
            "echo ---sys",
            f"'{moved}/app-a/bin/python' -c 'import sys; print(sys.base_prefix); print(sys.executable)'",
        ]
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    _, app_a, app_b, sys_info = result.stdout.split("---")
    _check_app_a(app_a.removeprefix("app-a\n"), moved)
    _check_app_b(app_b.removeprefix("app-b\n"), moved)
    base_prefix, executable = sys_info.removeprefix("sys\n").split()
    assert base_prefix == str(moved / RUNTIME)
    assert executable == str(moved / "app-a" / "bin" / "python")
    if pyenv is None:
        pytest.skip("pyenv not found: only the build dir and runtime archives were hidden")


# ---------------------------------------------------------------------------------------------
# Incremental deploys, --include, verify
# ---------------------------------------------------------------------------------------------


STEPS = ("verify", "extract", "compile", "postinstall")


def test_deploy_reports_each_step_and_keeps_stdout_one_json_document(published: Published) -> None:
    """`-v` names every step of every layer on stderr; `--json` keeps stdout one document."""
    deployed = published.folder("steps")
    with build_dir_hidden(published.project):
        first = published.project.run(
            "-v", "deploy", str(published.artifacts), str(deployed), "--json"
        )
        again = published.project.run(
            "-v", "deploy", str(published.artifacts), str(deployed), "--json"
        )
    assert sorted(json.loads(first.stdout)["layers"]) == sorted(TARGETS)
    # (found anywhere: lines printed by parallel tasks at the same instant may share a line)
    done = set(re.findall(r"ok  (\S+) \(", first.stderr))
    assert {f"{step}:{t}" for step in STEPS for t in TARGETS} <= done
    assert sorted(json.loads(again.stdout)["layers"]) == sorted(TARGETS)
    assert re.findall(r"ok  (\S+) \(", again.stderr) == []


def test_deploy_on_a_terminal_shows_a_table_of_steps(published: Published) -> None:
    """On a terminal (a real pseudo-terminal), deploy draws build's live table: a row per
    layer, a column per step; stdout is not the terminal here and holds the summary only."""
    import pty

    deployed = published.folder("tty")
    master, slave = pty.openpty()
    env = {**os.environ, **published.project.env, "COLUMNS": "160", "TERM": "xterm"}
    env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
    with build_dir_hidden(published.project):
        proc = subprocess.Popen(
            [*VENVSTACKS, "deploy", str(published.artifacts), str(deployed)],
            cwd=published.project.root, env=env, stdout=subprocess.PIPE, stderr=slave,
            text=True,
        )  # fmt: skip
        os.close(slave)
        screen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            screen += chunk
        stdout, _ = proc.communicate()
        os.close(master)
    assert proc.returncode == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    header = next(line for line in text.splitlines() if "verify" in line)
    assert [header.index(step) for step in STEPS] == sorted(header.index(s) for s in STEPS)
    for target in TARGETS:
        assert target in text
    assert "✓" in text
    assert stdout.startswith(f"Deployed {len(TARGETS)} layer(s)")


def test_include_then_full_then_unchanged(published: Published) -> None:
    deployed = published.folder("partial")
    result = published.deploy(deployed, "--include", "app-a")
    assert "Deployed 4 layer(s)" in result.stdout and "(4 updated, 0 unchanged)" in result.stdout
    assert sorted(p.name for p in deployed.iterdir()) == sorted(
        [".venvstacks-deploy", "cpython-3.11", "framework-frame", "framework-frame2", "app-a"]
    )
    _check_app_a(published.vs("run", str(deployed), "a").stdout, deployed)
    before = _snapshot(deployed / RUNTIME)
    result = published.deploy(deployed)
    assert f"Deployed {len(TARGETS)} layer(s)" in result.stdout
    assert "(2 updated, 4 unchanged)" in result.stdout
    assert _snapshot(deployed / RUNTIME) == before
    result = published.deploy(deployed)
    assert f"(0 updated, {len(TARGETS)} unchanged)" in result.stdout
    assert _snapshot(deployed / RUNTIME) == before
    # The same archives from a copy of the artifacts folder are the same layers: nothing to do.
    copy = published.folder("artifacts-copy")
    shutil.copytree(published.artifacts, copy)
    with build_dir_hidden(published.project):
        again = published.project.run("deploy", str(copy), str(deployed))
    assert f"(0 updated, {len(TARGETS)} unchanged)" in again.stdout


def test_verify_reports_changed_missing_and_added_files(published: Published) -> None:
    deployed = published.folder("verified")
    published.deploy(deployed, "--include", "app-b*")
    clean = published.vs("verify", str(deployed))
    assert sorted(clean.stdout.splitlines()) == ["app-b@1: ok", "cpython-3.11: ok"]
    site = "lib/python3.11/site-packages"
    changed = deployed / RUNTIME / site / "vs_base" / "__init__.py"
    changed.write_text(changed.read_text() + "# local edit\n")
    missing = deployed / "app-b@1" / site / "helper_b.py"
    missing.unlink()
    (deployed / "app-b@1" / site / "stray.py").write_text("")
    result = published.vs("verify", str(deployed), check=False)
    line = _one_error_line(result)
    assert "2 deployed layer(s) differ" in line
    out = result.stdout.splitlines()
    assert "cpython-3.11: DIFFERS" in out
    assert f"  changed: {site}/vs_base/__init__.py" in out
    assert "app-b@1: DIFFERS" in out
    assert f"  missing: {site}/helper_b.py" in out
    assert f"  added: {site}/stray.py" in out


# ---------------------------------------------------------------------------------------------
# Hostile and mistaken input: one error line, nothing changed
# ---------------------------------------------------------------------------------------------


def _tampered_artifacts(published: Published, name: str, archive: str) -> Path:
    copy = published.folder(name)
    shutil.copytree(published.artifacts, copy)
    path = copy / archive
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return copy


def test_tampered_archive_changes_nothing(published: Published) -> None:
    artifacts = _tampered_artifacts(published, "tampered", f"app-b@1.{FMT}")
    project = published.project
    # An existing deployment that lacks the tampered layer.
    deployed = published.folder("tamper-target")
    published.deploy(deployed, "--include", "app-a")
    before = _snapshot(deployed)
    with build_dir_hidden(project):
        result = project.run("deploy", str(artifacts), str(deployed), check=False)
    line = _one_error_line(result)
    assert f"app-b@1.{FMT}" in line and "sha256" in line
    assert _snapshot(deployed) == before
    # A fresh target is not even created: every archive is checked before anything is written.
    fresh = published.folder("tamper-fresh")
    with build_dir_hidden(project):
        result = project.run("deploy", str(artifacts), str(fresh), check=False)
    _one_error_line(result)
    assert not fresh.exists()


def test_manifest_naming_a_missing_archive(published: Published) -> None:
    artifacts = published.folder("no-archives")
    shutil.copytree(published.artifacts / "__venvstacks__", artifacts / "__venvstacks__")
    target = published.folder("no-archives-target")
    line = _one_error_line(published.vs("deploy", str(artifacts), str(target), check=False))
    assert f"{RUNTIME}.{FMT}" in line
    assert not target.exists()


def test_foreign_folder_with_a_layer_name_is_not_replaced(published: Published) -> None:
    target = published.folder("foreign")
    user_data = target / "framework-frame" / "notes.txt"
    user_data.parent.mkdir(parents=True)
    user_data.write_text("precious\n")
    before = _snapshot(target)
    line = _one_error_line(published.deploy(target, check=False))
    assert str(target / "framework-frame") in line
    assert "not a deployed venvstacks layer" in line and "refusing" in line
    assert user_data.read_text() == "precious\n"
    assert _snapshot(target) == before


def test_deploy_from_a_folder_without_manifest(published: Published) -> None:
    empty = published.folder("not-artifacts")
    empty.mkdir()
    target = published.folder("never")
    line = _one_error_line(published.project.run("deploy", str(empty), str(target), check=False))
    assert "__venvstacks__/venvstacks.json" in line
    assert not target.exists()


def test_run_unknown_app_and_argument_passthrough(published: Published) -> None:
    deployed = published.folder("runner")
    published.deploy(deployed, "--include", "app-echo", "--include", "app-a")
    line = _one_error_line(published.vs("run", str(deployed), "nope", check=False))
    assert "'nope'" in line and "deployed applications: a, echo" in line
    assert "deployment.json" in line
    result = published.vs("run", str(deployed), "echo", "7", "--flag", "a b", "-v", check=False)
    assert result.returncode == 7
    assert result.stdout.strip() == "args: ['7', '--flag', 'a b', '-v']"
    result = published.vs("run", str(deployed), "app-echo")
    assert result.stdout.strip() == "args: []"
    line = _one_error_line(published.vs("run", str(published.folder("nowhere")), "a", check=False))
    assert "nothing has been deployed" in line


def test_run_by_name_picks_the_newest_deployed_version(tmp_path: Path) -> None:
    """With app-x@9 and app-x@10 both deployed, `run TARGET x` is @10, not the last key."""
    from venvstacks.deploy.deployment import STATE_DIR, find_app

    record = {
        f"app-x@{n}": {
            "category": "applications",
            "layer_name": "app-x",
            "install_target": f"app-x@{n}",
            "lock_version": n,
            "app_launch_module": f"launch_{n}",
        }
        for n in (9, 10, 2)
    }
    state = tmp_path / STATE_DIR / "deployment.json"
    state.parent.mkdir()
    state.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for name in ("x", "app-x"):
        assert find_app(tmp_path, name) == (tmp_path / "app-x@10", "launch_10")
    assert find_app(tmp_path, "app-x@9") == (tmp_path / "app-x@9", "launch_9")


# ---------------------------------------------------------------------------------------------
# An updated layer replaces only itself (edits the stack: keep it last)
# ---------------------------------------------------------------------------------------------


def test_updated_layer_replaces_only_itself(published: Published) -> None:
    project = published.project
    deployed = published.folder("updated")
    published.deploy(deployed)
    others = {t: _snapshot(deployed / t) for t in TARGETS if t != "app-a"}
    probe = deployed / "app-a" / "lib" / "python3.11" / "site-packages" / "app_a.py"
    old_probe = probe.stat().st_ino
    project.write("app_a.py", (project.root / "app_a.py").read_text() + "print('updated')\n")
    project.run(
        "build", str(project.spec), *project.source_options(),
        "--publish", "--format", FMT, "--output-dir", str(published.artifacts),
    )  # fmt: skip
    meta = json.loads(
        (published.artifacts / "__venvstacks__" / "env_metadata" / "app-a.json").read_text()
    )
    assert meta["archive_build"] == 2
    result = published.deploy(deployed)
    assert f"(1 updated, {len(TARGETS) - 1} unchanged)" in result.stdout
    assert {t: _snapshot(deployed / t) for t in others} == others
    assert probe.stat().st_ino != old_probe
    output = published.vs("run", str(deployed), "a").stdout
    assert output.splitlines()[-1] == "updated"
    _check_app_a("\n".join(output.splitlines()[:-1]), deployed)
    assert published.vs("verify", str(deployed)).returncode == 0
