"""End to end: `build --remote-cache` against a real registry, through the installed CLI.

"Machines" are stack folders side by side (same spec, same wheels and runtime archive) with
their own empty layer cache (`VENVSTACKS_CACHE_DIR`) and a fresh build dir. uv runs are counted
from `-vv` output, where every command venvstacks starts is logged (`running: <argv>`); what was
sent to the registry is read from its access log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from fixtures_registry import AccessLogLine, Registry
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack

pytestmark = pytest.mark.slow

ALL_ENVS = ["app-a", "app-b", "cpython-3.11", "framework-frame", "framework-frame2"]
FRAME_REQS = 'requirements = ["vs-frame"]'
FRAME_PINNED = 'requirements = ["vs-frame", "vs-util==1.0"]'
WRITES = {"PUT", "POST", "PATCH", "DELETE"}
REPO = "team/stack"
ORDER = ["cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b"]


def build(
    project: StackProject,
    cache: Path,
    registry: Registry,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return project.run(
        "-vv", "build", str(project.spec), "--lock-if-needed", *project.source_options(),
        "--remote-cache", registry.url(REPO), *registry.transport_options(), *args,
        env={"VENVSTACKS_CACHE_DIR": str(cache), "DOCKER_CONFIG": str(cache / "no-docker"),
             "VENVSTACKS_REGISTRY_RETRIES": "1", **(env or {})},
    )  # fmt: skip


def uv_runs(result: subprocess.CompletedProcess[str]) -> list[str]:
    runs = []
    for line in result.stderr.splitlines():
        if "running: " in line:
            argv = line.split("running: ", 1)[1].split()
            if Path(argv[0]).name == "uv":
                runs.append(" ".join(argv[1:3]))
    return runs


def remote_warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning: remote cache:" in line]


def writes(lines: list[AccessLogLine]) -> list[AccessLogLine]:
    return [line for line in lines if line.method in WRITES]


def cache_tags(registry: Registry) -> dict[str, int]:
    tags = json.loads(registry.get(f"/v2/{REPO}/tags/list"))["tags"] or []
    return {
        kind: sum(1 for t in tags if t.startswith(f"_vscache-v1-{kind}-"))
        for kind in ("lock", "env")
    }


def app_output(build_dir: Path) -> str:
    return subprocess.run(
        [str(build_dir / "app-a" / "bin" / "python"), "-m", "app_a"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout  # fmt: skip


def second_machine(basic_stack: StackProject, runtime_versions: Mapping[str, str]) -> StackProject:
    # A sibling folder: the same relative way to the wheelhouse, so the same lock inputs.
    other = StackProject(
        basic_stack.root.with_name("machine-b"),
        basic_stack.runtime_archives,
        basic_stack.wheelhouse,
    )
    other.root.mkdir()
    write_basic_stack(other, runtime_versions)
    return other


def test_remote_cache_from_outage_to_a_fresh_machine(
    basic_stack: StackProject,
    registry: Registry,
    tmp_path: Path,
    runtime_versions: Mapping[str, str],
) -> None:
    cache_a, cache_b = tmp_path / "cache-a", tmp_path / "cache-b"

    # The registry is down: one warning line naming it, the repository and a layer; built locally.
    registry.stop()
    down = build(basic_stack, cache_a, registry)
    warned = remote_warnings(down)
    assert len(warned) == 1, down.stderr
    assert f"registry {registry.host}, repository {REPO}, layer " in warned[0]
    assert "connection refused" in warned[0]
    assert "Traceback" not in down.stderr
    assert "pip sync" in uv_runs(down)
    assert "vs_app_a" in app_output(basic_stack.build_dir)

    # Back up: a build with nothing to do pushes every layer of the build the registry lacks.
    registry.start()
    mark = registry.mark()
    up = build(basic_stack, cache_a, registry)
    assert uv_runs(up) == [] and remote_warnings(up) == [], up.stderr
    assert cache_tags(registry) == {"lock": 5, "env": 5}
    blob_uploads = [
        r for r in registry.requests_since(mark) if r.method == "PUT" and "/blobs/" in r.path
    ]
    assert len(blob_uploads) == 5 + 5 + 5 + 5  # a tree and a config blob per entry
    heads = [r for r in registry.requests_since(mark) if r.method == "HEAD"]
    assert len(heads) >= len(blob_uploads)  # HEAD first

    # The same build pushed again uploads nothing (the tags are there).
    mark = registry.mark()
    again = build(basic_stack, cache_a, registry)
    assert writes(registry.requests_since(mark)) == [], again.stderr

    # Read-only: a changed framework is looked up (a miss), built locally, never pushed.
    basic_stack.edit_spec(FRAME_REQS, FRAME_PINNED)
    mark = registry.mark()
    changed = build(basic_stack, cache_a, registry, "--remote-cache-read-only")
    sent = registry.requests_since(mark)
    assert writes(sent) == [], sent
    assert any(r.method == "GET" and r.status == 404 for r in sent)  # it did look
    assert "pip sync" in uv_runs(changed)
    assert cache_tags(registry) == {"lock": 5, "env": 5}
    basic_stack.edit_spec(FRAME_PINNED, FRAME_REQS)

    # A fresh machine: empty layer cache, fresh build dir, same spec: no uv at all.
    fresh = second_machine(basic_stack, runtime_versions)
    report = tmp_path / "report.json"
    mark = registry.mark()
    restored = build(fresh, cache_b, registry, "--report", str(report))
    assert uv_runs(restored) == [], restored.stderr
    assert remote_warnings(restored) == [], restored.stderr
    assert writes(registry.requests_since(mark)) == []  # the registry had everything
    summary = json.loads(report.read_text())["remote_cache"]
    assert summary["reference"] == registry.url(REPO) and summary["failures"] == 0
    assert len(summary["restored"]) == 10 and summary["not_found"] == 0
    assert summary["pushed"] == {"present": [f"{k} {n}" for n in ORDER for k in ("lock", "env")]}
    said = restored.stdout + restored.stderr
    assert f"Remote cache {registry.url(REPO)}: 10 restored, 0 not found" in said
    layers = json.loads(report.read_text())["layers"]
    for name in ALL_ENVS:
        assert (layers[name]["lock"], layers[name]["env"]) == ("cache-hit", "cache-hit"), name
        assert layers[name]["cache"] == {"lock": "remote", "env": "remote"}, name
    out = app_output(fresh.build_dir)
    assert str(fresh.build_dir) in out and str(basic_stack.build_dir) not in out
    for cfg in fresh.build_dir.glob("*/pyvenv.cfg"):
        assert str(basic_stack.build_dir) not in cfg.read_text(), cfg
    # The restored layers pass the environment checks: the next build finds them up to date.
    noop = build(fresh, cache_b, registry, "--remote-cache-read-only")
    assert uv_runs(noop) == [] and "0 task(s) ran" in noop.stdout + noop.stderr, noop.stderr


def test_remote_cache_with_tls_and_basic_auth(
    basic_stack: StackProject,
    tls_registry: Registry,
    tmp_path: Path,
    runtime_versions: Mapping[str, str],
) -> None:
    creds = tls_registry.credentials_env()
    # The repository of `publish --to` serves as the remote cache too: the tags never collide.
    pushed = build(
        basic_stack, tmp_path / "cache-a", tls_registry, "--publish", "--format", "tar.zst",
        "--output-dir", str(tmp_path / "out"), "--to", tls_registry.url(REPO), env=creds,
    )  # fmt: skip
    assert remote_warnings(pushed) == [], pushed.stderr
    assert cache_tags(tls_registry) == {"lock": 5, "env": 5}
    tags = set(json.loads(tls_registry.get(f"/v2/{REPO}/tags/list"))["tags"])
    assert {"latest", "cpython-3.11", "framework-frame", "app-a", "app-b-1"} <= tags

    fresh = second_machine(basic_stack, runtime_versions)
    cache_b = tmp_path / "cache-b"
    # Without credentials: one warning, and the (runtime) layer is built locally.
    anonymous = build(fresh, cache_b, tls_registry, "--include", "cpython-3.11")
    warned = remote_warnings(anonymous)
    assert len(warned) == 1 and "authentication required" in warned[0], anonymous.stderr
    assert f"registry {tls_registry.host}, repository {REPO}" in warned[0]

    restored = build(fresh, cache_b, tls_registry, env=creds)
    assert uv_runs(restored) == [] and remote_warnings(restored) == [], restored.stderr
    assert "vs_app_a" in app_output(fresh.build_dir)


def _pushes(kinds: tuple[str, ...] = ("lock", "env")) -> set[str]:
    return {f"push-{kind}:{env}" for kind in kinds for env in ALL_ENVS}


def test_the_push_phase_shows_each_push_as_it_runs(
    basic_stack: StackProject, registry: Registry, tmp_path: Path
) -> None:
    """The pushes after a build are a run of their own: `-v` (here not on a terminal) prints a
    line as each one starts and ends, the report (`--report -`) lists each with its outcome, size and seconds, a
    terminal shows a live table with a row per layer; with nothing to push, nothing is shown."""
    from fixtures_pty import Screen, plain, run_on_pty

    from venvstacks.cli.progress import PUSH_TITLE

    cache = tmp_path / "cache"
    result = build(basic_stack, cache, registry, "--report", "-")
    pushes = json.loads(result.stdout)["remote_cache"]["pushes"]
    assert {p["task"] for p in pushes} == _pushes(), pushes
    for push in pushes:
        assert push["task"] == f"push-{push['kind']}:{push['layer']}"
        assert push["outcome"] == "uploaded" and push["bytes"] > 0 and push["seconds"] >= 0
    lines = result.stderr.splitlines()
    for task in _pushes():
        started = lines.index(f"  ... {task}")
        ended = next(i for i, line in enumerate(lines) if line.startswith(f"  ok  {task} ("))
        assert started < ended, result.stderr
    assert sum(line.startswith("  ... push-") for line in lines) == len(_pushes())
    # All pushed: the next build pushes nothing and shows no push at all.
    again = build(basic_stack, cache, registry, "--report", "-")
    assert json.loads(again.stdout)["remote_cache"]["pushes"] == []
    assert "push-" not in again.stderr

    # On a terminal, to a repository that lacks everything: a table of the pushes.
    argv = [
        *VENVSTACKS, "build", str(basic_stack.spec), *basic_stack.source_options(),
        "--remote-cache", registry.url("team/other"), *registry.transport_options(),
    ]  # fmt: skip
    env = {
        **os.environ, **basic_stack.env, "TERM": "xterm-256color", "COLUMNS": "160",
        "VENVSTACKS_CACHE_DIR": str(cache), "DOCKER_CONFIG": str(cache / "no-docker"),
    }  # fmt: skip
    env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
    status, chunks = run_on_pty(argv, basic_stack.root, env)
    shown = plain(chunks)
    assert status == 0, shown
    assert re.search(rf"{re.escape(PUSH_TITLE)}: \d+ s", shown), shown
    assert re.search(r"push-lock\s+push-env", shown), shown
    screen = Screen()
    screen.feed(b"".join(data for _, data in chunks).decode(errors="replace"))
    final = screen.text()
    for env_name in ALL_ENVS:
        assert any(re.match(rf"{re.escape(env_name)}\s+✓\s+✓", line) for line in final), final
    assert any(line.startswith("Remote cache ") for line in final), final
    status, chunks = run_on_pty(argv, basic_stack.root, env)
    assert status == 0 and PUSH_TITLE not in plain(chunks)
