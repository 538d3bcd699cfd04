"""End to end: deploy refuses bad input, repairs damaged layers, survives kills and full disks.

One module-scoped basic stack is built and published once (tar.zst); each test deploys into
folders of its own with the real CLI, damages things for real (chmod, symlinks, crafted
metadata and archives, SIGKILL, a small tmpfs) and checks what the CLI says and leaves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack
from fixtures_tmpfs import small_tmpfs

pytestmark = pytest.mark.slow

FMT = "tar.zst"
RUNTIME = "cpython-3.11"


@dataclass
class Published:
    project: StackProject
    artifacts: Path
    base: Path

    def deploy(
        self, target: Path, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.project.run("deploy", str(self.artifacts), str(target), *args, check=check)

    def copy_artifacts(self, name: str) -> Path:
        copy = self.base / name
        shutil.copytree(self.artifacts, copy)
        return copy


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> Published:
    base = tmp_path_factory.mktemp("deploy-robust")
    project = StackProject(base / "stack", runtime_archive_dir, wheelhouse)
    project.root.mkdir()
    write_basic_stack(project, runtime_versions)
    artifacts = base / "artifacts"
    project.run(
        "build", str(project.spec), "--lock-if-needed", *project.source_options(),
        "--publish", "--format", FMT, "--output-dir", str(artifacts),
    )  # fmt: skip
    return Published(project, artifacts, base)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def _runtime_python(deployed: Path) -> Path:
    """The runtime's real interpreter file (bin/python is a symlink chain to it)."""
    return (deployed / RUNTIME / "bin" / "python").resolve()


# ---------------------------------------------------------------------------------------------
# verify sees modes and symlink targets; deploy --repair restores
# ---------------------------------------------------------------------------------------------


def test_verify_flags_modes_and_symlinks_and_repair_restores(published: Published) -> None:
    project = published.project
    deployed = published.base / "repair"
    published.deploy(deployed)
    python = _runtime_python(deployed)
    rel_python = python.relative_to(deployed / RUNTIME).as_posix()
    python.chmod(0o644)
    link = deployed / "app-a" / "bin" / "python_"
    assert link.is_symlink()
    link.unlink()
    link.symlink_to(f"../../{RUNTIME}/bin/python3")
    site = "lib/python3.11/site-packages"
    (deployed / "app-b@1" / site / "helper_b.py").unlink()
    (deployed / "app-b@1" / site / "stray.py").write_text("")
    failed = project.run("run", str(deployed), "a", check=False)
    assert failed.returncode != 0  # the runtime cannot start any more
    result = project.run("verify", str(deployed), check=False)
    _one_error_line(result)
    out = result.stdout.splitlines()
    assert f"  changed: {rel_python} (mode 0644, published 0755)" in out
    assert (
        f"  changed: bin/python_ (symlink to ../../{RUNTIME}/bin/python3, published ../../{RUNTIME}/bin/python)"
        in out
    )
    assert f"  missing: {site}/helper_b.py" in out and f"  added: {site}/stray.py" in out
    # A plain deploy sees by lstat alone (size, mtime, mode; no file read) that the three
    # layers changed since they were deployed, says so, and deploys them again.
    again = published.deploy(deployed)
    assert "(3 updated" in again.stdout
    for target in (RUNTIME, "app-a", "app-b@1"):
        assert f"{target}: " in again.stderr and "changed since it was deployed" in again.stderr
    assert project.run("verify", str(deployed)).returncode == 0
    assert "(0 updated" in published.deploy(deployed).stdout
    # What lstat cannot see (same size, mtime put back; an added file) is verify's and
    # --repair's: they read the contents.
    edited = deployed / RUNTIME / site / "vs_base" / "__init__.py"
    info = edited.stat()
    data = edited.read_bytes()
    edited.write_bytes(bytes([data[0] ^ 0x20]) + data[1:])
    os.utime(edited, ns=(info.st_atime_ns, info.st_mtime_ns))
    (deployed / "app-b@1" / site / "stray.py").write_text("")
    assert "(0 updated" in published.deploy(deployed).stdout
    flagged = project.run("verify", str(deployed), check=False)
    assert flagged.returncode == 1 and f"  changed: {site}/vs_base/__init__.py" in flagged.stdout
    repaired = published.deploy(deployed, "--repair")
    assert "(2 updated" in repaired.stdout
    for target in (RUNTIME, "app-b@1"):
        assert f"repairing {target}" in repaired.stderr and f"repaired {target}" in repaired.stderr
    assert project.run("verify", str(deployed)).returncode == 0
    assert "vs_frame2" in project.run("run", str(deployed), "a").stdout
    assert project.run("run", str(deployed), "b").stdout.split()[-1] == "42"
    assert "(0 updated" in published.deploy(deployed, "--repair").stdout


