#!/usr/bin/env python3
"""Side by side: our venvstacks against the original venvstacks from PyPI, on the same stacks.

Run from the repository root with our venv's Python (it needs ``pbs_installer`` and, to check
``.tar.zst`` archives, ``zstandard``)::

    .venv/bin/python benchmarks/compare_venvstacks.py            # 5 rounds, both stacks
    .venv/bin/python benchmarks/compare_venvstacks.py --rounds 1 --stacks small

What it does, in one run:

1. Creates (or reuses) ``benchmarks/_work/compare/orig-venv`` holding the ORIGINAL venvstacks
   from PyPI (``ORIGINAL_REQUIREMENTS`` below), installed with pip's machine-wide configuration
   switched off, so that only PyPI is used.
2. Packs this machine's pyenv CPython 3.11.7 into a relocatable runtime archive with OUR
   ``venvstacks runtime pack``. Both tools get that same runtime: ours through
   ``--runtime-archives``; the original by unpacking it beforehand to
   ``<build dir>/cpython@3.11.7/`` (``bin/python3`` inside), the folder where the original's
   runtime installer looks for an already present interpreter before it downloads one.
   The stacks name ``cpython@3.11.7``, a release that the original's pbs-installer knows, so
   the folder name is right and no download is attempted (GitHub is unreachable here).
3. Runs both tools on identical copies of each stack (one folder per tool), interleaved step by
   step with the order rotated each round, timing: lock (cold), cold build + publish from the
   committed locks, a no-op build + publish, a one-app launch-module edit, and a one-app
   requirements change. Ours runs twice: default settings (``tar.xz``) and ``--format tar.zst``.
4. Prints a Markdown report: medians, speed-ups (theirs / ours), archive sizes, whether the
   published app archive really holds the edit, whether both tools locked the same versions,
   the machine and the tool versions.

The original is never changed or patched; it only gets its runtime pre-placed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work" / "compare"
ORIG_VENV = WORK / "orig-venv"
RUNTIMES = WORK / "runtimes"
UV_CACHE = WORK / "uv-cache"
STACKS = WORK / "stacks"
LOGS = WORK / "logs"
OURS = REPO / ".venv" / "bin" / "venvstacks"
THEIRS = ORIG_VENV / "bin" / "venvstacks"

# venvstacks 0.8.0 final is not on PyPI (as of this run the index holds 0.7.0 as the newest final
# release and 0.8.0b1/0.8.0b2 as pre-releases), so the newest 0.8 build there is compared.
# `pdm[locked]`: a plain `pdm` pulls dependency versions that crash.
ORIGINAL_VERSION = "0.8.0b2"
ORIGINAL_REQUIREMENTS = [f"venvstacks=={ORIGINAL_VERSION}", "pdm[locked]"]

HOST_PYTHON_VERSION = "3.11.7"
RUNTIME_SPEC = f"cpython@{HOST_PYTHON_VERSION}"
EXCLUDE_NEWER = "2026-10-01T00:00:00Z"
PLATFORMS = '["linux_x86_64", "linux_aarch64", "macosx_arm64", "win_amd64"]'

TARGETS = {"cold": 5.0, "noop": 20.0, "app-edit": 20.0}


# ---------------------------------------------------------------------------------------------
# Stacks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    name: str
    description: str
    spec: str
    modules: dict[str, str]
    edited_app: str  # application layer name whose launch module and requirements get changed
    edited_module: str
    added_requirement: str  # (spec-file line inside that app's requirements list, package name)
    added_package: str


_RUNTIME = f"""\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "{RUNTIME_SPEC}"
requirements = []
platforms = {PLATFORMS}
"""

_UV = f"""
[tool.uv]
exclude-newer = "{EXCLUDE_NEWER}"
"""

SMALL = Stack(
    name="small",
    description="runtime + numpy framework + 1 app (like specs/demo)",
    spec=_RUNTIME
    + """
[[frameworks]]
name = "numpy"
runtime = "cpython-3.11"
requirements = ["numpy>=2,<3"]

