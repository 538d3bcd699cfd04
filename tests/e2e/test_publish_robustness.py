"""End to end: publish survives partial runs, kills, damaged archives and full disks.

One module-scoped basic stack is built once; every test publishes it (tar.zst, the fastest
format) into output folders of its own with the real CLI. Kills are real SIGKILLs: the CLI is
stopped at named points (``VENVSTACKS_PAUSE_AT``, see ``venvstacks.publish.crashpoints``) or
after a delay, then killed, and an independent checker (below, written from the documented
guarantee, not from the product's code) checks the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack
from fixtures_tmpfs import small_tmpfs

pytestmark = pytest.mark.slow

FMT = "tar.zst"
LAYERS = ("cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b")
TARGETS = {env: env for env in LAYERS} | {"app-b": "app-b@1"}


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> StackProject:
    base = tmp_path_factory.mktemp("robust")
    project = StackProject(base / "stack", runtime_archive_dir, wheelhouse)
    project.root.mkdir()
    write_basic_stack(project, runtime_versions)
    project.run("build", str(project.spec), "--lock-if-needed", *project.source_options())
    return project


def publish(
    project: StackProject,
    out: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return project.run(
        "publish", str(project.spec), "--format", FMT, "--output-dir", str(out), *args,
        check=check, env=env,
    )  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_invariant(out: Path) -> dict[str, dict[str, object]]:
    """Every archive that any metadata file names exists with the recorded size and sha256.

    Returns the manifest's entries by layer name.
    """
    meta_dir = out / "__venvstacks__"
    entries: list[tuple[Path, dict[str, object]]] = []
    for path in [*meta_dir.glob("*.json"), *meta_dir.glob("env_metadata/*.json")]:
        data = json.loads(path.read_text())  # never half-written: must parse
        if "layers" in data:
            entries += [(path, m) for c in data["layers"].values() for m in c]
        else:
            entries.append((path, data))
    for path, meta in entries:
        archive = out / str(meta["archive_name"])
        assert archive.is_file(), f"{path.name} names missing {archive.name}"
        assert archive.stat().st_size == meta["archive_size"], f"{path.name}: {archive.name} size"
        hashes = meta["archive_hashes"]
        assert isinstance(hashes, dict)
        assert sha256(archive) == hashes["sha256"], f"{path.name}: {archive.name} sha256"
    manifest = meta_dir / "venvstacks.json"
    if not manifest.exists():
        return {}
    layers = json.loads(manifest.read_text())["layers"]
    return {str(m["layer_name"]): m for c in layers.values() for m in c}


def debris(out: Path) -> list[str]:
    """What a finished publish must not leave: partial or transitional archives, temp files."""
    found = [p.name for p in out.iterdir() if p.name.endswith(".partial") or "~" in p.name]
    meta = out / "__venvstacks__"
    found += [p.name for p in meta.rglob(".*.tmp")] if meta.exists() else []
    return found


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@contextmanager
def running(
    project: StackProject, args: list[str], env: Mapping[str, str]
) -> Iterator[subprocess.Popen[str]]:
    full_env = {**os.environ, **project.env, **env}
    full_env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
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


def kill_at(project: StackProject, args: list[str], point: str, pause_file: Path) -> bool:
    """Run the CLI until it stops at `point`, then SIGKILL it; False if it finished first."""
    pause_file.unlink(missing_ok=True)
    env = {"VENVSTACKS_PAUSE_AT": point, "VENVSTACKS_PAUSE_FILE": str(pause_file)}
    with running(project, args, env) as proc:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if pause_file.exists() and pause_file.read_text().strip():
                time.sleep(0.05)  # the SIGSTOP follows the write at once
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {point}")


def kill_after(project: StackProject, args: list[str], seconds: float) -> bool:
    with running(project, args, {}) as proc:
        try:
            proc.wait(timeout=seconds)
            return False
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True


def publish_args(project: StackProject, out: Path, *extra: str) -> list[str]:
    return ["publish", str(project.spec), "--format", FMT, "--output-dir", str(out), *extra]


def builds(out: Path) -> dict[str, object]:
    return {env: meta["archive_build"] for env, meta in check_invariant(out).items()}


# ---------------------------------------------------------------------------------------------
# Partial publishes
# ---------------------------------------------------------------------------------------------


def test_partial_publish_keeps_the_other_layers_in_the_manifest(built: StackProject) -> None:
    out = built.root.parent / "partial"
    publish(built, out)
    full = check_invariant(out)
    assert sorted(full) == sorted(LAYERS)
    result = publish(built, out, "--include", "app-a", "--compression-level", "5")
    after = check_invariant(out)
    assert sorted(after) == sorted(LAYERS)  # 0.8.0 listed app-a only
    assert after["app-a"]["archive_build"] == 2
    assert {k: v for k, v in after.items() if k != "app-a"} == {
        k: v for k, v in full.items() if k != "app-a"
    }
    manifest = (out / "__venvstacks__" / "venvstacks.json").read_text(encoding="utf-8")
    assert '"app-b@1.tar.zst"' in manifest, result.stdout
    deployed = built.root.parent / "partial-deployed"
    built.run("deploy", str(out), str(deployed))
    assert built.run("run", str(deployed), "b").stdout.split()[-1] == "42"
    assert built.run("verify", str(deployed)).returncode == 0


def test_partial_local_export_keeps_the_other_layers_in_the_manifest(built: StackProject) -> None:
    out = built.root.parent / "export"
    built.run("local-export", str(built.spec), "--output-dir", str(out))
    manifest = out / "__venvstacks__" / "venvstacks.json"
    full = json.loads(manifest.read_text())
    built.run("local-export", str(built.spec), "--output-dir", str(out), "--include", "app-a")
    assert json.loads(manifest.read_text()) == full
    assert sum(len(c) for c in full["layers"].values()) == len(LAYERS)


def test_deploy_of_a_0_8_style_partial_manifest_uses_layer_metadata(built: StackProject) -> None:
    out = built.root.parent / "old-partial"
    publish(built, out)
    manifest = out / "__venvstacks__" / "venvstacks.json"
    data = json.loads(manifest.read_text())
    for category in ("runtimes", "frameworks"):
        data["layers"][category] = []
    data["layers"]["applications"] = [
        m for m in data["layers"]["applications"] if m["layer_name"] == "app-a"
    ]
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    deployed = built.root.parent / "old-partial-deployed"
    result = built.run("deploy", str(out), str(deployed))
    assert "Deployed 4 layer(s)" in result.stdout
    assert "vs_frame2" in built.run("run", str(deployed), "a").stdout
    # A layer that is truly missing is named, in one line, with the layer that needs it.
    (out / "__venvstacks__" / "env_metadata" / "framework-frame.json").unlink()
    line = _one_error_line(
        built.run("deploy", str(out), str(built.root.parent / "never"), check=False)
    )
    assert "framework-frame" in line and "needs" in line
    assert not (built.root.parent / "never").exists()


# ---------------------------------------------------------------------------------------------
# Kills at any instant
# ---------------------------------------------------------------------------------------------

POINTS = (
    "archive-started",
    "archive-written",
    "commit-locked",
    "transitional-renamed",
    "layer-metadata-written",
    "transitional-published",
    "final-replaced",
    "final-published",
)


def test_sigkill_at_every_publish_step_keeps_the_output_consistent(built: StackProject) -> None:
    out = built.root.parent / "killed"
    pause = built.root.parent / "pause.txt"
    # First publish into an empty folder, killed where the first archive is renamed in.
    assert kill_at(built, publish_args(built, out), "archive-renamed", pause)
    check_invariant(out)
    publish(built, out)
    assert sorted(check_invariant(out)) == sorted(LAYERS)
    killed = []
    level = 1
    for point in POINTS:
        # Each round changes every archive's bytes (another compression level), so that each
        # layer goes through the switch from its old archive to a new one of the same name.
        level = 2 if level == 1 else 1
        args = publish_args(built, out, "--compression-level", str(level))
        if kill_at(built, args, point, pause):
            killed.append(point)
        check_invariant(out)  # whatever instant it died at
    assert killed == list(POINTS), "every point was reached"
    for seconds in (0.8, 1.5, 2.5, 4.0):
        level = 2 if level == 1 else 1
        kill_after(built, publish_args(built, out, "--compression-level", str(level)), seconds)
        check_invariant(out)
    # The next publish repairs: every layer listed, nothing left behind, the apps deploy.
    publish(built, out, "--compression-level", "3")
    final = check_invariant(out)
    assert sorted(final) == sorted(LAYERS)
    assert {m["archive_name"] for m in final.values()} == {f"{t}.{FMT}" for t in TARGETS.values()}
    assert debris(out) == []
    deployed = built.root.parent / "killed-deployed"
    built.run("deploy", str(out), str(deployed))
    assert built.run("run", str(deployed), "b").stdout.split()[-1] == "42"


def test_leftover_partials_are_swept_but_not_a_live_writers(built: StackProject) -> None:
    out = built.root.parent / "debris"
    publish(built, out)
    stale = out / ".app-a.tar.zst.abcd1234.partial"
    stale.write_bytes(b"x" * 1000)
    held = out / ".app-b@1.tar.zst.live0000.partial"
    import fcntl

    with held.open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        publish(built, out)
        assert not stale.exists()
        assert held.exists()  # another process is writing it
    publish(built, out)
    assert not held.exists()
    assert debris(out) == []


# ---------------------------------------------------------------------------------------------
# Damaged archives; archive_build counts real changes
# ---------------------------------------------------------------------------------------------


def test_damaged_archives_are_rewritten_and_builds_count_real_changes(built: StackProject) -> None:
    out = built.root.parent / "damaged"
    publish(built, out)
    good = {p.name: sha256(p) for p in out.glob(f"*.{FMT}")}
    first = builds(out)
    flipped = out / f"framework-frame.{FMT}"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated = out / f"app-a.{FMT}"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    again = built.run("-v", *publish_args(built, out))
    assert sorted(built.ran_tasks(again)) == ["archive:app-a", "archive:framework-frame"]
    assert {p.name: sha256(p) for p in out.glob(f"*.{FMT}")} == good
    assert builds(out) == first
    # --force and a clean rebuild reproduce the same bytes: archive_build stays.
    forced = built.run("-v", *publish_args(built, out, "--force"))
    assert len(built.ran_tasks(forced)) == len(LAYERS)
    assert builds(out) == first
    built.run(
        "build", str(built.spec), "--clean", "--include", "app-a", *built.source_options(),
        "--publish", "--format", FMT, "--output-dir", str(out),
    )  # fmt: skip
    assert builds(out) == first
    assert {p.name: sha256(p) for p in out.glob(f"*.{FMT}")} == good


# ---------------------------------------------------------------------------------------------
# --dry-run
# ---------------------------------------------------------------------------------------------


def _dry_run_manifest(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Archive creation skipped")
    data = json.loads("\n".join(lines[1:-1]))
    assert isinstance(data, dict)
    return data


def _without_archive_facts(manifest: Mapping[str, object]) -> dict[str, object]:
    layers = manifest["layers"]
    assert isinstance(layers, dict)
    return {
        "layers": {
            c: [
                {k: v for k, v in m.items() if k not in ("archive_size", "archive_hashes")}
                for m in ms
            ]
            for c, ms in layers.items()
        }
    }


def test_dry_run_prints_the_manifest_a_real_publish_writes(built: StackProject) -> None:
    out = built.root.parent / "dry"
    for args in ([], ["--compression-level", "7"], ["--include", "app-a"], []):
        planned = _dry_run_manifest(publish(built, out, "--dry-run", *args))
        for entries in planned["layers"].values():  # type: ignore[union-attr]
            for meta in entries:
                assert {"archive_build", "archive_name", "target_platform"} <= set(meta)
                assert not {"archive_size", "archive_hashes"} & set(meta)
        publish(built, out, *args)
        written = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
        assert planned == _without_archive_facts(written), args
    assert builds(out)["app-a"] == 3  # levels 3 -> 7 -> 3 (the include run changed nothing)


# ---------------------------------------------------------------------------------------------
# Out of space
# ---------------------------------------------------------------------------------------------


def test_publish_into_a_full_disk_names_the_layer_and_path_and_recovers(
    built: StackProject,
) -> None:
    out = built.root.parent / "full"
    with small_tmpfs(out, "3m"):
        result = publish(built, out, "--format", "tar.gz", check=False)
        line = _one_error_line(result)
        assert "No space left on device" in line
        assert "layer " in line and str(out) in line
        check_invariant(out) if (out / "__venvstacks__").exists() else None
        assert [p.name for p in out.iterdir() if p.name.endswith(".partial")] == []
        # Room again (a bigger file system in its place): the next publish completes.
        subprocess.run(["mount", "-o", "remount,size=200m", str(out)], check=True)
        publish(built, out, "--format", "tar.gz")
        entries = check_invariant(out)
        assert sorted(entries) == sorted(LAYERS)
        assert debris(out) == []
