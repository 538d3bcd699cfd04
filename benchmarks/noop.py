"""Benchmark: how close no-op and one-change builds come to the floor, each beside its target.

    .venv/bin/python benchmarks/noop.py [--workdir DIR] [--repeat N] [--profile]
                                        [--original-results FILE]

Everything is local and hermetic: the test wheelhouse (tests/fixtures_wheels.py) plus generated
wheels, a runtime packed from pyenv's CPython 3.11 (cached like the tests' runtime), a private uv
cache. Two stacks are generated:

- small: runtime + 1 framework + 1 app (the shape of specs/demo);
- large: 60 layers (1 runtime, 9 frameworks, 50 apps).

Printed as one table, each row with its target and the floor (`python -c pass`, the least any
Python command costs here):

- `venvstacks --version`;
- no-op `build --publish` of the small stack and of the 60-layer stack (median of N);
- one app's requirement changed, until its archive is republished (small stack,
  `build --publish --lock-if-needed`; median of N, alternating two requirement sets).

The ratios against venvstacks 0.7.0/0.8 come from `benchmarks/compare_venvstacks.py`, which
installs the original from PyPI and writes `benchmarks/_work/compare/last-results.json`; when
that file (or --original-results) exists its small-stack no-op and requirements-change medians
are shown beside ours (same machine, but not the same run: rerun both for a fair ratio).
With --profile, a cProfile of a no-op build of the 60-layer stack is printed (cumulative).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_runtime import find_host_python, packed_runtime_archive
from fixtures_wheels import build_wheelhouse, make_wheel

VENVSTACKS = [sys.executable, "-m", "venvstacks"]
ORIGINAL_RESULTS = REPO / "benchmarks" / "_work" / "compare" / "last-results.json"

TARGET_VERSION = 0.1  # s
TARGET_NOOP_LARGE = 0.25  # s
TARGET_NOOP_RATIO = 50.0  # x faster than the original
TARGET_CHANGE_RATIO = 25.0

FRAMEWORKS = 9
APPS = 50
EXTRA = 20  # packages added one at a time to the changed app

SMALL = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[applications]]
name = "demo"
frameworks = ["frame"]
launch_module = "demo.py"
requirements = ["vs-util"]
"""


def large_spec(version: str) -> str:
    parts = [
        textwrap.dedent(
            f"""\
            [[runtimes]]
            name = "cpython-3.11"
            python_implementation = "cpython@{version}"
            requirements = ["vs-base"]
            platforms = ["linux_x86_64"]
            """
        )
    ]
    for n in range(FRAMEWORKS):
        base = 'runtime = "cpython-3.11"' if n < 3 else f'frameworks = ["fw{n % 3}"]'
        parts.append(f'\n[[frameworks]]\nname = "fw{n}"\n{base}\nrequirements = ["bench-fw-{n}"]\n')
    for n in range(APPS):
        parts.append(
            f'\n[[applications]]\nname = "app{n}"\nframeworks = ["fw{n % FRAMEWORKS}"]\n'
            f'launch_module = "app{n}.py"\nrequirements = ["bench-app-{n}"]\n'
        )
    return "".join(parts)


def make_wheels(wheelhouse: Path) -> None:
    build_wheelhouse(wheelhouse)
    for n in range(FRAMEWORKS):
        make_wheel(wheelhouse, f"bench-fw-{n}", "1.0", requires=["vs-base"])
    for n in range(APPS):
        make_wheel(wheelhouse, f"bench-app-{n}", "1.0", requires=["vs-util"])
    for n in range(EXTRA):
        make_wheel(wheelhouse, f"bench-extra-{n}", "1.0")


