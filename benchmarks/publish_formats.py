"""Benchmark: publish a real stack (runtime + numpy framework + app) in every tar format, deploy it.

Usage: python benchmarks/publish_formats.py [--python PATH] [--keep DIR] [--repeat N]
                                            [--xz-levels 0,3,6]

What it does, with the real CLI (``python -m venvstacks``) in a temporary folder:

1. ``venvstacks runtime pack`` of a CPython 3.11 (default: pyenv's newest 3.11) into a runtime
   archive folder;
2. writes a stack: that runtime, a framework with ``numpy`` from PyPI, one app importing it, with
   ``[tool.uv] exclude-newer`` fixed so the locked versions (and so the sizes) stay the same;
3. ``venvstacks lock`` (default index access) and ``venvstacks build``;
4. ``venvstacks -v publish --format F`` for tar.xz, tar.gz and tar.zst at their default levels,
   then tar.xz at other ``--compression-level`` presets; per-layer times come from the task
   progress lines, sizes from the published metadata;
5. ``venvstacks deploy`` of each default-level output into a fresh folder, then
   ``venvstacks run`` of the app as a check.

Needs network access to PyPI for the first lock (uv's cache serves later runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMATS = ("tar.xz", "tar.gz", "tar.zst")
DEFAULT_LEVELS = {"tar.xz": 1, "tar.gz": 6, "tar.zst": 3}  # venvstacks.publish.archive's defaults
EXCLUDE_NEWER = "2025-06-01T00:00:00Z"
LAYERS = ("cpython-3.11", "framework-numpy", "app-bench")

SPEC = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = []
platforms = ["linux_x86_64"]

[[frameworks]]
name = "numpy"
runtime = "cpython-3.11"
requirements = ["numpy>=2,<3"]

[[applications]]
name = "bench"
frameworks = ["numpy"]
launch_module = "bench_app.py"
requirements = []

[tool.uv]
exclude-newer = "{exclude_newer}"
"""

APP = """\
import numpy
print("numpy", numpy.__version__, numpy.__file__, int(numpy.arange(10).sum()))
"""