# ---------------------------------------------------------------------------------------------
# Hostile metadata and archives
# ---------------------------------------------------------------------------------------------


def _rewrite_entry(artifacts: Path, layer: str, **changes: object) -> None:
    manifest = artifacts / "__venvstacks__" / "venvstacks.json"
    data = json.loads(manifest.read_text())
    for entries in data["layers"].values():
        for meta in entries:
            if meta["layer_name"] == layer:
                meta.update(changes)
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", ["../outside/app-a.tar.zst", "/etc/passwd", "sub/../../x.tar.zst"])
def test_archive_names_leaving_the_artifacts_folder_are_refused(
    published: Published, name: str
) -> None:
    artifacts = published.copy_artifacts(f"escape-{abs(hash(name))}")
    outside = artifacts.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(artifacts / f"app-a.{FMT}", outside / f"app-a.{FMT}")
    _rewrite_entry(artifacts, "app-a", archive_name=name)
    target = published.base / f"escape-target-{abs(hash(name))}"
    line = _one_error_line(
        published.project.run("deploy", str(artifacts), str(target), check=False)
    )
    assert "app-a" in line and "archive_name" in line and repr(name) in line
    assert not target.exists()


def test_install_target_must_be_a_folder_name(published: Published) -> None:
    artifacts = published.copy_artifacts("bad-target")
    _rewrite_entry(artifacts, "app-a", install_target="../../evil")
    target = published.base / "bad-target-deployed"
    line = _one_error_line(
        published.project.run("deploy", str(artifacts), str(target), check=False)
    )
    assert "install_target" in line and "app-a" in line
    assert not target.exists()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_a_decompression_bomb_is_refused(published: Published) -> None:
    """A real tar.zst holding a 1 GB file of zeros in a few KB: refused before extraction."""
    import zstandard

    artifacts = published.copy_artifacts("bomb")
    bomb = artifacts / f"app-a.{FMT}"
    with (
        bomb.open("wb") as raw,
        zstandard.ZstdCompressor(level=3).stream_writer(raw) as zst,
        tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in ("app-a", "app-a/share"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("app-a/share/zeros.bin")
        info.size, info.mode = 1 << 30, 0o644
        tar.addfile(info, io.BufferedReader(_Zeros(info.size)))
    size = bomb.stat().st_size
    assert size < 200_000
    digest = hashlib.sha256(bomb.read_bytes()).hexdigest()
    _rewrite_entry(artifacts, "app-a", archive_size=size, archive_hashes={"sha256": digest})
    target = published.base / "bomb-target"
    result = published.project.run("deploy", str(artifacts), str(target), check=False)
    line = _one_error_line(result)
    assert "app-a" in line and "zeros.bin" in line and "declares" in line
    assert not (target / "app-a").exists()
    assert [p.name for p in target.iterdir() if p.name.startswith(".app-a.")] == []


# ---------------------------------------------------------------------------------------------
# Kills and debris
# ---------------------------------------------------------------------------------------------


@contextmanager
def _running(
    project: StackProject, args: list[str], env: Mapping[str, str]
) -> Iterator[subprocess.Popen[str]]:
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [*VENVSTACKS, *args], cwd=project.root, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _kill_at(published: Published, target: Path, point: str) -> None:
    pause = published.base / f"pause-{point}.txt"
    pause.unlink(missing_ok=True)
    env = {"VENVSTACKS_PAUSE_AT": point, "VENVSTACKS_PAUSE_FILE": str(pause)}
    args = ["deploy", str(published.artifacts), str(target)]
    with _running(published.project, args, env) as proc:
        deadline = time.monotonic() + 300
        while not (pause.exists() and pause.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_deploys_leave_debris_that_the_next_deploy_sweeps(published: Published) -> None:
    target = published.base / "killed"
    _kill_at(published, target, "deploy-unpacked")
    scratch = [p for p in target.iterdir() if p.name.startswith(f".{RUNTIME}.")]
    assert scratch, "the killed deploy left its scratch folder"
    _kill_at(published, target, "deploy-extracted")  # the layer is in place, not post-installed
    (target / ".gone-layer.extracting-x1y2z3").mkdir()  # a layer no longer published
    (target / ".notes").mkdir()  # not ours: kept
    result = published.deploy(target)
    assert "Deployed 5 layer(s)" in result.stdout
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == [
        ".notes",
        ".venvstacks-deploy",
    ]
    assert published.project.run("verify", str(target)).returncode == 0
    assert published.project.run("run", str(target), "b").stdout.split()[-1] == "42"


def _wait_for_pause(proc: subprocess.Popen[str], pause: Path) -> None:
    deadline = time.monotonic() + 300
    while not (pause.exists() and pause.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_two_deploys_at_once_take_turns_and_the_second_decides_under_the_lock(
    published: Published,
) -> None:
    """A deploy that waits for another one to release the target decides what to do only once
    it holds the lock: it redoes the layer the other left half-done (killed) and notices a file
    edited while it waited, though its check before waiting saw that layer as deployed."""
    target = published.base / "turns"
    published.deploy(target)
    site = "lib/python3.11/site-packages"
    (target / RUNTIME / site / "vs_base" / "__init__.py").touch()  # the first redeploys it
    pause = published.base / "pause-turns.txt"
    pause.unlink(missing_ok=True)
    env = {"VENVSTACKS_PAUSE_AT": "deploy-extracting", "VENVSTACKS_PAUSE_FILE": str(pause)}
    args = ["deploy", str(published.artifacts), str(target)]
    with _running(published.project, args, env) as first:
        _wait_for_pause(first, pause)  # it holds the lock, the runtime's record is gone
        with _running(published.project, args, {}) as second:
            assert second.stderr is not None
            line = second.stderr.readline()
            assert "waiting for venvstacks (pid" in line, (line, second.communicate())
            (target / "app-a" / site / "vs_app_a" / "__init__.py").write_text("# edited\n")
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "Deployed 5 layer(s)" in out and "(2 updated, 3 unchanged)" in out
    assert "app-a: " in err and "changed since it was deployed" in err
    assert published.project.run("verify", str(target)).returncode == 0
    assert published.project.run("run", str(target), "b").stdout.split()[-1] == "42"
    assert "(0 updated" in published.deploy(target).stdout


# ---------------------------------------------------------------------------------------------
# Out of space
# ---------------------------------------------------------------------------------------------


def test_deploy_into_a_full_disk_names_the_layer_and_path(published: Published) -> None:
    target = published.base / "full"
    with small_tmpfs(target, "20m"):
        line = _one_error_line(published.deploy(target, check=False))
        assert f"layer {RUNTIME}" in line and str(target) in line and "free" in line
        assert [p.name for p in target.iterdir() if p.name != ".venvstacks-deploy"] == []
        subprocess.run(["mount", "-o", "remount,size=400m", str(target)], check=True)
        published.deploy(target)
        assert published.project.run("verify", str(target)).returncode == 0
