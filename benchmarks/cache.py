"""Benchmark: what the layer cache saves. Revert and second-build-dir times vs a first build.

    .venv/bin/python benchmarks/cache.py [--workdir DIR]

Uses the 14-layer stack of `build_stack.py` (hermetic: local wheels, a runtime packed from
pyenv's CPython 3.11, a private uv cache and a private layer cache). Measures:

* a first build with an empty layer cache, and the same with `--no-layer-cache` (what storing
  into the cache costs), each with an empty uv cache;
* a framework change (relocks and reinstalls the framework and the apps on it);
* the revert of that change (the reverted layers come from the cache);
* a build into a second, empty build dir (every layer comes from the cache).

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


def run_benchmark(workdir: Path) -> list[tuple[str, float, int, int]]:
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
    return rows


def print_table(rows: Sequence[tuple[str, float, int, int]], first: float) -> None:
    print(f"layer cache benchmark: {1 + 5 + APPS}-layer stack, {os.cpu_count()} CPUs")
    print(f"| {'build':<44} | {'wall':>9} | {'vs first':>8} | {'tasks':>5} | {'uv runs':>7} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 10}|{'-' * 7}|{'-' * 9}|")
    for label, seconds, tasks, uv in rows:
        print(
            f"| {label:<44} | {seconds:7.2f} s | {seconds / first:7.2f}x | {tasks:>5} | {uv:>7} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="venvstacks-cache-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_benchmark(workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    first = next(seconds for label, seconds, _, _ in rows if label.startswith("first build, empty"))
    print_table(rows, first)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