def write_small(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.py").write_text("import vs_util\nprint(vs_util.__name__)\n")
    spec = folder / "venvstacks.toml"
    spec.write_text(SMALL.format(version=version))
    return spec


def write_large(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(APPS):
        (folder / f"app{n}.py").write_text(f"import bench_app_{n}\n")
    spec = folder / "venvstacks.toml"
    spec.write_text(large_spec(version))
    return spec


class Runner:
    def __init__(self, workdir: Path, archives: Path, wheelhouse: Path) -> None:
        self.archives = archives
        self.wheelhouse = wheelhouse
        self.env = {**os.environ, "UV_CACHE_DIR": str(workdir / "uv-cache")}
        for name in ("VENVSTACKS_RUNTIME_ARCHIVES", "PYTHONDONTWRITEBYTECODE"):
            self.env.pop(name, None)
        self.env["PIP_CONFIG_FILE"] = os.devnull
        # A layer cache of this run only: a requirement change must not be served from entries
        # an earlier run left (a user's change is new; restoring a known layer is another row).
        cache = Path(tempfile.mkdtemp(prefix="layer-cache-", dir=workdir))
        self.env["VENVSTACKS_CACHE_DIR"] = str(cache)

    def with_source(self, source: Path) -> Runner:
        """The same runner, with the venvstacks package of another source tree."""
        other = Runner.__new__(Runner)
        other.archives, other.wheelhouse = self.archives, self.wheelhouse
        other.env = {**self.env, "PYTHONPATH": str(source)}
        return other

    def build_argv(self, spec: Path, *extra: str) -> list[str]:
        return [
            "build",
            str(spec),
            "--publish",
            "--lock-if-needed",
            "--runtime-archives",
            str(self.archives),
            "--local-wheels",
            str(self.wheelhouse),
            "--no-index",
            *extra,
        ]

    def time(self, argv: Sequence[str], cwd: Path | None = None) -> float:
        start = time.perf_counter()
        result = subprocess.run(
            list(argv), cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{result.stderr}")
        return seconds

    def build(self, spec: Path, *extra: str) -> float:
        return self.time([*VENVSTACKS, *self.build_argv(spec, *extra)], spec.parent)

    def profile(self, spec: Path, out: Path, top: int = 30) -> str:
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "venvstacks"]
        self.time([*argv, *self.build_argv(spec)], spec.parent)
        text = io.StringIO()
        stats = pstats.Stats(str(out), stream=text)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(15)
        return text.getvalue()


class Timing(float):
    """A median that also knows the fastest run (the steadier figure on a loaded machine)."""

    fastest: float


def timing(values: list[float]) -> Timing:
    found = Timing(statistics.median(values))
    found.fastest = min(values)
    return found


def median_of(repeat: int, run: object) -> Timing:
    assert callable(run)
    return timing([run() for _ in range(repeat)])


def original_results(path: Path) -> tuple[str, dict[str, float]]:
    """The original's version and its small-stack medians from compare_venvstacks.py's results:
    ``noop`` (no-op build --publish) and ``change`` (requirement added, until republished)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return "the original", {}
    if not isinstance(data, dict) or not isinstance(data.get("times"), dict):
        return "the original", {}  # an older layout, without the original's version
    times = data["times"]

    def pick(step: str) -> float | None:
        value = times.get(f"small / {step} / theirs")
        return statistics.median(value) if isinstance(value, list) and value else None

    found = {"noop": pick("noop"), "change": pick("app-reqs-total")}
    return str(data.get("original", "?")), {k: v for k, v in found.items() if v is not None}


def compare_baseline(
    runner: Runner, baseline: Path, small: Path, large: Path, repeat: int
) -> dict[str, float]:
    """Median no-op times of `baseline`'s venvstacks and this checkout's, run alternately."""
    other = runner.with_source(baseline)
    other.build(small)  # byte-compile the baseline once
    pairs: dict[str, list[tuple[float, float]]] = {"small": [], "large": []}
    for _ in range(repeat):  # alternating, so that both see the same machine load
        for name, spec in (("small", small), ("large", large)):
            pairs[name].append((other.build(spec), runner.build(spec)))
    found: dict[str, float] = {}
    for name, runs in pairs.items():
        found[name] = statistics.median(b for b, _ in runs)
        found[f"{name}-ours"] = statistics.median(o for _, o in runs)
    return found


def baseline_rows(
    before: dict[str, float], baseline: Path
) -> list[tuple[str, float, str, str, str]]:
    labels = (("small", "small (3 layers)"), ("large", f"{1 + FRAMEWORKS + APPS} layers"))
    return [
        (
            f"no-op, {label}: this checkout vs baseline {baseline.name}, alternating",
            before[f"{name}-ours"],
            f"baseline {before[name]:.3f} s",
            "",
            f"{before[name] / before[f'{name}-ours']:.1f}x faster",
        )
        for name, label in labels
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=7, help="at most 20")
    parser.add_argument("--profile", action="store_true", help="profile a 60-layer no-op build")
    parser.add_argument("--original-results", type=Path, default=ORIGINAL_RESULTS)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also time no-op builds with the venvstacks in this source tree (e.g. a git "
        "worktree of an earlier commit), alternating with this checkout",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="venvstacks-noop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run(workdir, args.repeat, args.profile, args.original_results, args.baseline)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(
    workdir: Path, repeat: int, profile: bool, original: Path, baseline: Path | None = None
) -> int:
    wheelhouse = workdir / "wheels"
    if not wheelhouse.exists():
        make_wheels(wheelhouse)
    version = find_host_python("3.11").parents[1].name
    archive = packed_runtime_archive("3.11")
    archives = workdir / "archives"
    archives.mkdir(exist_ok=True)
    for source in (archive, archive.with_name(archive.name + ".sha256")):
        if not (archives / source.name).exists():
            shutil.copy2(source, archives / source.name)
    runner = Runner(workdir, archives, wheelhouse)
    small = write_small(workdir / "small", version)
    large = write_large(workdir / "large", version)
    runner.build(small)  # cold builds: not timed
    runner.build(large)
    runner.build(small)  # byte-code written, caches warm
    runner.build(large)

    floor = median_of(repeat, lambda: runner.time([sys.executable, "-c", "pass"]))
    version_s = median_of(repeat, lambda: runner.time([*VENVSTACKS, "--version"]))
    noop_small = median_of(repeat, lambda: runner.build(small))
    noop_large = median_of(repeat, lambda: runner.build(large))
    before = compare_baseline(runner, baseline, small, large, repeat) if baseline else {}
    # A new package each time: going back to an earlier set would be a layer-cache hit.
    changes: list[float] = []
    requirement = '"vs-util"]'
    for n in range(max(3, repeat // 2)):
        added = f'"vs-util", "bench-extra-{n}"]'
        small.write_text(small.read_text().replace(requirement, added, 1))
        requirement = added
        changes.append(runner.build(small))
    change = timing(changes)
    original_version, theirs = original_results(original)

    def ratio(key: str, ours: float) -> str:
        return f"{theirs[key] / ours:.1f}x" if key in theirs else "n/a"

    rows = [
        ("python -c pass (floor)", floor, "", "", ""),
        ("venvstacks --version", version_s, f"< {TARGET_VERSION} s", "", ""),
        (
            "no-op build --publish, small (3 layers)",
            noop_small,
            f">= {TARGET_NOOP_RATIO:.0f}x {original_version}",
            f"{theirs['noop']:.2f}" if "noop" in theirs else "n/a",
            ratio("noop", noop_small),
        ),
        (
            f"no-op build --publish, {1 + FRAMEWORKS + APPS} layers",
            noop_large,
            f"< {TARGET_NOOP_LARGE} s",
            "",
            "",
        ),
        (
            "one app's requirement changed, republished",
            change,
            f">= {TARGET_CHANGE_RATIO:.0f}x {original_version}",
            f"{theirs['change']:.2f}" if "change" in theirs else "n/a",
            ratio("change", change),
        ),
    ]
    if baseline is not None:
        rows.extend(baseline_rows(before, baseline))
    load = os.getloadavg()
    print(
        f"venvstacks no-op benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"medians of {repeat}"
    )
    print()
    print("| measurement | ours (s) | fastest | x floor | target | original (s) | original/ours |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label, seconds, target, orig, rat in rows:
        fastest = getattr(seconds, "fastest", None)
        best = f"{fastest:.3f}" if fastest is not None else ""
        print(
            f"| {label} | {seconds:.3f} | {best} | {seconds / floor:.1f} | {target} | {orig} "
            f"| {rat} |"
        )
    if not theirs:
        print(
            f"\n(no original results in {original}: run benchmarks/compare_venvstacks.py "
            "for the original's columns)"
        )
    if profile:
        print("\ncProfile of a no-op build of the 60-layer stack:")
        print(runner.profile(large, workdir / "noop.prof"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
