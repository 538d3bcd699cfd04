#!/usr/bin/env python3
"""Side by side: our venvstacks against the original venvstacks from PyPI, on the same stacks.

Run from the repository root with our venv's Python (it needs ``pbs_installer`` and, to check
``.tar.zst`` archives, ``zstandard``)::

    .venv/bin/python benchmarks/compare_venvstacks.py          # 5 rounds, both stacks, 0.7.0
    .venv/bin/python benchmarks/compare_venvstacks.py --rounds 1 --stacks small
    .venv/bin/python benchmarks/compare_venvstacks.py --original 0.8.0b2

What it does, in one run:

1. Creates (or reuses) ``benchmarks/_work/compare/orig-venv-<VERSION>`` holding the ORIGINAL
   venvstacks ``--original VERSION`` from PyPI (default 0.7.0, the release issue 16's targets
   are set against; see ``EXTRA_REQUIREMENTS``), installed into a CPython 3.11.7 venv with
   pip's machine-wide configuration switched off, so that only PyPI is used.
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
   requirement change (``--lock-if-needed``). The last two count until the app's archive holds
   the change: where the original's ``build --publish`` leaves it stale, its
   ``publish --force --include app-X`` follows and is added. Ours runs twice: default settings
   (``tar.xz``) and ``--format tar.zst``.
4. Prints a Markdown report: medians, speed-ups (theirs / ours), archive sizes, issue 16's
   targets (met / NOT met, with the number), whether the published app archive really holds
   each change, whether both tools locked the same versions (pylock TOML, or 0.7's pip-style
   ``requirements-<layer>-<platform>.txt``), the machine and the tool versions; it is also
   written to ``benchmarks/_work/compare/last-report.md``, every run to ``last-results.json``.

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
import re
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
RUNTIMES = WORK / "runtimes"
UV_CACHE = WORK / "uv-cache"
STACKS = WORK / "stacks"
LAYER_CACHES = WORK / "layer-caches"
LOGS = WORK / "logs"
OURS = REPO / ".venv" / "bin" / "venvstacks"

# The targets (issue 16) are set against 0.7.0, the newest final release on PyPI; 0.8.0 final is
# not there (0.8.0b1/0.8.0b2 are pre-releases), and `--original 0.8.0b2` compares that instead.
DEFAULT_ORIGINAL = "0.7.0"
# Extra requirements per original version: 0.8.0b2 with a plain `pdm` pulls dependency versions
# that crash, `pdm[locked]` pins working ones. 0.7.0's own dependencies install fine.
EXTRA_REQUIREMENTS: dict[str, tuple[str, ...]] = {"0.8.0b2": ("pdm[locked]",)}

HOST_PYTHON_VERSION = "3.11.7"
RUNTIME_SPEC = f"cpython@{HOST_PYTHON_VERSION}"
EXCLUDE_NEWER = "2026-10-01T00:00:00Z"
PLATFORMS = '["linux_x86_64", "linux_aarch64", "macosx_arm64", "win_amd64"]'

# Issue 16's targets, theirs/ours with ours at default settings: (step, minimum ratio, label).
TARGETS = (
    ("cold", 8.0, "cold build + publish"),
    ("noop", 50.0, "no-op build + publish"),
    ("app-reqs-total", 25.0, "one app's requirement changed, until its archive is republished"),
)
EXTRA_RATIOS = (("app-edit-total", "one app's launch module edited, until republished (extra)"),)
MAX_SIZE_RATIO = 1.15  # total archive bytes, ours (default tar.xz) / theirs


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
class Original:
    """One release of the original venvstacks from PyPI, in its own venv."""

    version: str

    @property
    def venv(self) -> Path:
        return WORK / f"orig-venv-{self.version}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def exe(self) -> Path:
        return self.venv / "bin" / "venvstacks"

    @property
    def requirements(self) -> list[str]:
        return [f"venvstacks=={self.version}", *EXTRA_REQUIREMENTS.get(self.version, ())]

    @property
    def label(self) -> str:
        return f"venvstacks {self.version}"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    exe: Path
    original: bool
    archive_ext: str
    build_extra: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        if self.original:
            return [str(self.exe), *args]
        return [str(self.exe), *args, "--runtime-archives", str(RUNTIMES)]


@dataclass(frozen=True)
class Tools:
    """The variants compared in one run: ours at default settings, the original, ours tar.zst."""

    original: Original
    ours: Variant
    theirs: Variant
    zst: Variant

    @classmethod
    def for_original(cls, original: Original) -> Tools:
        return cls(
            original,
            Variant("ours", "ours (tar.xz, default)", OURS, False, ".tar.xz"),
            Variant("theirs", original.label, original.exe, True, ".tar.xz"),
            Variant(
                "ours-zst",
                "ours (--format tar.zst)",
                OURS,
                False,
                ".tar.zst",
                ("--format", "tar.zst"),
            ),
        )

    @property
    def all(self) -> tuple[Variant, ...]:
        return (self.ours, self.theirs, self.zst)


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


def run(
    argv: Sequence[str], log: Path, cwd: Path | None = None, layer_cache: Path | None = None
) -> tuple[float, float, int]:
    """Run a command, output to ``log``: (wall seconds, CPU seconds of its process tree, exit).

    ``layer_cache``: ours' layer cache folder for this command (VENVSTACKS_CACHE_DIR).
    """
    env = tool_env()
    if layer_cache is not None:
        env["VENVSTACKS_CACHE_DIR"] = str(layer_cache)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        cpu_start = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
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


def ensure_original(original: Original, notes: list[str]) -> None:
    """Create (or reuse) the venv holding ``original`` installed from PyPI only."""
    python, venv = original.python, original.venv
    if python.exists() and installed_version(python, "venvstacks") == original.version:
        notes.append(f"original's venv reused: {venv.relative_to(REPO)}")
        return
    shutil.rmtree(venv, ignore_errors=True)
    base = host_python() / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    log = LOGS / f"pip-install-original-{original.version}.log"
    elapsed, _, rc = run([str(python), "-m", "pip", "install", *original.requirements], log)
    if rc or installed_version(python, "venvstacks") != original.version:
        shutil.rmtree(venv, ignore_errors=True)
        sys.exit(f"pip install of {original.label} failed:\n{tail(log)}")
    notes.append(
        f"original's venv created: pip install {' '.join(original.requirements)} ({elapsed:.0f} s)"
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


@dataclass(frozen=True)
class LayerLock:
    """What one layer's lock file pins: normalised ``name==version`` and the artifacts listed."""

    pins: frozenset[str]
    artifacts: int
    kind: str  # "wheels" (pylock TOML) or "hashes" (pip-style requirements)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pylock(path: Path) -> LayerLock:
    """A ``pylock.<layer>.toml`` (ours and the original 0.8)."""
    packages = tomllib.loads(path.read_text()).get("packages", [])
    return LayerLock(
        frozenset(f"{normalise(p['name'])}=={p.get('version', '?')}" for p in packages),
        sum(len(p.get("wheels", [])) for p in packages),
        "wheels",
    )


