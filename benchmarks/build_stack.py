"""Benchmark: lock and build a generated 14-layer stack; time cold, no-op and incremental builds.

    .venv/bin/python benchmarks/build_stack.py [--workdir DIR] [--repeat N] [--profile]
                                               [--baseline SRC]

Everything is local and hermetic: the test wheelhouse (tests/fixtures_wheels.py) plus a few
generated wheels, a runtime packed from pyenv's CPython 3.11 with `venvstacks runtime pack`, and
a private uv cache (the first cold build runs with it empty). The stack is 1 runtime,
5 frameworks (some on others) and 8 applications.

Prints one table of wall times (each a full `venvstacks` process, as a user would run it) and
checks two targets: a no-op build under 0.5 s, and a one-app change that runs that app's tasks
only. A no-op build is profiled with cProfile when it misses its target (or with --profile).

`--baseline SRC` also times no-op builds of the same stack with the venvstacks package found in
the source tree SRC (for example a `git worktree` of an earlier commit), alternating with this
checkout so that both see the same machine load, and prints the two medians and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_runtime import find_host_python
from fixtures_wheels import build_wheelhouse, make_wheel

VENVSTACKS = [sys.executable, "-m", "venvstacks"]
NO_OP_TARGET = 0.5
APPS = 8

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[frameworks]]
name = "util"
runtime = "cpython-3.11"
requirements = ["vs-util==1.0"]

[[frameworks]]
name = "frame2"
frameworks = ["frame"]
requirements = ["vs-frame2", "vs-native"]

[[frameworks]]
name = "science"
frameworks = ["frame2", "util"]
requirements = ["bench-sci"]

[[frameworks]]
name = "web"
frameworks = ["util"]
requirements = ["bench-web"]
{apps}"""

# App N: (frameworks, or None for the runtime alone).
APP_FRAMEWORKS: dict[int, list[str] | None] = {
    1: ["science"],
    2: ["science"],
    3: ["web"],
    4: ["web"],
    5: ["frame2"],
    6: ["frame"],
    7: None,
    8: ["science", "web"],
}
CHANGED_APP = 3
CHANGED_FRAMEWORK = "web"


def app_section(n: int) -> str:
    frameworks = APP_FRAMEWORKS[n]
    base = (
        'runtime = "cpython-3.11"'
        if frameworks is None
        else f"frameworks = {json.dumps(frameworks)}"
    )
    return textwrap.dedent(
        f"""
        [[applications]]
        name = "svc{n}"
        {base}
        launch_module = "app{n}.py"
        requirements = ["bench-app-{n}"]
        """
    )


def extra_wheels(wheelhouse: Path) -> None:
    """Generated packages: one per app (each needing vs-util and one of three libraries)."""
    for lib in range(3):
        make_wheel(wheelhouse, f"bench-lib-{lib}", "1.0")
    make_wheel(wheelhouse, "bench-sci", "1.0", requires=["vs-frame2", "bench-lib-0"])
    make_wheel(wheelhouse, "bench-web", "1.0", requires=["vs-util"])
    for n in range(1, APPS + 1):
        make_wheel(wheelhouse, f"bench-app-{n}", "1.0", requires=["vs-util", f"bench-lib-{n % 3}"])


