"""Regenerate the lockfile golden data: tiny wheels, real uv exports, expected outputs.

Run from the repository root with the dev venv (needs uv; no network unless --pypi):

    .venv/bin/python tests/data/lockfile/make_golden.py [--pypi]

1. Builds deterministic tiny wheels (and one sdist) into ``wheels/``.
2. For each layer of ``scenario.json`` in order, writes a uv project (``[project]`` +
   ``[tool.uv]`` with ``no-index``, ``find-links``, ``no-build`` and the lower layers' pins as
   ``constraint-dependencies``), runs ``uv lock`` and ``uv export --format pylock.toml``, and
   stores the export in ``raw/`` with the wheel directory replaced by ``@WHEELHOUSE@``, plus the
   constraints it used in ``raw/constraints.<env>.txt``.
3. Post-processes every scenario case with ``venvstacks.lock.pylock`` into ``expected/`` (the
   golden outputs the tests compare against: review the diff before committing).

``--pypi`` also re-exports ``raw/pylock.pypi.toml`` from PyPI (with ``exclude-newer``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from venvstacks.lock import pylock as lockfile
from venvstacks.plan.platforms import TargetPlatform, parse_linux_target

PLACEHOLDER = "@WHEELHOUSE@"
FAKE_ROOT = Path("/project")  # tests substitute FAKE_ROOT / "wheels" for the placeholder
UV = str(REPO / ".venv" / "bin" / "uv")
PYTHON = REPO / ".venv" / "bin" / "python"
DATE = (2020, 1, 1, 0, 0, 0)

# name, version, platform tags (one wheel each), Requires-Dist
WHEELS: list[tuple[str, str, list[str], list[str]]] = [
    ("alpha", "1.0", ["any"], []),
    ("beta", "2.0", ["any"], ["alpha>=1.0", 'gamma; sys_platform == "win32"']),
    ("gamma", "1.5", ["any"], []),
    (
        "delta",
        "3.0",
        ["manylinux_2_17_x86_64.manylinux2014_x86_64", "win_amd64", "macosx_11_0_arm64"],
        [],
    ),
    (
        "epsilon",
        "1.0",
        ["manylinux_2_35_x86_64", "manylinux_2_17_aarch64", "macosx_10_13_universal2", "win_amd64"],
        [],
    ),
    (
        "zeta",
        "1.0",
        ["any"],
        ['eta; sys_platform == "linux"', 'iota; sys_platform == "emscripten"'],
    ),
    ("eta", "1.0", ["linux_x86_64"], []),
    ("iota", "1.0", ["any"], []),
    ("kappa", "1.0", ["any"], []),
    ("lam", "1.0", ["any"], []),
    ("lam", "2.0", ["any"], []),
    ("theta", "1.0", ["any"], []),
]
SDISTS = [("kappa", "1.0")]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out: Path, name: str, version: str, platform: str, requires: list[str]) -> None:
    dist_info = f"{name}-{version}.dist-info"
    tag = f"py3-none-{platform}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    purelib = "true" if platform == "any" else "false"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: make_golden\nRoot-Is-Purelib: {purelib}\n"
            + "".join(f"Tag: py3-none-{p}\n" for p in platform.split("."))
        ).encode(),
    }
    record = [_record_line(path, data) for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(out / f"{name}-{version}-{tag}.whl", "w") as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, DATE), data)


def build_sdist(out: Path, name: str, version: str) -> None:
    root = f"{name}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, data in {f"{root}/PKG-INFO": pkg_info, f"{root}/setup.py": b""}.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), 1577836800
            archive.addfile(info, io.BytesIO(data))
    # gzip.compress(mtime=0) keeps the archive byte-identical between runs
    (out / f"{root}.tar.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def build_wheelhouse(wheels: Path) -> None:
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    for name, version, platforms, requires in WHEELS:
        for platform in platforms:
            build_wheel(wheels, name, version, platform, requires)
    for name, version in SDISTS:
        build_sdist(wheels, name, version)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def uv_export(project: Path, name: str, requirements: list[str], tool_uv: str) -> str:
    project.mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0"\n'
        f"dependencies = {_toml_list(sorted(requirements))}\n"
        'requires-python = "==3.11.*"\n\n'
        f"[tool.uv]\n{tool_uv}"
    )
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    common = ["--project", str(project), "--python", str(PYTHON), "--no-managed-python"]
    common += ["--quiet", "--no-color"]
    subprocess.run([UV, "lock", "--upgrade", *common], check=True, env=env)
    export = [UV, "export", "--format", "pylock.toml", "--locked", "--no-header"]
    export += ["--no-emit-project", "--no-annotate", *common]
    return subprocess.run(export, check=True, env=env, capture_output=True, text=True).stdout


def make_raw(scenario: dict[str, Any], wheels: Path, work: Path) -> None:
    raw = HERE / "raw"
    raw.mkdir(exist_ok=True)
    processed: dict[str, str] = {}
    for env_name, layer in scenario["layers"].items():
        lower = lockfile.LowerLayerPackages.from_lock_texts(
            processed[name] for name in layer["lower"]
        )
        constraints = lockfile.constraint_dependencies(lower)
        tool_uv = (
            f"no-index = true\nno-build = true\nfind-links = {_toml_list([str(wheels)])}\n"
            f"constraint-dependencies = {_toml_list(constraints)}\n"
        )
        text = uv_export(work / env_name, env_name, layer["requirements"], tool_uv)
        (raw / f"pylock.{env_name}.toml").write_text(text.replace(str(wheels), PLACEHOLDER))
        (raw / f"constraints.{env_name}.txt").write_text("".join(f"{c}\n" for c in constraints))
        processed[env_name] = process(text, env_name, layer, processed, wheels).text


def process(
    text: str,
    env_name: str,
    case: dict[str, Any],
    processed: dict[str, str],
    wheels: Path,
) -> lockfile.ProcessedLock:
    linux = case.get("linux_target")
    return lockfile.process_lock(
        text,
        env_name=env_name,
        targets=[TargetPlatform(t) for t in case["targets"]],
        python_full_version=scenario_python(),
        linux_target=parse_linux_target(linux) if linux else None,
        lower=lockfile.LowerLayerPackages.from_lock_texts(processed[n] for n in case["lower"]),
        lock_dir=wheels.parent / "requirements" / env_name,
        header_command="python -Im venvstacks lock",
    )


def scenario_python() -> str:
    return str(json.loads((HERE / "scenario.json").read_text())["python_full_version"])


def make_pypi(work: Path) -> None:
    tool_uv = 'no-build = true\nexclude-newer = "2025-01-01T00:00:00Z"\n'
    reqs = ["six", "colorama; sys_platform == 'win32'"]
    text = uv_export(work / "pypi", "pypi", reqs, tool_uv)
    (HERE / "raw" / "pylock.pypi.toml").write_text(text)


def make_expected(scenario: dict[str, Any]) -> None:
    """Process every case against FAKE_ROOT; the tests compare with these files."""
    expected = HERE / "expected"
    shutil.rmtree(expected, ignore_errors=True)
    expected.mkdir()
    wheels = FAKE_ROOT / "wheels"
    processed: dict[str, str] = {}
    for case_name, case in scenario["cases"].items():
        raw = (HERE / "raw" / f"pylock.{case['raw']}.toml").read_text()
        result = process(
            raw.replace(PLACEHOLDER, str(wheels)), case["raw"], case, processed, wheels
        )
        processed[case_name] = result.text
        (expected / f"pylock.{case_name}.toml").write_text(result.text)
        summary = lockfile.package_summary(case["raw"], result.text)
        (expected / f"packages-{case_name}.txt").write_text(summary)


def main(argv: list[str]) -> None:
    scenario = json.loads((HERE / "scenario.json").read_text())
    wheels = HERE / "wheels"
    build_wheelhouse(wheels)
    with tempfile.TemporaryDirectory() as work:
        make_raw(scenario, wheels, Path(work))
        if "--pypi" in argv:
            make_pypi(Path(work))
    make_expected(scenario)


if __name__ == "__main__":
    main(sys.argv[1:])