def read_requirements_lock(path: Path) -> LayerLock:
    """A pip-style ``requirements-<layer>-<platform>.txt`` (the original 0.7): pins + hashes."""
    pins: set[str] = set()
    hashes = 0
    for line in path.read_text().splitlines():
        hashes += line.count("--hash=")
        text = line.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not text or line[:1].isspace() or text.startswith("-"):
            continue
        name, sep, version = text.split(";", 1)[0].strip().partition("==")
        pins.add(f"{normalise(name.split('[', 1)[0])}=={version.strip() if sep else '?'}")
    return LayerLock(frozenset(pins), hashes, "hashes")


def layer_locks(stack_dir: Path) -> dict[str, LayerLock]:
    """Each layer's lock, keyed by its ``requirements/<layer>`` folder, whichever format."""
    locks: dict[str, LayerLock] = {}
    for folder in sorted(p for p in (stack_dir / "requirements").glob("*") if p.is_dir()):
        pylock = sorted(folder.glob("pylock.*.toml"))
        machine = f"linux_{platform.machine()}"
        txt = sorted(folder.glob(f"requirements-*-{machine}.txt"))
        if pylock:
            locks[folder.name] = read_pylock(pylock[0])
        elif txt:
            locks[folder.name] = read_requirements_lock(txt[0])
    return locks