def write_stack(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    apps = "".join(app_section(n) for n in range(1, APPS + 1))
    spec = folder / "venvstacks.toml"
    spec.write_text(STACK.format(version=version, apps=apps))
    for n in range(1, APPS + 1):
        module = f"bench_app_{n}"
        (folder / f"app{n}.py").write_text(f"import {module}\nprint({module}.where())\n")
    return spec


@dataclass
class Run:
    seconds: float
    tasks: list[str]
    task_seconds: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0  # user + system CPU seconds of the venvstacks process and its children


class Bench:
    def __init__(self, workdir: Path, archives: Path, wheelhouse: Path) -> None:
        self.workdir = workdir
        self.archives = archives
        self.wheelhouse = wheelhouse
        self.env = {**os.environ, "UV_CACHE_DIR": str(workdir / "uv-cache")}
        self.env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
        # An installed venvstacks has its byte-code: without it (PYTHONDONTWRITEBYTECODE), each
        # command would compile every venvstacks module again, ~60 ms. Keep it out of the repo.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")

    def with_source(self, source: Path) -> Bench:
        """The same benchmark, running the venvstacks package of another source tree."""
        other = Bench(self.workdir, self.archives, self.wheelhouse)
        other.env["PYTHONPATH"] = str(source)
        return other

    def argv(self, command: str, spec: Path, *extra: str) -> list[str]:
        return [
            *VENVSTACKS,
            "-v",
            command,
            str(spec),
            "--runtime-archives",
            str(self.archives),
            "--local-wheels",
            str(self.wheelhouse),
            "--no-index",
            *(("--lock-if-needed",) if command == "build" else ()),
            *extra,
        ]

    def run(self, command: str, spec: Path, *extra: str) -> Run:
        argv = self.argv(command, spec, *extra)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            argv, check=False, cwd=spec.parent, env=self.env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{result.stderr}")
        tasks, task_seconds = [], {}
        for line in result.stderr.splitlines():
            if line.startswith("  ok  "):
                _, name, took, _unit = line.split()
                tasks.append(name)
                task_seconds[name] = float(took.strip("("))
        return Run(seconds, tasks, task_seconds, cpu)

    def profile(self, spec: Path, top: int = 25) -> str:
        out = self.workdir / "no-op.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *self.argv("build", spec)[1:]]
        subprocess.run(argv, cwd=spec.parent, env=self.env, capture_output=True, check=True)
        text = io.StringIO()
        stats = pstats.Stats(str(out), stream=text)
        stats.sort_stats("cumulative").print_stats(top)
        return text.getvalue()


def startup_floor(env: dict[str, str]) -> float:
    """Interpreter start-up plus importing the CLI: the least any venvstacks command costs."""
    best = float("inf")
    for _ in range(4):  # the first run also writes the byte-code cache
        start = time.perf_counter()
        subprocess.run([*VENVSTACKS, "--help"], env=env, capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def pack_runtime(archives: Path) -> tuple[str, float]:
    python = find_host_python("3.11")
    start = time.perf_counter()
    subprocess.run(
        [*VENVSTACKS, "runtime", "pack", str(python), "-o", str(archives)],
        check=True,
        capture_output=True,
    )
    return python.parents[1].name, time.perf_counter() - start


def edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new, 1))


def row(label: str, seconds: float, detail: str = "") -> str:
    return f"| {label:<44} | {seconds:8.2f} s | {detail}"


def layer_tasks(tasks: Sequence[str], env: str) -> bool:
    return all(name.split(":", 1)[1] == env for name in tasks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=5, help="no-op builds to time")
    parser.add_argument("--profile", action="store_true", help="always profile a no-op build")
    parser.add_argument(
        "--baseline", type=Path, help="also time no-op builds with the venvstacks in this tree"
    )
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="venvstacks-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run_benchmark(workdir, args.repeat, args.profile, args.baseline)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def compare_no_ops(bench: Bench, baseline: Path, spec: Path, repeat: int) -> list[str]:
    """Rows for no-op builds alternating between this checkout and `baseline`.

    Wall times on a shared machine swing with its load; the CPU time a no-op build uses (user +
    system, the process and its children) swings much less, so both are given.
    """
    other = bench.with_source(baseline)
    other.run("build", spec)  # byte-compile the baseline's modules once
    ours: list[Run] = []
    theirs: list[Run] = []
    for _ in range(max(repeat, 5)):
        for runner, runs in ((bench, ours), (other, theirs)):
            run = runner.run("build", spec)
            assert run.tasks == [], run.tasks
            runs.append(run)
    rows = []
    for label, runs in ((f"baseline {baseline.name}", theirs), ("this checkout", ours)):
        wall = statistics.median(r.seconds for r in runs)
        cpu = statistics.median(r.cpu for r in runs)
        rows.append(
            row(
                f"no-op build, {label} (median of {len(runs)})",
                wall,
                f"min {min(r.seconds for r in runs):.2f} s; CPU {cpu:.3f} s "
                f"(min {min(r.cpu for r in runs):.3f} s)",
            )
        )
    ratio_wall = statistics.median(r.seconds for r in ours) / statistics.median(
        r.seconds for r in theirs
    )
    ratio_cpu = statistics.median(r.cpu for r in ours) / statistics.median(r.cpu for r in theirs)
    rows.append(
        row(
            "no-op build, this checkout / baseline",
            ratio_wall,
            f"(a ratio, not seconds) wall {100 * (ratio_wall - 1):+.0f}%, "
            f"CPU {100 * (ratio_cpu - 1):+.0f}%, alternating runs",
        )
    )
    return rows


