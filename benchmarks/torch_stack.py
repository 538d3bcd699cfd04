"""Benchmark: the PyTorch example stack (issue 16's large real stack), each step beside its floor.

    .venv/bin/python benchmarks/torch_stack.py [--workdir DIR] [--wheels DIR] [--format FMT]
                                               [--no-original] [--keep]

The stack is `specs/pytorch` (a runtime, a torch framework of about 800 MB installed, two apps),
copied without its locks into the work folder (default benchmarks/_work/torch, git-ignored) and
locked there once, untimed, with the torch wheel from --wheels (default /opt/wheels) through
`--local-wheels`; the runtime is this machine's CPython 3.11 packed once with
`venvstacks runtime pack` and given through `--runtime-archives`. Every command runs with
PIP_CONFIG_FILE=/dev/null and no PIP_*/UV_* variables of the caller, so the machine's pip
configuration cannot reach the build (the product also cleans the environment of what it runs).
uv's download cache is the user's (warm after the first run); the layer cache is off throughout.

In one run, each of ours followed by its floor on the same bytes:
- cold build + publish (`build --publish --no-layer-cache` into empty build and output folders);
  floor: `cp -a` of the built layer folders + `tar -cf - | xz -T0 ...` of them (for tar.xz,
  with the writer's block size, x86 filter and LZMA2 options; the format's own tool on all
  cores for the others);
- publish alone into a fresh output folder; floor: the compression above;
- deploy into a fresh folder; floor: `sha256sum` of each archive + `tar -I 'xz -T0' -xf` of each
  + `python -m compileall -q -j 0` over the layers' lib folders with the deployed runtime;
- one app's requirement changed (app-tiny-model gains or loses `six`), until republished (lock,
  build, publish); floor: `cp -a` + compression of that app's built folder;
- archive sizes: ours, the floor's compressor, and (unless --no-original) what venvstacks 0.7.0
  writes for the same trees: Python's tarfile `w:xz` at its default preset 6 without
  `__pycache__`, which is what 0.7.0 does (computed here rather than running 0.7.0 itself,
  which takes about ten minutes on this stack; the result is kept in the work folder's
  original-sizes.json for later runs on the same file names and sizes).
Each of ours reports its wall time, the CPU seconds of its whole process tree, the peak RSS of
the venvstacks process itself (`ru_maxrss` of RUSAGE_SELF, read at exit) and the largest peak
RSS among all its processes (`os.wait4`'s `ru_maxrss`, what `/usr/bin/time -v` reports: uv,
compileall workers and other children count separately). Target: at most 300 MB for publish
and deploy whatever the layer size. Work folders are reused by later runs; --keep keeps the
deployed and copied trees, otherwise they are removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_runtime import find_host_python

SPEC = REPO / "specs" / "pytorch"
RSS_TARGET_MB = 300
SIZE_TARGET = 1.15
CHANGED_APP = "tiny-model"
ADDED = "six"

# Runs the venvstacks CLI in this process and, at exit, writes the peak RSS (kB) of this
# process and of its largest waited-for child to the file named by BENCH_RSS.
_WRAP = (
    "import atexit, os, resource, runpy, sys\n"
    "def _rss():\n"
    "    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "    with open(os.environ['BENCH_RSS'], 'w') as out: out.write(f'{me} {kids}')\n"
    "atexit.register(_rss)\n"
    "sys.argv[0] = 'venvstacks'\n"
    "runpy.run_module('venvstacks', run_name='__main__', alter_sys=True)\n"
)


def _xz_floor() -> str:
    """`xz` on all cores doing the writer's own work: its block size, the x86 filter on x86
    hosts and its default LZMA2 options (preset 1 with a deeper search, see publish/xz.py)."""
    from venvstacks.publish.xz import XZ_CHUNK_SIZE, XZ_LZMA2_DEFAULT, host_machine_code_filter

    names = {"dict_size": "dict", "nice_len": "nice"}
    lzma2 = ",".join(f"{names.get(key, key)}={value}" for key, value in XZ_LZMA2_DEFAULT.items())
    x86 = "--x86 " if host_machine_code_filter() else ""
    return f"xz -T0 --block-size={XZ_CHUNK_SIZE} {x86}--lzma2={lzma2}"


COMPRESS = {"tar.xz": _xz_floor(), "tar.zst": "zstd -T0 -3", "tar.gz": "gzip -6"}
DECOMPRESS = {"tar.xz": "xz -T0", "tar.zst": "zstd -T0", "tar.gz": "gzip"}


@dataclass
class Run:
    """One measured command: wall and CPU seconds, peak RSS in MB (itself, largest of all)."""

    wall: float
    cpu: float
    rss_self: float = 0.0
    rss_max: float = 0.0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def measure(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, ok: int = 0
) -> Run:
    """Run ``argv`` (exit on a code above ``ok``); wall, CPU of the process tree, peak RSS."""
    start = time.perf_counter()
    with subprocess.Popen(
        argv, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if not 0 <= proc.returncode <= ok:
        sys.exit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{output.decode()}")
    return Run(wall, usage.ru_utime + usage.ru_stime, 0.0, usage.ru_maxrss / 1024)


def shell(command: str, cwd: Path | None = None) -> Run:
    return measure(["bash", "-o", "pipefail", "-c", command], cwd=cwd)


def venvstacks(args: list[str], cwd: Path, rss_file: Path) -> Run:
    """A whole venvstacks CLI process, with its own peak RSS beside the largest of its tree."""
    env = {**clean_env(), "BENCH_RSS": str(rss_file)}
    run = measure([sys.executable, "-c", _WRAP, *args], cwd=cwd, env=env)
    me, kids = (int(v) / 1024 for v in rss_file.read_text().split())
    run.rss_self = me
    run.rss_max = max(run.rss_max, me, kids)
    return run


class Stack:
    """The benchmark's copy of specs/pytorch and the folders it builds into."""

    def __init__(self, workdir: Path, wheels: Path, fmt: str) -> None:
        self.workdir = workdir
        self.wheels = wheels
        self.fmt = fmt
        self.project = workdir / "stack"
        self.build_dir = self.project / "_build"
        self.artifacts = self.project / "_artifacts"
        self.runtimes = workdir / "runtimes"
        self.rss_file = workdir / "rss.txt"

    def common(self) -> list[str]:
        return ["--local-wheels", str(self.wheels), "--runtime-archives", str(self.runtimes)]

    def prepare(self) -> None:
        """Pack the runtime and lock the stack's copy (both once; untimed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not any(self.runtimes.glob("cpython-*.tar.gz")):
            python = find_host_python("3.11")
            measure([sys.executable, "-m", "venvstacks", "runtime", "pack", str(python),
                     "-o", str(self.runtimes)])  # fmt: skip
        self.project.mkdir(exist_ok=True)
        for source in SPEC.glob("*.py"):
            shutil.copy2(source, self.project / source.name)
        shutil.copy2(SPEC / "venvstacks.toml", self.project / "venvstacks.toml")
        self.cli(["lock", "venvstacks.toml", *self.common()])

    def cli(self, args: list[str]) -> Run:
        return venvstacks(args, self.project, self.rss_file)

    def layers(self) -> list[str]:
        return sorted(p.name for p in self.build_dir.iterdir() if not p.name.startswith("."))

    def archives(self, folder: Path | None = None) -> list[Path]:
        folder = folder or self.artifacts
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def cold_build_publish(self) -> Run:
        shutil.rmtree(self.build_dir, ignore_errors=True)
        shutil.rmtree(self.artifacts, ignore_errors=True)
        args = ["build", "venvstacks.toml", *self.common(), "--publish", "--no-layer-cache"]
        return self.cli([*args, "--format", self.fmt])

    def publish_fresh(self, out: Path) -> Run:
        shutil.rmtree(out, ignore_errors=True)
        return self.cli(["publish", "venvstacks.toml", "--output-dir", str(out),
                         "--format", self.fmt])  # fmt: skip

    def change_one_app(self) -> tuple[Run, str]:
        """Toggle the changed app's extra requirement; lock, build and republish it."""
        spec = self.project / "venvstacks.toml"
        text = spec.read_text()
        block = re.search(rf'name = "{CHANGED_APP}"\n(?:.*\n)*?requirements = \[(.*)\]', text)
        assert block is not None, "the changed app's requirements line"
        new = "" if block.group(1) else f'"{ADDED}"'
        spec.write_text(text[: block.start(1)] + new + text[block.end(1) :])
        args = ["build", "venvstacks.toml", *self.common(), "--lock-if-needed", "--publish"]
        run = self.cli([*args, "--no-layer-cache", "--format", self.fmt])
        return run, f"requirements = [{new}]"


