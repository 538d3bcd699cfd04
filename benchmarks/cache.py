"""Benchmark: what the layer cache saves. Revert and second-build-dir times vs a first build.

    .venv/bin/python benchmarks/cache.py [--workdir DIR]

Uses the 14-layer stack of `build_stack.py` (hermetic: local wheels, a runtime packed from
pyenv's CPython 3.11, a private uv cache and a private layer cache). Measures:

* a first build with an empty layer cache, and the same with `--no-layer-cache` (what storing
  into the cache costs), each with an empty uv cache;
* a framework change (relocks and reinstalls the framework and the apps on it);
* the revert of that change (the reverted layers come from the cache);
* a build into a second, empty build dir (every layer comes from the cache);
* with a registry (Debian's docker-registry on loopback, plain HTTP) as `--remote-cache`: a
  first build that stores and pushes every layer; the same build pushed again (nothing to send);
  and a fresh machine (an empty layer cache, a fresh stack folder and build dir, an empty uv
  cache) that restores every layer from the registry (`--no-remote` skips these rows).

Each row gives wall time (a whole `venvstacks` process), the tasks that ran and the uv processes
started (counted from `-vv` output, where every uv run is logged).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_stack import (
    APPS,
    VENVSTACKS,
    extra_wheels,
    pack_runtime,
    write_stack,
)
from fixtures_wheels import build_wheelhouse

FRAMEWORK_BEFORE = 'requirements = ["bench-web"]'
FRAMEWORK_AFTER = 'requirements = ["bench-web", "bench-lib-2"]'


class Runner:
    def __init__(self, workdir: Path, archives: Path, wheelhouse: Path) -> None:
        self.workdir = workdir
        self.archives = archives
        self.wheelhouse = wheelhouse
        self.env = {**os.environ, "VENVSTACKS_CACHE_DIR": str(workdir / "layer-cache")}
        self.env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")

    def fresh_uv_cache(self, name: str) -> None:
        self.env["UV_CACHE_DIR"] = str(self.workdir / f"uv-cache-{name}")

    def layer_cache(self, name: str) -> None:
        self.env["VENVSTACKS_CACHE_DIR"] = str(self.workdir / f"layer-cache-{name}")

    def build(self, spec: Path, *extra: str) -> tuple[float, int, int]:
        """(seconds, tasks run, uv processes started)."""
        argv = [
            *VENVSTACKS,
            "-vv",
            "build",
            str(spec),
            "--lock-if-needed",
            "--runtime-archives",
            str(self.archives),
            "--local-wheels",
            str(self.wheelhouse),
            "--no-index",
            *extra,
        ]
        start = time.perf_counter()
        result = subprocess.run(
            argv, cwd=spec.parent, env=self.env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
        lines = result.stderr.splitlines()
        tasks = sum(1 for line in lines if line.startswith("  ok  "))
        uv = sum(
            1
            for line in lines
            if "running: " in line and Path(line.split("running: ", 1)[1].split()[0]).name == "uv"
        )
        return seconds, tasks, uv


def edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new, 1))


def run_benchmark(workdir: Path, remote: bool = True) -> list[tuple[str, float, int, int]]:
    wheelhouse = build_wheelhouse(workdir / "wheels")
    extra_wheels(wheelhouse)
    archives = workdir / "archives"
    version, _ = pack_runtime(archives)
    runner = Runner(workdir, archives, wheelhouse)
    rows: list[tuple[str, float, int, int]] = []

    runner.fresh_uv_cache("plain")
    plain = write_stack(workdir / "plain", version)
    rows.append(("first build, --no-layer-cache", *runner.build(plain, "--no-layer-cache")))

    runner.fresh_uv_cache("cached")
    spec = write_stack(workdir / "stack", version)
    rows.append(("first build, empty layer cache (stores)", *runner.build(spec)))

    edit(spec, FRAMEWORK_BEFORE, FRAMEWORK_AFTER)
    rows.append(("framework change (web + bench-lib-2)", *runner.build(spec)))
    edit(spec, FRAMEWORK_AFTER, FRAMEWORK_BEFORE)
    rows.append(("revert of the framework change", *runner.build(spec)))
    edit(spec, FRAMEWORK_BEFORE, FRAMEWORK_AFTER)
    rows.append(("the change again (switch branch back)", *runner.build(spec)))

    second = workdir / "second-build-dir"
    rows.append(("second, empty build dir", *runner.build(spec, "--build-dir", str(second))))
    rows.append(
        (
            "second, empty build dir, --no-layer-cache",
            *runner.build(spec, "--build-dir", str(workdir / "third"), "--no-layer-cache"),
        )
    )
    if remote:
        rows += run_remote_rows(workdir, runner, version)
    return rows


def run_remote_rows(
    workdir: Path, runner: Runner, version: str
) -> list[tuple[str, float, int, int]]:
    """The remote cache rows: push from one "machine", restore on a fresh one."""
    from fixtures_registry import Registry, ensure_registry_tools

    missing = ensure_registry_tools()
    if missing:
        sys.exit(f"{missing} is not installed (or pass --no-remote)")
    registry = Registry(workdir / "registry")
    registry.start()
    try:
        remote = ["--remote-cache", registry.url("bench/cache"), "--plain-http"]
        rows: list[tuple[str, float, int, int]] = []
        runner.fresh_uv_cache("remote-a")
        runner.layer_cache("remote-a")
        spec = write_stack(workdir / "remote-a", version)
        rows.append(("first build, --remote-cache (stores, pushes)", *runner.build(spec, *remote)))
        rows.append(
            ("same build again, --remote-cache (sends nothing)", *runner.build(spec, *remote))
        )
        runner.fresh_uv_cache("remote-b")
        runner.layer_cache("remote-b")
        fresh = write_stack(workdir / "remote-b", version)
        rows.append(("fresh machine, --remote-cache (restores all)", *runner.build(fresh, *remote)))
        runner.fresh_uv_cache("remote-c")
        runner.layer_cache("remote-c")
        third = write_stack(workdir / "remote-c", version)
        rows.append(
            (
                "fresh machine, --remote-cache-read-only",
                *runner.build(third, *remote, "--remote-cache-read-only"),
            )
        )
        return rows
    finally:
        registry.stop()


def print_table(rows: Sequence[tuple[str, float, int, int]], first: float) -> None:
    load = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "?"
    )
    print(f"layer cache benchmark: {1 + 5 + APPS}-layer stack, {os.cpu_count()} CPUs, load {load}")
    print(f"| {'build':<44} | {'wall':>9} | {'vs first':>8} | {'tasks':>5} | {'uv runs':>7} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 10}|{'-' * 7}|{'-' * 9}|")
    for label, seconds, tasks, uv in rows:
        print(
            f"| {label:<44} | {seconds:7.2f} s | {seconds / first:7.2f}x | {tasks:>5} | {uv:>7} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--no-remote", action="store_true", help="skip the --remote-cache rows")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="venvstacks-cache-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_benchmark(workdir, remote=not args.no_remote)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    first = next(seconds for label, seconds, _, _ in rows if label.startswith("first build, empty"))
    print_table(rows, first)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