def locked_pins(stack_dir: Path) -> dict[str, set[str]]:
    return {layer: set(lock.pins) for layer, lock in layer_locks(stack_dir).items()}


def locked_artifacts(stack_dir: Path) -> str:
    """How many artifacts the lock files list, e.g. ``"52 wheels"``."""
    locks = layer_locks(stack_dir).values()
    kinds = sorted({lock.kind for lock in locks}) or ["artifacts"]
    return f"{sum(lock.artifacts for lock in locks)} {'/'.join(kinds)}"


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
    ("app-reqs", "one app: requirement added, build --lock-if-needed --publish"),
    (
        "app-reqs-fixed",
        "then `publish --force --include <app>` to get it archived (theirs, when needed)",
    ),
    ("app-reqs-total", "one app's requirement added, until its archive is republished"),
    ("app-edit", "extra: one app's launch module edited, build --publish"),
    (
        "app-edit-fixed",
        "then `publish --force --include <app>` to get it archived (theirs, when needed)",
    ),
    ("app-edit-total", "extra: one app's launch module edited, until its archive is republished"),
)
FOLLOW_UP_STEPS = ("app-reqs-fixed", "app-edit-fixed")


class Runner:
    def __init__(
        self, stack: Stack, tools: Tools, runtime_archive: Path, results: Results, round_no: int
    ):
        self.stack = stack
        self.tools = tools
        self.runtime_archive = runtime_archive
        self.results = results
        self.round_no = round_no
        self.failed: set[str] = set()
        self.unpack_seconds = 0.0
        for variant in tools.all:
            if not variant.original:
                shutil.rmtree(self.layer_cache(variant), ignore_errors=True)
                self.layer_cache(variant).mkdir(parents=True)

    def layer_cache(self, variant: Variant) -> Path:
        """Ours' layer cache for this round: empty at its start, one per variant, so that no
        step is served by entries an earlier round, run or variant left (a user's change is
        new; the original has no such cache)."""
        return LAYER_CACHES / f"{self.stack.name}-r{self.round_no}-{variant.key}"

    def check(self, text: str) -> None:
        self.results.checks.append((self.stack.name, self.round_no, text))

    def folder(self, variant: Variant) -> Path:
        return STACKS / self.stack.name / variant.key

    def spec(self, variant: Variant) -> Path:
        return self.folder(variant) / "venvstacks.toml"

    def app_archive(self, variant: Variant) -> Path:
        name = f"app-{self.stack.edited_app}{variant.archive_ext}"
        return self.folder(variant) / "_artifacts" / name

    def timed(self, variant: Variant, step: str, argv: list[str]) -> bool:
        if variant.key in self.failed:
            return False
        log = LOGS / f"{self.stack.name}-r{self.round_no}-{variant.key}-{step}.log"
        cache = None if variant.original else self.layer_cache(variant)
        seconds, cpu, rc = run(argv, log, cwd=self.folder(variant), layer_cache=cache)
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

    def last(self, step: str, variant: Variant) -> tuple[float, float]:
        """The latest (wall, CPU) seconds of ``step`` for ``variant``."""
        key = (self.stack.name, step, variant.key)
        return self.results.times[key][-1], self.results.cpu[key][-1]

    def build_publish(self, variant: Variant, *extra: str) -> list[str]:
        return variant.command(
            "build", str(self.spec(variant)), *extra, "--publish", *variant.build_extra
        )

    @staticmethod
    def shown(variant: Variant, *extra: str) -> str:
        """``build_publish``'s command as the report shows it (no paths)."""
        return " ".join(("build", *extra, "--publish", *variant.build_extra))

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
        archives = sorted((self.folder(variant) / "_artifacts").glob("*" + variant.archive_ext))
        before = {p.name: p.stat().st_mtime_ns for p in archives}
        if not self.timed(variant, "noop", self.build_publish(variant)):
            return
        rewritten = [p.name for p in archives if p.stat().st_mtime_ns != before[p.name]]
        self.check(
            f"{variant.key}: the no-op `{self.shown(variant)}` rewrote "
            + (", ".join(rewritten) if rewritten else "no archive")
        )

    def until_republished(
        self,
        variant: Variant,
        step: str,
        extra: tuple[str, ...],
        what: str,
        holds: Callable[[], bool],
    ) -> None:
        """Time ``build [extra] --publish``; if the app archive then lacks the change, time the
        original's follow-up (``publish --force --include app-X``); record the sum as
        ``<step>-total`` only when the archive finally holds the change."""
        if not self.timed(variant, step, self.build_publish(variant, *extra)):
            return
        archive = self.app_archive(variant)
        fresh = holds()
        self.check(
            f"{variant.key}: after `{self.shown(variant, *extra)}`, {archive.name} {what}: "
            + ("yes" if fresh else "NO")
        )
        total, cpu = self.last(step, variant)
        if not fresh and variant.original:
            include = f"app-{self.stack.edited_app}"
            fix = variant.command(
                "publish", str(self.spec(variant)), "--force", "--include", include
            )
            if self.timed(variant, f"{step}-fixed", fix):
                fresh = holds()
                self.check(
                    f"{variant.key}: after `publish --force --include {include}`, "
                    f"{archive.name} {what}: {'yes' if fresh else 'NO'}"
                )
                more, more_cpu = self.last(f"{step}-fixed", variant)
                total, cpu = total + more, cpu + more_cpu
        if fresh:
            self.results.add(self.stack.name, f"{step}-total", variant.key, total)
            key = (self.stack.name, f"{step}-total", variant.key)
            self.results.cpu.setdefault(key, []).append(cpu)

    def step_app_edit(self, variant: Variant) -> None:
        marker = f"EDIT_MARKER_ROUND_{self.round_no}"
        with (self.folder(variant) / self.stack.edited_module).open("a") as f:
            f.write(f"\n{marker} = True\n")
        self.until_republished(
            variant,
            "app-edit",
            (),
            "holds the edited launch module",
            lambda: archive_has(self.app_archive(variant), self.stack.edited_module, marker),
        )

    def step_app_reqs(self, variant: Variant) -> None:
        spec = self.spec(variant)
        text = spec.read_text()
        old = (
            f'launch_module = "{self.stack.edited_module}"\n'
            f"requirements = [{self.stack.added_requirement}]"
        )
        assert old in text, "edited app's requirements not found in the spec"
        new = old.replace("]", f', "{self.stack.added_package}"]')
        spec.write_text(text.replace(old, new))
        package = f"/{self.stack.added_package}/"
        self.until_republished(
            variant,
            "app-reqs",
            ("--lock-if-needed",),
            f"holds the added {self.stack.added_package}",
            lambda: any(package in name for name in archive_members(self.app_archive(variant))),
        )

    def lock_agreement(self, when: str) -> None:
        ours_dir, theirs_dir = self.folder(self.tools.ours), self.folder(self.tools.theirs)
        ours, theirs = locked_pins(ours_dir), locked_pins(theirs_dir)
        if not ours or not theirs:
            self.check(f"{when}: lock files NOT found (ours {len(ours)}, theirs {len(theirs)})")
            return
        if ours == theirs:
            count = sum(len(v) for v in ours.values())
            self.check(
                f"{when}: both tools locked the same {count} package pins in {len(ours)} layers "
                f"(artifacts listed in the lock files: ours {locked_artifacts(ours_dir)}, "
                f"theirs {locked_artifacts(theirs_dir)})"
            )
        else:
            diffs = []
            for layer in sorted(set(ours) | set(theirs)):
                a, b = ours.get(layer, set()), theirs.get(layer, set())
                if a != b:
                    diffs.append(f"{layer}: ours-only {sorted(a - b)}, theirs-only {sorted(b - a)}")
            self.check(f"{when}: locks DIFFER: " + "; ".join(diffs))