def copy_floor(build_dir: Path, layers: list[str], dest: Path) -> Run:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    return measure(["cp", "-a", *(str(build_dir / name) for name in layers), str(dest)])


def compress_floor(build_dir: Path, layers: list[str], fmt: str, out: Path) -> tuple[Run, int]:
    run = shell(
        f"tar -cf - --exclude=__pycache__ {' '.join(layers)} | {COMPRESS[fmt]} > {out}",
        cwd=build_dir,
    )
    size = out.stat().st_size
    out.unlink()
    return run, size


def deploy_floor(archives: list[Path], fmt: str, dest: Path) -> dict[str, Run]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    steps = {"hash": measure(["sha256sum", *map(str, archives)])}
    steps["extract"] = shell(
        " && ".join(f"tar -I '{DECOMPRESS[fmt]}' -xf {a} -C {dest}" for a in archives)
    )
    runtime = next(p for p in dest.iterdir() if p.name.startswith("cpython"))
    libs = [str(p / "lib") for p in sorted(dest.iterdir()) if (p / "lib").is_dir()]
    # (exit 1: torch ships a few test files with Python 3.12 syntax, skipped as deploy does)
    steps["compile"] = measure(
        [str(runtime / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", *libs], ok=1
    )
    return steps


def _original_size(folder: Path) -> tuple[int, float]:
    """venvstacks 0.7.0's tar.xz of one layer: tarfile `w:xz` at preset 6, no __pycache__."""
    start = time.process_time()
    sink = _Counting()
    with tarfile.open(fileobj=sink, mode="w:xz", preset=6) as tar:  # type: ignore[call-overload]
        tar.add(
            folder,
            arcname=folder.name,
            filter=lambda info: None if "__pycache__" in info.name.split("/") else info,
        )
    size = sink.size
    return size, time.process_time() - start


class _Counting:
    """A write-only sink that keeps only the byte count."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _tree_key(build_dir: Path, layers: list[str]) -> str:
    """The layers' file names and sizes: what the original's archive size depends on."""
    digest = hashlib.sha256()
    for name in layers:
        for path in sorted((build_dir / name).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(build_dir)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def original_sizes(
    build_dir: Path, layers: list[str], cache: Path
) -> tuple[dict[str, int], float, bool]:
    """0.7.0's archive size per layer, its CPU seconds, and whether it came from ``cache``
    (a previous run's result for the same file names and sizes: a preset-6 pass takes minutes)."""
    key = _tree_key(build_dir, layers)
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["sizes"], saved["cpu"], True
    with ProcessPoolExecutor(max(1, min(len(layers), os.cpu_count() or 1))) as pool:
        results = dict(
            zip(layers, pool.map(_original_size, [build_dir / n for n in layers]), strict=True)
        )
    sizes = {n: r[0] for n, r in results.items()}
    cpu = sum(r[1] for r in results.values())
    cache.write_text(json.dumps({"key": key, "sizes": sizes, "cpu": cpu}))
    return sizes, cpu, False


def fmt_run(run: Run) -> str:
    return f"{run.wall:.1f} | {run.cpu:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_work" / "torch")
    parser.add_argument("--wheels", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--format", default="tar.xz", choices=sorted(COMPRESS))
    parser.add_argument("--no-original", action="store_true", help="skip 0.7.0's archive size")
    parser.add_argument("--keep", action="store_true", help="keep deployed and copied trees")
    args = parser.parse_args()
    stack = Stack(args.workdir.absolute(), args.wheels.absolute(), args.format)
    stack.prepare()
    work = stack.workdir
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    cold = stack.cold_build_publish()
    layers = stack.layers()
    installed = sum(
        f.lstat().st_size
        for n in layers
        for f in (stack.build_dir / n).rglob("*")
        if f.is_file() and not f.is_symlink()
    )
    copy = copy_floor(stack.build_dir, layers, work / "copy")
    compress, floor_size = compress_floor(
        stack.build_dir, layers, args.format, work / f"floor.{args.format}"
    )
    original: dict[str, int] = {}
    original_cpu = 0.0
    cached = False
    if not args.no_original:
        original, original_cpu, cached = original_sizes(
            stack.build_dir, layers, work / "original-sizes.json"
        )
    publish = stack.publish_fresh(work / "republished")
    ours_sizes = {a.name: a.stat().st_size for a in stack.archives()}

    deploy_dest = work / "deployed"
    shutil.rmtree(deploy_dest, ignore_errors=True)
    deploy = stack.cli(["deploy", str(stack.artifacts), str(deploy_dest)])
    dfloor = deploy_floor(stack.archives(), args.format, work / "floor-deployed")

    change, what = stack.change_one_app()
    app = f"app-{CHANGED_APP}"
    app_copy = copy_floor(stack.build_dir, [app], work / "copy-app")
    app_compress, _ = compress_floor(
        stack.build_dir, [app], args.format, work / f"floor-app.{args.format}"
    )
    load_end = os.getloadavg()

    if not args.keep:
        for name in ("copy", "copy-app", "deployed", "floor-deployed", "republished"):
            shutil.rmtree(work / name, ignore_errors=True)

    ours_total = sum(ours_sizes.values())
    dfloor_wall = sum(r.wall for r in dfloor.values())
    dfloor_cpu = sum(r.cpu for r in dfloor.values())
    print(f"date: {started}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(
        "load average (1/5/15 min): start "
        + "/".join(f"{v:.1f}" for v in load_start)
        + ", end "
        + "/".join(f"{v:.1f}" for v in load_end)
    )
    print(f"stack: {', '.join(layers)}; {installed / 1e6:.0f} MB installed; format {args.format}")
    print()
    print("| step | ours wall s | ours CPU s | floor wall s | floor CPU s | ratio (wall) | "
          "peak RSS venvstacks MB | peak RSS largest process MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")

    def row(name: str, ours: Run, floor_wall: float, floor_cpu: float, rss: bool = True) -> None:
        rss_cols = f"{ours.rss_self:.0f} | {ours.rss_max:.0f}" if rss else " | "
        # (a floor of a few KB of copying says nothing: the change's real cost is uv's)
        ratio = f"{ours.wall / floor_wall:.2f}x" if floor_wall >= 0.1 else "n/a"
        print(
            f"| {name} | {fmt_run(ours)} | {floor_wall:.2f} | {floor_cpu:.2f} | "
            f"{ratio} | {rss_cols} |"
        )

    row("cold build + publish (floor: cp -a + compress)", cold,
        copy.wall + compress.wall, copy.cpu + compress.cpu)  # fmt: skip
    row(f"publish alone (floor: `{COMPRESS[args.format]}`)", publish, compress.wall, compress.cpu)
    row("deploy (floor: sha256sum + tar + compileall)", deploy, dfloor_wall, dfloor_cpu)
    row(f"one app changed, republished (`{what}`)", change,
        app_copy.wall + app_compress.wall, app_copy.cpu + app_compress.cpu)  # fmt: skip
    print()
    print("floor steps (wall s / CPU s): "
          f"cp -a {copy.wall:.1f}/{copy.cpu:.1f}, compress {compress.wall:.1f}/{compress.cpu:.1f}; "
          + ", ".join(f"{k} {v.wall:.1f}/{v.cpu:.1f}" for k, v in dfloor.items()))  # fmt: skip
    print()
    print("| archives | bytes |")
    print("|---|---|")
    for name, size in ours_sizes.items():
        print(f"| ours: {name} | {size:,} |")
    print(f"| **ours total** | **{ours_total:,}** |")
    print(f"| floor's compressor (`{COMPRESS[args.format]}`, one archive) | {floor_size:,} |")
    if original:
        original_total = sum(original.values())
        how = "from an earlier run on the same files" if cached else f"{original_cpu:.0f} CPU s"
        print(f"| 0.7.0's (tarfile xz preset 6, per layer; {how}) | {original_total:,} |")
    print()
    rss = max(publish.rss_self, cold.rss_self, deploy.rss_self)
    verdict = "met" if rss <= RSS_TARGET_MB else "NOT met"
    print(f"peak RSS of the venvstacks process (publish, build+publish, deploy): {rss:.0f} MB "
          f"(target at most {RSS_TARGET_MB} MB: {verdict})")  # fmt: skip
    if original:
        ratio = ours_total / sum(original.values())
        verdict = "met" if ratio <= SIZE_TARGET else "NOT met"
        print(f"archive size ours / 0.7.0's: {ratio:.3f}x (target at most {SIZE_TARGET}x: "
              f"{verdict})")  # fmt: skip
    (work / "last-run.json").write_text(
        json.dumps(
            {
                "date": started,
                "cold": vars(cold),
                "publish": vars(publish),
                "deploy": vars(deploy),
                "change": vars(change),
                "sizes": ours_sizes,
                "original": original,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
