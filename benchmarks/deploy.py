"""Benchmark: `venvstacks deploy` of a published stack into a fresh folder, beside its floor.

    .venv/bin/python benchmarks/deploy.py [--workdir DIR] [--repeat N] [--torch WHEEL]
                                          [--format tar.xz|tar.zst|tar.gz] [--jobs N]
                                          [--source DIR] [--noop N]

The stack: a runtime packed from pyenv's CPython 3.11 (`venvstacks runtime pack`), a framework
with numpy (from PyPI; with --torch, a second framework with that torch wheel) and one app. It is
built and published once into the work folder (default benchmarks/_work/deploy, git-ignored);
later runs reuse it.

Each round, in the same run and alternating so that both see the same machine load:
- the floor: `sha256sum` of every archive, the system `tar` with parallel decompression
  (`-I 'xz -T0'` / `-I 'zstd -T0'`) of each archive into a fresh folder, then
  `python -m compileall -q -j 0` over the layers' `lib` folders with the deployed runtime;
- ours: `venvstacks -v deploy ARTIFACTS FRESH` (a whole process, as a user runs it), its steps
  read from the `-v` lines (`ok  verify:<layer> (0.4 s)`), with its peak RSS (own + children).

Prints a table of medians: each step of ours beside the floor's step, totals and the ratio
(target: at most 1.3x), with the date, the machine and the load average. `--source DIR` deploys
with the venvstacks package of another source tree (say a worktree of an earlier commit).

`--noop N` times instead N no-op deploys (a whole `venvstacks deploy` process into a folder
where every layer is already deployed: records read, files lstat'ed, nothing extracted), and,
with `--source`, as many with that tree, alternating; it prints their medians and minimums.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_runtime import find_host_python

VENVSTACKS = [sys.executable, "-m", "venvstacks"]
TARGET = 1.3

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = []
platforms = ["linux_x86_64"]

[[frameworks]]
name = "sci"
runtime = "cpython-3.11"
requirements = ["numpy"]
{torch}
[[applications]]
name = "calc"
frameworks = [{frameworks}]
launch_module = "calc.py"
requirements = []
"""

TORCH = """
[[frameworks]]
name = "torch"
runtime = "cpython-3.11"
requirements = ["torch==2.13.0+cpu"]  # the local CPU wheel, never PyPI's CUDA build
"""

# Runs argv and adds the largest RSS among its processes (waited for) to stderr.
_PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)

DECOMPRESS = {".xz": "xz -T0", ".zst": "zstd -T0", ".gz": "gzip"}


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed:\n{result.stdout}\n{result.stderr}")
    return result  # type: ignore[no-any-return]


def prepare(workdir: Path, fmt: str, torch: Path | None) -> Path:
    """Pack the runtime, build and publish the stack once; the artefacts folder."""
    tag = f"{fmt}{'-torch' if torch else ''}"
    artifacts = workdir / f"artifacts-{tag}"
    if (artifacts / "__venvstacks__" / "venvstacks.json").exists():
        return artifacts
    archives = workdir / "runtimes"
    python = find_host_python("3.11")
    if not archives.is_dir():
        _run([*VENVSTACKS, "runtime", "pack", str(python), "-o", str(archives)])
    version = next(archives.glob("cpython-*.tar.gz")).name.split("-")[1].split("+")[0]
    project = workdir / f"stack-{tag}"
    project.mkdir(parents=True, exist_ok=True)
    frameworks = '"sci", "torch"' if torch else '"sci"'
    spec = project / "venvstacks.toml"
    spec.write_text(
        STACK.format(version=version, torch=TORCH if torch else "", frameworks=frameworks)
    )
    (project / "calc.py").write_text("import numpy\nprint(numpy.arange(6).sum())\n")
    argv = [*VENVSTACKS, "build", str(spec), "--lock-if-needed", "--publish"]
    argv += ["--runtime-archives", str(archives), "--format", fmt, "--output-dir", str(artifacts)]
    if torch:
        argv += ["--local-wheels", str(torch.parent)]
    env = {**os.environ, "UV_CACHE_DIR": str(workdir / "uv-cache")}
    env.pop("PIP_CONSTRAINT", None)
    _run(argv, cwd=project, env=env)
    return artifacts