def run_round(stack: Stack, tools: Tools, archive: Path, results: Results, round_no: int) -> None:
    runner = Runner(stack, tools, archive, results, round_no)
    try:
        _run_steps(runner, tools, stack, round_no)
    finally:
        shutil.rmtree(LAYER_CACHES, ignore_errors=True)


def _run_steps(runner: Runner, tools: Tools, stack: Stack, round_no: int) -> None:
    shift = (round_no - 1) % len(tools.all)
    order = tools.all[shift:] + tools.all[:shift]
    print(
        f"\n== {stack.name} stack, round {round_no}: order {', '.join(v.key for v in order)}",
        flush=True,
    )
    # The launch-module edit comes before the requirement change: the requirement change is the
    # target, and its archive check (the added package) does not depend on the edit.
    steps: list[Callable[[Variant], None]] = [
        runner.step_lock,
        runner.step_cold,
        runner.step_noop,
        runner.step_app_edit,
        runner.step_app_reqs,
    ]
    for step in steps:
        for variant in order:
            step(variant)
        if step == runner.step_lock:
            runner.lock_agreement("after `lock`")
        elif step == runner.step_app_reqs:
            runner.lock_agreement("after the requirement change")


def warm_up(stack: Stack, tools: Tools, archive: Path) -> None:
    """Fill the shared uv cache (untimed): each tool locks and builds once, without publishing."""
    print(f"== warm-up ({stack.name}): filling the shared uv cache, untimed", flush=True)
    for variant in (tools.ours, tools.theirs):
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
            seconds, _, rc = run(argv, log, cwd=folder, layer_cache=LAYER_CACHES / "warm-up")
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