def run_benchmark(
    workdir: Path, repeat: int, always_profile: bool, baseline: Path | None = None
) -> int:
    wheelhouse = build_wheelhouse(workdir / "wheels")
    extra_wheels(wheelhouse)
    archives = workdir / "archives"
    version, pack_seconds = pack_runtime(archives)
    bench = Bench(workdir, archives, wheelhouse)
    lines: list[str] = []
    misses: list[str] = []

    lines.append(row("venvstacks runtime pack (pyenv 3.11)", pack_seconds, version))
    floor = startup_floor(bench.env)
    lines.append(row("start-up floor (`venvstacks --help`)", floor))

    spec = write_stack(workdir / "stack", version)
    layers = 1 + 5 + APPS
    cold = bench.run("build", spec)
    lines.append(
        row(
            f"cold lock+build, {layers} layers, empty uv cache",
            cold.seconds,
            f"{len(cold.tasks)} tasks",
        )
    )

    no_ops = [bench.run("build", spec) for _ in range(repeat)]
    assert all(run.tasks == [] for run in no_ops), [run.tasks for run in no_ops]
    no_op = statistics.median(run.seconds for run in no_ops)
    lines.append(
        row(
            f"no-op build (median of {repeat})",
            no_op,
            f"min {min(r.seconds for r in no_ops):.2f} s, 0 tasks",
        )
    )
    if no_op >= NO_OP_TARGET:
        misses.append(f"no-op build {no_op:.2f} s >= {NO_OP_TARGET} s")
    if baseline is not None:
        lines.extend(compare_no_ops(bench, baseline, spec, repeat))
    lock_no_op = bench.run("lock", spec)
    lines.append(row("no-op lock", lock_no_op.seconds, f"{len(lock_no_op.tasks)} tasks"))

    app_env = f"app-svc{CHANGED_APP}"
    edit(
        spec,
        f'requirements = ["bench-app-{CHANGED_APP}"]',
        f'requirements = ["bench-app-{CHANGED_APP}", "vs-app-b"]',
    )
    app = bench.run("build", spec)
    work = sum(app.task_seconds.values())
    lines.append(
        row(
            f"one-app change ({app_env} requirements)",
            app.seconds,
            f"{', '.join(app.tasks)} (task time {work:.2f} s)",
        )
    )
    if not app.tasks or not layer_tasks(app.tasks, app_env):
        misses.append(f"one-app change ran {app.tasks}")

    edit(spec, 'requirements = ["bench-web"]', 'requirements = ["bench-web", "bench-lib-2"]')
    framework = bench.run("build", spec)
    lines.append(
        row(
            f"one-framework change ({CHANGED_FRAMEWORK} requirements)",
            framework.seconds,
            ", ".join(framework.tasks),
        )
    )

    for jobs in (1, 2):
        fresh = write_stack(workdir / f"stack-j{jobs}", version)
        run = bench.run("build", fresh, "-j", str(jobs))
        lines.append(
            row(f"cold lock+build -j {jobs}, warm uv cache", run.seconds, f"{len(run.tasks)} tasks")
        )

    print(f"venvstacks build benchmark: {layers}-layer stack, {os.cpu_count()} CPUs")
    print(f"| {'measurement':<44} | {'wall':>10} | detail")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 40}")
    print("\n".join(lines))
    print()
    by_operation: dict[str, float] = {}
    for name, seconds in cold.task_seconds.items():
        operation = name.split(":", 1)[0]
        by_operation[operation] = by_operation.get(operation, 0.0) + seconds
    print(
        "cold build, task time by operation: "
        + ", ".join(f"{op} {seconds:.1f} s" for op, seconds in sorted(by_operation.items()))
    )
    slowest = sorted(cold.task_seconds.items(), key=lambda item: -item[1])[:4]
    print("cold build, slowest tasks: " + ", ".join(f"{n} {s:.1f} s" for n, s in slowest))
    print(
        "one-app change, its tasks: "
        + ", ".join(f"{n} {s:.1f} s" for n, s in sorted(app.task_seconds.items()))
    )
    print(
        f"targets: no-op < {NO_OP_TARGET} s: {'met' if no_op < NO_OP_TARGET else 'MISSED'}; "
        f"one-app change runs only {app_env}'s tasks: "
        f"{'met' if layer_tasks(app.tasks, app_env) else 'MISSED'}"
    )
    if misses or always_profile:
        print("\ncProfile of a no-op build (cumulative):")
        print(bench.profile(spec))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