def _venvstacks(*args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "venvstacks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(
            f"venvstacks {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return elapsed, result


def _find_python() -> Path:
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = Path(root) / "versions"
    found = sorted(
        (p for p in versions.glob("3.11.*") if re.fullmatch(r"3\.11\.\d+", p.name)),
        key=lambda p: int(p.name.split(".")[2]),
    )
    for prefix in reversed(found):
        if (prefix / "bin" / "python3.11").is_file():
            return prefix / "bin" / "python3.11"
    which = shutil.which("python3.11")
    if which:
        return Path(which)
    sys.exit("no CPython 3.11 found (pass --python)")


def _python_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _tree_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink() and "__pycache__" not in path.parts:
                total += path.stat().st_size
    return total


def _task_times(stderr: str) -> dict[str, float]:
    times = {}
    for line in stderr.splitlines():
        match = re.match(r"\s+ok\s+archive:(\S+) \(([\d.]+) s\)", line)
        if match:
            times[match.group(1)] = float(match.group(2))
    return times


def _mb(size: int) -> str:
    return f"{size / 1e6:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, help="the CPython 3.11 to pack as the runtime")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--repeat", type=int, default=1, help="publish each variant N times, keep the fastest"
    )
    parser.add_argument(
        "--xz-levels", default="0,3,6", help="extra tar.xz presets to measure (default 0,3,6)"
    )
    args = parser.parse_args()
    python = args.python or _find_python()
    version = _python_version(python)
    xz_levels = [int(x) for x in args.xz_levels.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="vs-bench-") as tmp:
        work = args.keep.absolute() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runtimes = work / "runtimes"
        stack = work / "stack"
        stack.mkdir(exist_ok=True)
        (stack / "venvstacks.toml").write_text(
            SPEC.format(version=version, exclude_newer=EXCLUDE_NEWER)
        )
        (stack / "bench_app.py").write_text(APP)
        spec = str(stack / "venvstacks.toml")
        rt = ["--runtime-archives", str(runtimes)]

        print(f"runtime: CPython {version} from {python}; numpy locked with exclude-newer "
              f"{EXCLUDE_NEWER}; {os.cpu_count()} CPUs")  # fmt: skip
        t_pack, _ = _venvstacks("runtime", "pack", str(python), "-o", str(runtimes), cwd=work)
        t_lock, _ = _venvstacks("lock", spec, *rt, cwd=stack)
        t_build, _ = _venvstacks("build", spec, *rt, cwd=stack)
        numpy_line = (stack / "requirements" / "framework-numpy").glob("packages-*.txt")
        pinned = [
            line.strip()
            for path in numpy_line
            for line in path.read_text().splitlines()
            if line.startswith("numpy")
        ]
        print(f"runtime pack {t_pack:.1f} s, lock {t_lock:.1f} s, build {t_build:.1f} s; "
              f"{', '.join(pinned)}")  # fmt: skip
        raw = {layer: _tree_size(stack / "_build" / layer) for layer in LAYERS}

        runs: list[tuple[str, int, Path, float, dict[str, float], dict[str, int]]] = []
        variants = [(fmt, DEFAULT_LEVELS[fmt]) for fmt in FORMATS]
        variants += [("tar.xz", level) for level in xz_levels if level != DEFAULT_LEVELS["tar.xz"]]
        for fmt, level in variants:
            out = work / f"out-{fmt}-{level}"
            if out.exists():
                shutil.rmtree(out)
            best: tuple[float, subprocess.CompletedProcess[str]] | None = None
            for _ in range(max(1, args.repeat)):
                attempt = _venvstacks(
                    "-v", "publish", spec, "--format", fmt, "--compression-level", str(level),
                    "--output-dir", str(out), "--force", cwd=stack,
                )  # fmt: skip
                best = attempt if best is None or attempt[0] < best[0] else best
            assert best is not None
            elapsed, result = best
            sizes = {}
            for layer in LAYERS:
                meta = json.loads(
                    (out / "__venvstacks__" / "env_metadata" / f"{layer}.json").read_text()
                )
                sizes[layer] = int(meta["archive_size"])
            runs.append((fmt, level, out, elapsed, _task_times(result.stderr), sizes))

        deploy_times = {}
        for fmt, _level, out, *_ in runs[: len(FORMATS)]:
            target = work / f"deployed-{fmt}"
            if target.exists():
                shutil.rmtree(target)
            deploy_times[fmt], _ = _venvstacks("deploy", str(out), str(target), cwd=work)
            _, ran = _venvstacks("run", str(target), "bench", cwd=work)
            assert str(target / "framework-numpy") in ran.stdout, ran.stdout

        print()
        print("Uncompressed layer content (MB): " + ", ".join(
            f"{layer} {raw[layer] / 1e6:.2f}" for layer in LAYERS
        ))  # fmt: skip
        print()
        header = (
            f"{'format':8} {'level':>5} {'publish s':>9} "
            + " ".join(f"{layer + ' MB (s)':>24}" for layer in LAYERS)
            + f" {'total MB':>9} {'ratio':>6} {'deploy s':>8}"
        )
        print(header)
        print("-" * len(header))
        base_total = sum(runs[0][5].values())
        for fmt, level, _out, elapsed, times, sizes in runs:
            total = sum(sizes.values())
            cells = " ".join(
                f"{_mb(sizes[layer])} ({times.get(layer, float('nan')):5.1f} s)".rjust(24)
                for layer in LAYERS
            )
            deploy = f"{deploy_times[fmt]:8.1f}" if level == DEFAULT_LEVELS[fmt] else f"{'':8}"
            print(
                f"{fmt:8} {level:>5} {elapsed:9.1f} {cells} {_mb(total)} "
                f"{total / base_total:6.2f} {deploy}"
            )
        print()
        print("publish s: wall time of `venvstacks publish --force` (all layers, 2 compression")
        print("threads where the format has them); per-layer (s): the archive task's own time.")
        print("ratio: total size relative to tar.xz at its default level. deploy s: wall time of")
        print("`venvstacks deploy` (verify sha256, extract, post-install incl. bytecode) into an")
        print("empty folder.")


if __name__ == "__main__":
    main()