def cpu_table(stack: Stack, results: Results, tools: Tools) -> list[str]:
    name = tools.original.version
    out = [
        (
            "CPU time (user + sys of the tool's whole process tree, medians; less disturbed than "
            "wall time by other work on this shared machine):"
        ),
        "",
        f"| measurement | ours CPU (s) | {name} CPU (s) | {name}/ours | ours tar.zst CPU (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for step, label in STEPS:
        o = results.cpu_median(stack.name, step, tools.ours.key)
        t = results.cpu_median(stack.name, step, tools.theirs.key)
        z = results.cpu_median(stack.name, step, tools.zst.key)
        if o is None and t is None:
            continue
        out.append(f"| {label} | {fmt(o)} | {fmt(t)} | {ratio(t, o)} | {fmt(z)} |")
    return out


def target_lines(stack: Stack, results: Results, tools: Tools) -> list[str]:
    version = tools.original.version
    out = [f"Targets (issue 16: {version}/ours, ours at default settings, medians):"]
    if version != DEFAULT_ORIGINAL:
        out.append(
            f"- note: the targets are set against {DEFAULT_ORIGINAL}; this run compares {version}"
        )
    for step, target, label in TARGETS:
        o = results.median(stack.name, step, tools.ours.key)
        t = results.median(stack.name, step, tools.theirs.key)
        if o is None or t is None:
            out.append(f"- {label}: ≥{target:g}x: NOT met (not measured)")
            continue
        got = t / o
        verdict = "met" if got >= target else "NOT met"
        extra = ""
        if step == "cold":
            o2 = results.median(stack.name, "cold+unpack", tools.ours.key)
            t2 = results.median(stack.name, "cold+unpack", tools.theirs.key)
            extra = f"; counting the original's runtime unpack {ratio(t2, o2)}"
        cpu = ratio(
            results.cpu_median(stack.name, step, tools.theirs.key),
            results.cpu_median(stack.name, step, tools.ours.key),
        )
        out.append(
            f"- {label}: ≥{target:g}x: {verdict}, {got:.1f}x "
            f"({version} {t:.2f} s, ours {o:.2f} s{extra}; CPU time {cpu})"
        )
    sizes_o = sum(results.sizes.get((stack.name, tools.ours.key), {}).values())
    sizes_t = sum(results.sizes.get((stack.name, tools.theirs.key), {}).values())
    if sizes_o and sizes_t:
        got = sizes_o / sizes_t
        verdict = "met" if got <= MAX_SIZE_RATIO else "NOT met"
        out.append(
            f"- archive size, ours/{version} (all layers, tar.xz): ≤{MAX_SIZE_RATIO:g}x: "
            f"{verdict}, {got:.3f}x ({sizes_o:,} against {sizes_t:,} bytes)"
        )
    else:
        out.append(f"- archive size: ≤{MAX_SIZE_RATIO:g}x: NOT met (not measured)")
    for step, label in EXTRA_RATIOS:
        o = results.median(stack.name, step, tools.ours.key)
        t = results.median(stack.name, step, tools.theirs.key)
        out.append(f"- {label}: {ratio(t, o)} ({version} {fmt(t)} s, ours {fmt(o)} s)")
    out.append("")
    return out


def stack_section(stack: Stack, results: Results, tools: Tools) -> list[str]:
    name = tools.original.version
    out: list[str] = []
    out.append("")
    out.append(f"### Stack `{stack.name}`: {stack.description}")
    out.append("")
    out.append(
        f"| measurement | ours (s) | {name} (s) | {name}/ours | ours tar.zst (s) "
        f"| {name}/ours-zst |"
    )
    out.append("|---|---:|---:|---:|---:|---:|")
    for step, label in STEPS:
        o = results.median(stack.name, step, tools.ours.key)
        t = results.median(stack.name, step, tools.theirs.key)
        z = results.median(stack.name, step, tools.zst.key)
        if step in FOLLOW_UP_STEPS:
            if t is None:
                continue
            out.append(f"| {label} | | {fmt(t)} | | | |")
            continue
        out.append(f"| {label} | {fmt(o)} | {fmt(t)} | {ratio(t, o)} | {fmt(z)} | {ratio(t, z)} |")
    out.append("")
    out.extend(cpu_table(stack, results, tools))
    out.append("")
    sizes = {v.key: results.sizes.get((stack.name, v.key), {}) for v in tools.all}
    layers = sorted({name.split(".tar")[0] for s in sizes.values() for name in s})
    out.append(f"| archive | ours tar.xz (bytes) | {name} tar.xz (bytes) | ours tar.zst (bytes) |")
    out.append("|---|---:|---:|---:|")
    for layer in layers:
        cells = []
        for v in tools.all:
            size = sizes[v.key].get(layer + v.archive_ext)
            cells.append("-" if size is None else f"{size:,}")
        out.append(f"| {layer} | " + " | ".join(cells) + " |")
    totals = [sum(sizes[v.key].values()) for v in tools.all]
    out.append("| **total** | " + " | ".join(f"**{t:,}**" for t in totals) + " |")
    out.append("")
    out.extend(target_lines(stack, results, tools))
    out.append("All runs (s):")
    for step, _ in STEPS:
        parts = []
        for v in tools.all:
            values = results.times.get((stack.name, step, v.key))
            if values:
                parts.append(f"{v.key} " + ", ".join(f"{x:.2f}" for x in values))
        if parts:
            out.append(f"- {step}: " + "; ".join(parts))
    return out


def original_lines(original: Original) -> list[str]:
    python = str(original.python)
    theirs_cli = capture([str(original.exe), "--version"])
    uv = capture([python, "-m", "uv", "--version"]).split()
    deps = ", ".join(
        f"{dist} {installed_version(original.python, dist)}" for dist in ("pbs-installer", "pdm")
    )
    out = [
        (
            f"- theirs: venvstacks {installed_version(original.python, 'venvstacks')} from PyPI "
            f"(`pip install {' '.join(original.requirements)}` into "
            f"`{original.venv.relative_to(REPO)}`), uv {uv[1] if len(uv) > 1 else '?'}, {deps}"
        )
    ]
    if not theirs_cli.startswith("venvstacks:"):
        reason = "Missing command." if "Missing command" in theirs_cli else theirs_cli[-200:]
        out.append(
            f'- note: the original\'s `venvstacks --version` fails (exit 2, "{reason}"; '
            "`venvstacks --version show` works); its version was read from its metadata"
        )
    return out


def report(
    stacks: Sequence[Stack],
    tools: Tools,
    results: Results,
    notes: list[str],
    rounds: int,
    started: dt.datetime,
    load_at_start: str,
) -> str:
    out: list[str] = []
    ours_version = capture([str(OURS), "--version"])
    version = tools.original.version
    out.append(
        f"- ours against venvstacks {version}; date: {started:%Y-%m-%d %H:%M} UTC; "
        f"{rounds} round(s), medians shown"
    )
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
    out.extend(original_lines(tools.original))
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
        "- ours' layer cache: a folder of its own per round and variant, empty at the round's "
        "start (`VENVSTACKS_CACHE_DIR`), so no step restores what an earlier round, run or "
        "variant built: the requirement change is locked and installed, as the original does"
    )
    out.append(
        "- builds: `build SPEC --publish` for both (ours: default settings, tar.xz preset 1; "
        "the original: tar.xz at Python's default preset 6); the requirements step adds "
        "`--lock-if-needed` (both tools). Where the original's `build --publish` leaves the "
        "app archive without the change, `publish --force --include app-X` follows and counts"
    )
    out.extend(f"- {note}" for note in notes)
    for stack in stacks:
        out.extend(stack_section(stack, results, tools))
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