[[applications]]
name = "demo"
frameworks = ["numpy"]
launch_module = "demo_app.py"
requirements = ["tabulate>=0.9"]
"""
    + _UV,
    modules={
        "demo_app.py": (
            "import numpy\nimport tabulate\n\n"
            "print(tabulate.tabulate([['numpy', numpy.__version__]]))\n"
        ),
    },
    edited_app="demo",
    edited_module="demo_app.py",
    added_requirement='"tabulate>=0.9"',
    added_package="colorama",
)

MULTI = Stack(
    name="multi",
    description="runtime + 2 frameworks (numpy, pydantic) + 3 apps",
    spec=_RUNTIME
    + """
[[frameworks]]
name = "numpy"
runtime = "cpython-3.11"
requirements = ["numpy>=2,<3"]

[[frameworks]]
name = "pydantic"
runtime = "cpython-3.11"
requirements = ["pydantic>=2,<3"]

[[applications]]
name = "calc"
frameworks = ["numpy"]
launch_module = "calc_app.py"
requirements = ["tabulate>=0.9"]

[[applications]]
name = "models"
frameworks = ["pydantic"]
launch_module = "models_app.py"
requirements = ["idna>=3"]

[[applications]]
name = "report"
frameworks = ["numpy", "pydantic"]
launch_module = "report_app.py"
requirements = ["rich>=13"]
"""
    + _UV,
    modules={
        "calc_app.py": (
            "import numpy\nimport tabulate\n\n"
            "print(tabulate.tabulate([['sum', numpy.arange(10).sum()]]))\n"
        ),
        "models_app.py": (
            "import idna\nimport pydantic\n\n\n"
            "class Host(pydantic.BaseModel):\n    name: str\n\n\n"
            "print(Host(name=idna.encode('example.org').decode()))\n"
        ),
        "report_app.py": (
            "import numpy\nimport pydantic\nimport rich\n\n"
            "rich.print({'numpy': numpy.__version__, 'pydantic': pydantic.VERSION})\n"
        ),
    },
    edited_app="calc",
    edited_module="calc_app.py",
    added_requirement='"tabulate>=0.9"',
    added_package="colorama",
)

ALL_STACKS = {s.name: s for s in (SMALL, MULTI)}


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    original: bool
    archive_ext: str
    build_extra: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        if self.original:
            return [str(THEIRS), *args]
        return [str(OURS), *args, "--runtime-archives", str(RUNTIMES)]


OURS_XZ = Variant("ours", "ours (tar.xz, default)", False, ".tar.xz")
THEIRS_V = Variant("theirs", f"venvstacks {ORIGINAL_VERSION}", True, ".tar.xz")
OURS_ZST = Variant(
    "ours-zst", "ours (--format tar.zst)", False, ".tar.zst", ("--format", "tar.zst")
)
VARIANTS = (OURS_XZ, THEIRS_V, OURS_ZST)


def tool_env() -> dict[str, str]:
    """The environment both tools run in: no pip configuration, one shared uv cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VENVSTACKS_"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's pip config adds local indexes/wheels
    env["UV_CACHE_DIR"] = str(UV_CACHE)
    env.pop("VIRTUAL_ENV", None)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: Sequence[str], log: Path, cwd: Path | None = None) -> tuple[float, float, int]:
    """Run a command, output to ``log``: (wall seconds, CPU seconds of its process tree, exit)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        cpu_start = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=cwd, env=tool_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
        elapsed = time.perf_counter() - start
    return elapsed, _children_cpu() - cpu_start, proc.returncode


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def capture(argv: Sequence[str]) -> str:
    proc = subprocess.run(argv, env=tool_env(), capture_output=True, text=True, check=False)
    return (proc.stdout + proc.stderr).strip()


# ---------------------------------------------------------------------------------------------
# Setup: the original's venv and the shared runtime
# ---------------------------------------------------------------------------------------------


def host_python() -> Path:
    root = capture(["pyenv", "root"]) or str(Path.home() / ".pyenv")
    prefix = Path(root) / "versions" / HOST_PYTHON_VERSION
    if not (prefix / "bin" / "python3").exists():
        sys.exit(f"no CPython {HOST_PYTHON_VERSION} at {prefix}")
    return prefix


def installed_version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    return capture([str(python), "-c", code])


def ensure_original(notes: list[str]) -> None:
    python = ORIG_VENV / "bin" / "python"
    if python.exists() and installed_version(python, "venvstacks") == ORIGINAL_VERSION:
        notes.append(f"original's venv reused: {ORIG_VENV.relative_to(REPO)}")
        return
    shutil.rmtree(ORIG_VENV, ignore_errors=True)
    base = host_python() / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", str(ORIG_VENV)], check=True)
    log = LOGS / "pip-install-original.log"
    elapsed, _, rc = run([str(python), "-m", "pip", "install", *ORIGINAL_REQUIREMENTS], log)
    if rc:
        sys.exit(f"pip install of the original failed:\n{tail(log)}")
    notes.append(
        f"original's venv created: pip install {' '.join(ORIGINAL_REQUIREMENTS)} ({elapsed:.0f} s)"
    )


def ensure_runtime(notes: list[str]) -> Path:
    archives = sorted(RUNTIMES.glob(f"cpython-{HOST_PYTHON_VERSION}+local-*-install_only.tar.gz"))
    if not archives:
        log = LOGS / "runtime-pack.log"
        elapsed, _, rc = run(
            [str(OURS), "runtime", "pack", str(host_python()), "-o", str(RUNTIMES)], log
        )
        if rc:
            sys.exit(f"venvstacks runtime pack failed:\n{tail(log)}")
        notes.append(f"runtime packed by ours (`venvstacks runtime pack`) in {elapsed:.1f} s")
        archives = sorted(RUNTIMES.glob(f"cpython-{HOST_PYTHON_VERSION}+local-*.tar.gz"))
    archive = archives[0]
    notes.append(f"shared runtime: {archive.name} ({archive.stat().st_size:,} bytes)")
    return archive


def pre_place_runtime(archive: Path, build_dir: Path) -> float:
    """Unpack the runtime where the original looks before downloading: <build>/cpython@X.Y.Z/.

    The original resolves the spec's version with pbs-installer (``get_download_link``), and
    reuses ``<build dir>/<that version's str()>`` when it holds ``bin/python3``; it then moves
    that folder to ``<build dir>/<runtime layer name>``.
    """
    from pbs_installer import get_download_link, install_file

    version, _ = get_download_link(
        HOST_PYTHON_VERSION, implementation="cpython", arch=platform.machine(), build_dir=False
    )
    target = build_dir / str(version)
    assert target.name == RUNTIME_SPEC, target
    start = time.perf_counter()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    install_file(str(archive), str(target), archive.name)
    if not (target / "bin" / "python3").exists():
        sys.exit(f"pre-placed runtime lacks bin/python3: {target}")
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Checks on results
# ---------------------------------------------------------------------------------------------


def _open_tar(archive: Path, stack: contextlib.ExitStack) -> tarfile.TarFile:
    if archive.name.endswith(".tar.zst"):
        import zstandard

        with archive.open("rb") as raw:
            data = zstandard.ZstdDecompressor().stream_reader(raw).read()
        return stack.enter_context(tarfile.open(fileobj=io.BytesIO(data), mode="r:"))
    return stack.enter_context(tarfile.open(archive, mode="r:*"))


def archive_members(archive: Path) -> dict[str, bytes]:
    """Names and contents of the Python files in a layer archive (tar.xz or tar.zst)."""
    out: dict[str, bytes] = {}
    with contextlib.ExitStack() as stack:
        tar = _open_tar(archive, stack)
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name] = handle.read()
    return out


def archive_has(archive: Path, module: str, marker: str) -> bool:
    for name, content in archive_members(archive).items():
        if name.endswith("/" + module) and marker.encode() in content:
            return True
    return False


def archive_sizes(output_dir: Path, ext: str) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(output_dir.glob("*" + ext))}


def locked_wheels(stack_dir: Path) -> int:
    total = 0
    for lock in sorted((stack_dir / "requirements").glob("*/pylock.*.toml")):
        data = tomllib.loads(lock.read_text())
        total += sum(len(p.get("wheels", [])) for p in data.get("packages", []))
    return total


def locked_pins(stack_dir: Path) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for lock in sorted((stack_dir / "requirements").glob("*/pylock.*.toml")):
        data = tomllib.loads(lock.read_text())
        pins[lock.parent.name] = {
            f"{p['name']}=={p.get('version', '?')}" for p in data.get("packages", [])
        }
    return pins


# ---------------------------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    times: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    sizes: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    checks: list[tuple[str, int, str]] = field(default_factory=list)  # stack, round, text
    preplace: list[float] = field(default_factory=list)
    cpu: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    def add(self, stack: str, step: str, variant: str, seconds: float) -> None:
        self.times.setdefault((stack, step, variant), []).append(seconds)

    def median(self, stack: str, step: str, variant: str) -> float | None:
        values = self.times.get((stack, step, variant))
        return statistics.median(values) if values else None

    def cpu_median(self, stack: str, step: str, variant: str) -> float | None:
        values = self.cpu.get((stack, step, variant))
        return statistics.median(values) if values else None


STEPS = (
    ("lock", "lock (cold: no locks, empty build dir)"),
    ("lock+unpack", "same, counting the original's runtime unpack (done untimed before it)"),
    ("cold", "cold build + publish (locks present, empty build and output dirs)"),
    ("cold+unpack", "same, counting the original's runtime unpack (done untimed before it)"),
    ("noop", "no-op build + publish"),
    ("app-edit", "one app: launch module edited, build + publish"),
    (
        "app-edit-fixed",
        "then `publish --force --include <app>` to get that edit archived (theirs only)",
    ),
    ("app-edit-total", "one app edited, until its archive holds the edit"),
    ("app-reqs", "one app: requirement added, build --lock-if-needed + publish"),
)


class Runner:
    def __init__(self, stack: Stack, runtime_archive: Path, results: Results, round_no: int):
        self.stack = stack
        self.runtime_archive = runtime_archive
        self.results = results
        self.round_no = round_no
        self.failed: set[str] = set()
        self.unpack_seconds = 0.0

    def check(self, text: str) -> None:
        self.results.checks.append((self.stack.name, self.round_no, text))

    def folder(self, variant: Variant) -> Path:
        return STACKS / self.stack.name / variant.key

    def spec(self, variant: Variant) -> Path:
        return self.folder(variant) / "venvstacks.toml"

    def timed(self, variant: Variant, step: str, argv: list[str]) -> bool:
        if variant.key in self.failed:
            return False
        log = LOGS / f"{self.stack.name}-r{self.round_no}-{variant.key}-{step}.log"
        seconds, cpu, rc = run(argv, log, cwd=self.folder(variant))
        if rc:
            self.failed.add(variant.key)
            self.results.failures.append(
                f"{self.stack.name} round {self.round_no} {variant.key} {step}: exit {rc}, "
                f"log {log.relative_to(REPO)}\n{tail(log, 15)}"
            )
            print(f"  {variant.key:9} {step:15} FAILED (exit {rc}), see {log}", flush=True)
            return False
        self.results.add(self.stack.name, step, variant.key, seconds)
        self.results.cpu.setdefault((self.stack.name, step, variant.key), []).append(cpu)
        if step in ("lock", "cold"):
            # the same measurement with the original's (untimed) runtime unpack added back
            unpack = self.unpack_seconds if variant.original else 0.0
            self.results.add(self.stack.name, f"{step}+unpack", variant.key, seconds + unpack)
        print(f"  {variant.key:9} {step:15} {seconds:8.2f} s", flush=True)
        return True

    def build_publish(self, variant: Variant, *extra: str) -> list[str]:
        return variant.command(
            "build", str(self.spec(variant)), *extra, "--publish", *variant.build_extra
        )

    # Each step runs for every variant before the next step starts (interleaving).
    def step_lock(self, variant: Variant) -> None:
        folder = self.folder(variant)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.spec(variant).write_text(self.stack.spec)
        for name, text in self.stack.modules.items():
            (folder / name).write_text(text)
        if variant.original:
            self.unpack_seconds = pre_place_runtime(self.runtime_archive, folder / "_build")
            self.results.preplace.append(self.unpack_seconds)
        self.timed(variant, "lock", variant.command("lock", str(self.spec(variant))))

    def step_cold(self, variant: Variant) -> None:
        folder = self.folder(variant)
        shutil.rmtree(folder / "_build", ignore_errors=True)
        shutil.rmtree(folder / "_artifacts", ignore_errors=True)
        if variant.original and variant.key not in self.failed:
            self.unpack_seconds = pre_place_runtime(self.runtime_archive, folder / "_build")
            self.results.preplace.append(self.unpack_seconds)
        if self.timed(variant, "cold", self.build_publish(variant)):
            sizes = archive_sizes(folder / "_artifacts", variant.archive_ext)
            self.results.sizes[(self.stack.name, variant.key)] = sizes
            if variant.original:
                # the pre-placed folder was taken (moved) rather than a download attempted
                leftover = folder / "_build" / RUNTIME_SPEC
                if leftover.exists():
                    self.check("the original: pre-placed runtime NOT consumed")

    def step_noop(self, variant: Variant) -> None:
        self.timed(variant, "noop", self.build_publish(variant))

    def step_app_edit(self, variant: Variant) -> None:
        folder = self.folder(variant)
        marker = f"EDIT_MARKER_ROUND_{self.round_no}"
        with (folder / self.stack.edited_module).open("a") as f:
            f.write(f"\n{marker} = True\n")
        if not self.timed(variant, "app-edit", self.build_publish(variant)):
            return
        archive = folder / "_artifacts" / f"app-{self.stack.edited_app}{variant.archive_ext}"
        fresh = archive_has(archive, self.stack.edited_module, marker)
        self.check(
            f"{variant.key}: after `build --publish`, {archive.name} holds the edit: "
            + ("yes" if fresh else "NO")
        )
        total = self.results.times[(self.stack.name, "app-edit", variant.key)][-1]
        if not fresh and variant.original:
            argv = variant.command(
                "publish",
                str(self.spec(variant)),
                "--force",
                "--include",
                f"app-{self.stack.edited_app}",
            )
            if self.timed(variant, "app-edit-fixed", argv):
                fresh = archive_has(archive, self.stack.edited_module, marker)
                self.check(
                    f"{variant.key}: after `publish --force --include app-{self.stack.edited_app}`, "
                    f"{archive.name} holds the edit: {'yes' if fresh else 'NO'}"
                )
                total += self.results.times[(self.stack.name, "app-edit-fixed", variant.key)][-1]
        if fresh:
            self.results.add(self.stack.name, "app-edit-total", variant.key, total)

    def step_app_reqs(self, variant: Variant) -> None:
        spec = self.spec(variant)
        text = spec.read_text()
        old = f'launch_module = "{self.stack.edited_module}"\nrequirements = [{self.stack.added_requirement}]'
        assert old in text, "edited app's requirements not found in the spec"
        new = old.replace("]", f', "{self.stack.added_package}"]')
        spec.write_text(text.replace(old, new))
        if not self.timed(variant, "app-reqs", self.build_publish(variant, "--lock-if-needed")):
            return
        archive = (
            self.folder(variant)
            / "_artifacts"
            / f"app-{self.stack.edited_app}{variant.archive_ext}"
        )
        has_pkg = any(f"/{self.stack.added_package}/" in name for name in archive_members(archive))
        self.check(
            f"{variant.key}: after adding "
            f"{self.stack.added_package}, {archive.name} contains it: {'yes' if has_pkg else 'NO'}"
        )

    def lock_agreement(self) -> None:
        ours, theirs = locked_pins(self.folder(OURS_XZ)), locked_pins(self.folder(THEIRS_V))
        if not ours or not theirs:
            return
        if ours == theirs:
            count = sum(len(v) for v in ours.values())
            wheels_o = locked_wheels(self.folder(OURS_XZ))
            wheels_t = locked_wheels(self.folder(THEIRS_V))
            self.check(
                f"both tools locked the same {count} package pins in {len(ours)} layers "
                f"(wheels listed in the lock files: ours {wheels_o}, theirs {wheels_t})"
            )
        else:
            diffs = []
            for layer in sorted(set(ours) | set(theirs)):
                a, b = ours.get(layer, set()), theirs.get(layer, set())
                if a != b:
                    diffs.append(f"{layer}: ours-only {sorted(a - b)}, theirs-only {sorted(b - a)}")
            self.check("locks DIFFER: " + "; ".join(diffs))


def run_round(stack: Stack, archive: Path, results: Results, round_no: int) -> None:
    runner = Runner(stack, archive, results, round_no)
    shift = (round_no - 1) % len(VARIANTS)
    order = VARIANTS[shift:] + VARIANTS[:shift]
    print(
        f"\n== {stack.name} stack, round {round_no}: order {', '.join(v.key for v in order)}",
        flush=True,
    )
    steps: list[Callable[[Variant], None]] = [
        runner.step_lock,
        runner.step_cold,
        runner.step_noop,
        runner.step_app_edit,
        runner.step_app_reqs,
    ]
    for index, step in enumerate(steps):
        for variant in order:
            step(variant)
        if index == 0:
            runner.lock_agreement()


def warm_up(stack: Stack, archive: Path) -> None:
    """Fill the shared uv cache (untimed): each tool locks and builds once, without publishing."""
    print(f"== warm-up ({stack.name}): filling the shared uv cache, untimed", flush=True)
    for variant in (OURS_XZ, THEIRS_V):
        folder = STACKS / stack.name / f"warmup-{variant.key}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "venvstacks.toml").write_text(stack.spec)
        for name, text in stack.modules.items():
            (folder / name).write_text(text)
        if variant.original:
            pre_place_runtime(archive, folder / "_build")
        spec = str(folder / "venvstacks.toml")
        for step, argv in (
            ("lock", variant.command("lock", spec)),
            ("build", variant.command("build", spec)),
        ):
            log = LOGS / f"warmup-{stack.name}-{variant.key}-{step}.log"
            seconds, _, rc = run(argv, log, cwd=folder)
            if rc:
                sys.exit(f"warm-up {variant.key} {step} failed:\n{tail(log)}")
            print(f"  {variant.key:9} {step:15} {seconds:8.2f} s (untimed)", flush=True)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None or ours <= 0:
        return "-"
    return f"{theirs / ours:.1f}x"


def cpu_table(stack: Stack, results: Results) -> list[str]:
    out = [
        (
            "CPU time (user + sys of the tool's whole process tree, medians; less disturbed than "
            "wall time by other work on this shared machine):"
        ),
        "",
        "| measurement | ours CPU (s) | theirs CPU (s) | theirs/ours | ours tar.zst CPU (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for step, label in STEPS:
        o = results.cpu_median(stack.name, step, OURS_XZ.key)
        t = results.cpu_median(stack.name, step, THEIRS_V.key)
        z = results.cpu_median(stack.name, step, OURS_ZST.key)
        if o is None and t is None:
            continue
        out.append(f"| {label} | {fmt(o)} | {fmt(t)} | {ratio(t, o)} | {fmt(z)} |")
    return out


def target_lines(stack: Stack, results: Results) -> list[str]:
    out: list[str] = []
    out.append("Targets (default settings, theirs/ours):")
    for step, target in TARGETS.items():
        key = "app-edit-total" if step == "app-edit" else step
        o = results.median(stack.name, key, OURS_XZ.key)
        t = results.median(stack.name, key, THEIRS_V.key)
        if o is None or t is None:
            out.append(f"- {step}: ≥{target:.0f}x - not measured")
            continue
        got = t / o
        verdict = "met" if got >= target else "NOT met"
        extra = ""
        if step == "cold":
            o2 = results.median(stack.name, "cold+unpack", OURS_XZ.key)
            t2 = results.median(stack.name, "cold+unpack", THEIRS_V.key)
            extra = f" (counting the original's runtime unpack: {ratio(t2, o2)})"
        out.append(f"- {step}: ≥{target:.0f}x - got {got:.1f}x{extra}: {verdict}")
    out.append("")
    return out


def stack_section(stack: Stack, results: Results) -> list[str]:
    out: list[str] = []
    out.append("")
    out.append(f"### Stack `{stack.name}`: {stack.description}")
    out.append("")
    out.append(
        "| measurement | ours (s) | theirs (s) | theirs/ours | ours tar.zst (s) | theirs/ours-zst |"
    )
    out.append("|---|---:|---:|---:|---:|---:|")
    for step, label in STEPS:
        o = results.median(stack.name, step, OURS_XZ.key)
        t = results.median(stack.name, step, THEIRS_V.key)
        z = results.median(stack.name, step, OURS_ZST.key)
        if step == "app-edit-fixed":
            if t is None:
                continue
            out.append(f"| {label} | | {fmt(t)} | | | |")
            continue
        out.append(f"| {label} | {fmt(o)} | {fmt(t)} | {ratio(t, o)} | {fmt(z)} | {ratio(t, z)} |")
    out.append("")
    out.extend(cpu_table(stack, results))
    out.append("")
    sizes = {v.key: results.sizes.get((stack.name, v.key), {}) for v in VARIANTS}
    layers = sorted({name.split(".tar")[0] for s in sizes.values() for name in s})
    out.append("| archive | ours tar.xz (bytes) | theirs tar.xz (bytes) | ours tar.zst (bytes) |")
    out.append("|---|---:|---:|---:|")
    for layer in layers:
        cells = []
        for v in VARIANTS:
            size = sizes[v.key].get(layer + v.archive_ext)
            cells.append("-" if size is None else f"{size:,}")
        out.append(f"| {layer} | " + " | ".join(cells) + " |")
    totals = [sum(sizes[v.key].values()) for v in VARIANTS]
    out.append("| **total** | " + " | ".join(f"**{t:,}**" for t in totals) + " |")
    out.append("")
    out.extend(target_lines(stack, results))
    out.append("All runs (s):")
    for step, _ in STEPS:
        parts = []
        for v in VARIANTS:
            values = results.times.get((stack.name, step, v.key))
            if values:
                parts.append(f"{v.key} " + ", ".join(f"{x:.2f}" for x in values))
        if parts:
            out.append(f"- {step}: " + "; ".join(parts))
    return out


def report(
    stacks: Sequence[Stack],
    results: Results,
    notes: list[str],
    rounds: int,
    started: dt.datetime,
    load_at_start: str,
) -> str:
    out: list[str] = []
    ours_version = capture([str(OURS), "--version"])
    theirs_cli = capture([str(THEIRS), "--version"])
    theirs_version = installed_version(ORIG_VENV / "bin" / "python", "venvstacks")
    out.append(f"- date: {started:%Y-%m-%d %H:%M} UTC; {rounds} round(s), medians shown")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out.append(
        f"- load average at the start: {load_at_start}; at the end: {load} (1, 5, 15 min). The "
        "machine is shared with other work, so wall times carry noise; CPU times are given too"
    )
    out.append(
        f"- machine: {os.cpu_count()} CPUs (nproc {capture(['nproc'])}), {cpu_model()}, "
        f"{platform.system()} {platform.release()}"
    )
    out.append(
        f"- ours: `{ours_version}` (commit {capture(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'])}), "
        f"uv {capture([str(REPO / '.venv/bin/python'), '-m', 'uv', '--version']).split()[1]}"
    )
    out.append(
        f"- theirs: venvstacks {theirs_version} from PyPI (`pip install "
        f"{' '.join(ORIGINAL_REQUIREMENTS)}`), uv "
        f"{capture([str(ORIG_VENV / 'bin/python'), '-m', 'uv', '--version']).split()[1]}, "
        f"pbs-installer {installed_version(ORIG_VENV / 'bin/python', 'pbs-installer')}, "
        f"pdm {installed_version(ORIG_VENV / 'bin/python', 'pdm')}"
    )
    if not theirs_cli.startswith("venvstacks:"):
        reason = "Missing command." if "Missing command" in theirs_cli else theirs_cli[-200:]
        out.append(
            f'- note: the original\'s `venvstacks --version` fails (exit 2, "{reason}"; '
            "`venvstacks --version show` works); its version was read from its metadata"
        )
    out.append(
        f"- runtime: this machine's pyenv CPython {HOST_PYTHON_VERSION}, packed once by ours; spec "
        f'`python_implementation = "{RUNTIME_SPEC}"` in both stacks (a release the original\'s '
        f"pbs-installer knows, so it looks in `_build/{RUNTIME_SPEC}/`, finds `bin/python3` there "
        "and never downloads). Ours unpacks the archive inside its timed runs; the original's "
        f"copy is unpacked before its timed runs (median {statistics.median(results.preplace or [0]):.2f} s, "
        "not counted: a handicap for ours)"
    )
    out.append(
        f"- every command: `PIP_CONFIG_FILE={os.devnull}`, no `PIP_*`/`UV_*` variables but one shared "
        "`UV_CACHE_DIR`, warmed by an untimed lock + build of each tool first; steps interleaved "
        "(each step runs for every tool before the next step), order rotated each round"
    )
    out.append(
        "- builds: `build SPEC --publish` for both (ours: default settings, tar.xz preset 1; "
        "the original: tar.xz at Python's default preset 6); the requirements step adds "
        "`--lock-if-needed`"
    )
    out.extend(f"- {note}" for note in notes)
    for stack in stacks:
        out.extend(stack_section(stack, results))
    out.append("")
    out.append("Checks:")
    grouped: dict[tuple[str, str], list[int]] = {}
    for stack_name, round_no, text in results.checks:
        grouped.setdefault((stack_name, text), []).append(round_no)
    for (stack_name, text), round_nos in grouped.items():
        which = ", ".join(str(n) for n in round_nos)
        plural = "s" if len(round_nos) > 1 else ""
        out.append(f"- {stack_name}, round{plural} {which}: {text}")
    if results.failures:
        out.append("")
        out.append("Failures:")
        for failure in results.failures:
            out.append("```")
            out.append(failure)
            out.append("```")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stacks", default="small,multi", help="comma-separated: small, multi")
    parser.add_argument("--no-warm-up", action="store_true")
    args = parser.parse_args()
    stacks = [ALL_STACKS[name] for name in args.stacks.split(",") if name]
    started = dt.datetime.now(dt.UTC)
    load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if not OURS.exists():
        sys.exit(f"our venvstacks is not installed at {OURS}")
    for folder in (WORK, LOGS, RUNTIMES, UV_CACHE, STACKS):
        folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    ensure_original(notes)
    archive = ensure_runtime(notes)
    results = Results()
    if not args.no_warm_up:
        for stack in stacks:
            warm_up(stack, archive)
    for stack in stacks:
        for round_no in range(1, args.rounds + 1):
            run_round(stack, archive, results, round_no)
    text = report(stacks, results, notes, args.rounds, started, load_at_start)
    (WORK / "last-report.md").write_text(text)
    (WORK / "last-results.json").write_text(
        json.dumps({" / ".join(k): v for k, v in results.times.items()}, indent=2, sort_keys=True)
    )
    print("\n" + text)


if __name__ == "__main__":
    main()