def _archives(artifacts: Path) -> list[Path]:
    return sorted(p for p in artifacts.iterdir() if p.is_file() and not p.name.startswith("."))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor(artifacts: Path, dest: Path) -> dict[str, float]:
    """The floor's steps, in seconds: sha256sum, tar with parallel decompression, compileall;
    and "cpu", the CPU seconds of all its processes."""
    cpu = _cpu()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    steps: dict[str, float] = {}
    archives = _archives(artifacts)
    start = time.perf_counter()
    for archive in archives:
        _run(["sha256sum", str(archive)])
    steps["hash"] = time.perf_counter() - start
    start = time.perf_counter()
    for archive in archives:
        _run(["tar", "-I", DECOMPRESS[archive.suffix], "-xf", str(archive), "-C", str(dest)])
    steps["extract"] = time.perf_counter() - start
    runtime = next(p for p in dest.iterdir() if p.name.startswith("cpython"))
    libs = [str(p / "lib") for p in sorted(dest.iterdir()) if (p / "lib").is_dir()]
    start = time.perf_counter()
    # Best effort, as in deploy: some packages ship files that do not compile (torch's tests).
    compile_all = [str(runtime / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", *libs]
    subprocess.run(compile_all, capture_output=True, check=False)
    steps["compile"] = time.perf_counter() - start
    steps["cpu"] = _cpu() - cpu
    return steps


def ours(
    artifacts: Path, dest: Path, jobs: int | None, source: Path | None = None
) -> tuple[float, dict[str, float], float]:
    """Wall seconds of one deploy, the sum of its step seconds per step (and "cpu", the CPU
    seconds of all its processes), its peak RSS (MB)."""
    cpu = _cpu()
    shutil.rmtree(dest, ignore_errors=True)
    argv = [sys.executable, "-c", _PEAK, *VENVSTACKS, "-v", "deploy", str(artifacts), str(dest)]
    if jobs:
        argv += ["-j", str(jobs)]
    env = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
    start = time.perf_counter()
    result = _run(argv, env=env, cwd=dest.parent)  # not the repo: `-m` puts the cwd first
    seconds = time.perf_counter() - start
    steps: dict[str, float] = defaultdict(float)
    steps["cpu"] = _cpu() - cpu
    # (anywhere: lines printed by parallel tasks at the same instant may share a line)
    for name, took in re.findall(r"ok  (\S+) \(([0-9.]+) s\)", result.stderr):
        step = name.split(":")[0]
        if step != "deploy":  # the engine's task: compile + postinstall + the record
            steps[step] += float(took)
    peak = float(result.stderr.rsplit("peak-rss-kb ", 1)[1]) / 1024
    return seconds, dict(steps), peak


def noop(artifacts: Path, dest: Path, rounds: int, source: Path | None) -> None:
    """Time no-op deploys into `dest` (deployed first), this tree and `source` alternating."""
    shutil.rmtree(dest, ignore_errors=True)
    _run([*VENVSTACKS, "deploy", str(artifacts), str(dest)], cwd=dest.parent)
    trees: dict[str, Path | None] = {"this tree": None}
    if source is not None:
        trees[str(source)] = source
    times: dict[str, list[float]] = {name: [] for name in trees}
    env0 = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(rounds):
        for name, tree in trees.items():
            env = {**env0, **({"PYTHONPATH": str(tree)} if tree else {})}
            start = time.perf_counter()
            result = _run(
                [*VENVSTACKS, "deploy", str(artifacts), str(dest)], env=env, cwd=dest.parent
            )
            times[name].append(time.perf_counter() - start)
            if "(0 updated" not in result.stdout:
                sys.exit(f"not a no-op: {result.stdout}")
    shutil.rmtree(dest, ignore_errors=True)
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"load average (1, 5 min): {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f}")
    print(f"archives: {_layer_sizes(artifacts)}")
    print()
    print(f"| no-op deploy (whole process), {rounds} rounds | median ms | min ms |")
    print("|---|---|---|")
    for name, seconds in times.items():
        median, least = statistics.median(seconds) * 1000, min(seconds) * 1000
        print(f"| {name} | {median:.0f} | {least:.0f} |")


def _layer_sizes(artifacts: Path) -> str:
    return ", ".join(f"{a.name} {a.stat().st_size / 1e6:.1f} MB" for a in _archives(artifacts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_work" / "deploy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", default="tar.xz", choices=["tar.xz", "tar.zst", "tar.gz"])
    parser.add_argument("--torch", type=Path, help="a torch wheel: adds a big framework layer")
    parser.add_argument("--jobs", type=int, help="deploy -j (default: deploy's own default)")
    parser.add_argument(
        "--source", type=Path, help="deploy with the venvstacks of this source tree (a baseline)"
    )
    parser.add_argument("--noop", type=int, metavar="N", help="time N no-op deploys instead")
    args = parser.parse_args()
    workdir: Path = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = prepare(workdir, args.format, args.torch)
    if args.noop:
        noop(artifacts, workdir / "noop", args.noop, args.source)
        return
    floors: list[dict[str, float]] = []
    runs: list[tuple[float, dict[str, float], float]] = []
    loads = []
    for _ in range(args.repeat):
        loads.append(os.getloadavg()[0])
        floors.append(floor(artifacts, workdir / "floor"))
        runs.append(ours(artifacts, workdir / "ours", args.jobs, args.source))
    shutil.rmtree(workdir / "floor", ignore_errors=True)
    shutil.rmtree(workdir / "ours", ignore_errors=True)
    floor_total = statistics.median(sum(v for k, v in f.items() if k != "cpu") for f in floors)
    ours_total = statistics.median(r[0] for r in runs)
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"load average (1 min) before each round: {', '.join(f'{l:.2f}' for l in loads)}")
    print(f"archives ({args.format}): {_layer_sizes(artifacts)}")
    print(f"medians of {args.repeat} rounds, seconds")
    print()
    print("| step | ours | floor |")
    print("|---|---|---|")
    for ours_step, floor_step in (
        ("verify", "hash"),
        ("extract", "extract"),
        ("compile", "compile"),
    ):
        mine = statistics.median(r[1].get(ours_step, 0.0) for r in runs)
        theirs = statistics.median(f[floor_step] for f in floors)
        print(f"| {ours_step} (ours) / {floor_step} (floor) | {mine:.2f} | {theirs:.2f} |")
    post = statistics.median(r[1].get("postinstall", 0.0) for r in runs)
    print(f"| postinstall (ours only) | {post:.2f} | |")
    ours_cpu = statistics.median(r[1]["cpu"] for r in runs)
    floor_cpu = statistics.median(f["cpu"] for f in floors)
    print(f"| CPU seconds, all processes | {ours_cpu:.2f} | {floor_cpu:.2f} |")
    print(f"| **total (wall)** | **{ours_total:.2f}** | **{floor_total:.2f}** |")
    ratio = ours_total / floor_total
    print()
    print("ours' steps overlap (layers extract in parallel); each is summed over the layers")
    print(f"CPU ratio ours / floor: {ours_cpu / floor_cpu:.2f}x")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print()
    print(f"ratio ours / floor: {ratio:.2f}x (target at most {TARGET}x: {verdict})")
    print(f"peak RSS of deploy (largest process): {max(r[2] for r in runs):.0f} MB")


if __name__ == "__main__":
    main()