def results_json(tools: Tools, results: Results) -> str:
    """``last-results.json``: the original's version and every run, keyed ``stack / step / tool``."""

    def keyed(values: dict[tuple[str, str, str], list[float]]) -> dict[str, list[float]]:
        return {" / ".join(k): v for k, v in values.items()}

    return json.dumps(
        {
            "original": tools.original.version,
            "times": keyed(results.times),
            "cpu": keyed(results.cpu),
            "sizes": {" / ".join(k): v for k, v in results.sizes.items()},
        },
        indent=2,
        sort_keys=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stacks", default="small,multi", help="comma-separated: small, multi")
    parser.add_argument(
        "--original",
        default=DEFAULT_ORIGINAL,
        metavar="VERSION",
        help=f"venvstacks release from PyPI to compare against (default {DEFAULT_ORIGINAL})",
    )
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
    tools = Tools.for_original(Original(args.original))
    ensure_original(tools.original, notes)
    archive = ensure_runtime(notes)
    results = Results()
    if not args.no_warm_up:
        for stack in stacks:
            warm_up(stack, tools, archive)
    for stack in stacks:
        for round_no in range(1, args.rounds + 1):
            run_round(stack, tools, archive, results, round_no)
    text = report(stacks, tools, results, notes, args.rounds, started, load_at_start)
    (WORK / "last-report.md").write_text(text)
    (WORK / "last-results.json").write_text(results_json(tools, results))
    print("\n" + text)


if __name__ == "__main__":
    main()
