"""Fixtures that build tiny, real wheels locally for hermetic locking and building tests.

`make_wheel` writes a spec-conforming wheel (METADATA, WHEEL, RECORD with sha256 hashes) with
the stdlib `zipfile`, byte-for-byte reproducibly. The session-scoped `wheelhouse` fixture is a
``--find-links`` folder holding a small package universe (see `WHEELHOUSE`).

Every generated module exposes ``__version__`` and ``where()`` (returning its ``__file__``), so
end-to-end tests can report which distribution they imported and from which layer.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from uv import find_uv_bin

__all__ = [
    "WHEELHOUSE",
    "WheelDef",
    "build_wheelhouse",
    "create_venv",
    "import_name",
    "make_wheel",
    "module_source",
    "uv_pip_install",
    "wheelhouse",
]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest timestamp a zip file can hold: reproducible wheels
_BROKEN_DATA_SCHEME = "not-a-scheme"


def import_name(dist_name: str) -> str:
    """The importable package name generated for a distribution (``vs-frame2`` -> ``vs_frame2``)."""
    return re.sub(r"[-_.]+", "_", dist_name).lower()


def module_source(dist_name: str, version: str, module: str) -> str:
    """Source of a generated module: ``__version__``, ``where()`` and ``main()``."""
    return (
        f'"""Module {module} of the test distribution {dist_name} {version}."""\n\n'
        f"__version__ = {version!r}\n\n\n"
        "def where():\n"
        '    """Return the path this module was imported from."""\n'
        "    return __file__\n\n\n"
        "def main():\n"
        '    """Print the module name, version and location (console script target)."""\n'
        "    print(__name__, __version__, where())\n"
    )


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _metadata(name: str, version: str, requires: Sequence[str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: venvstacks test distribution {name}",
        *(f"Requires-Dist: {req}" for req in requires),
    ]
    return "\n".join(lines) + "\n\n"


def _wheel_file(tag: str) -> str:
    purelib = "true" if tag.endswith("-any") else "false"
    return (
        f"Wheel-Version: 1.0\nGenerator: venvstacks-tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    )


def _entry_points(console_scripts: Mapping[str, str]) -> str:
    lines = ["[console_scripts]", *(f"{k} = {v}" for k, v in sorted(console_scripts.items()))]
    return "\n".join(lines) + "\n"


def _payload(
    name: str,
    version: str,
    *,
    files: Mapping[str, str | bytes] | None,
    extra_modules: Sequence[str],
    data_so: bool,
    broken: bool,
) -> dict[str, bytes]:
    pkg = import_name(name)
    members: dict[str, str | bytes] = {f"{pkg}/__init__.py": module_source(name, version, pkg)}
    for module in extra_modules:
        members[f"{module}.py"] = module_source(name, version, module)
    if data_so:
        # Not an extension module: a plain shared library (any bytes, scans go by name).
        members[f"{pkg}/lib{pkg.replace('_', '')}.so"] = b"\x7fELF not really a library\n"
    if broken:
        # uv resolves this wheel fine but refuses to install it: unknown .data scheme.
        members[f"{pkg}-{version}.data/{_BROKEN_DATA_SCHEME}/payload.txt"] = "never installed\n"
    members.update(files or {})
    return {path: d.encode("utf-8") if isinstance(d, str) else d for path, d in members.items()}


def _write_zip(path: Path, members: Mapping[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def make_wheel(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    files: Mapping[str, str | bytes] | None = None,
    tag: str = "py3-none-any",
    extra_modules: Sequence[str] = (),
    data_so: bool = False,
    console_scripts: Mapping[str, str] | None = None,
    broken: bool = False,
) -> Path:
    """Write a real wheel into ``dest_dir`` and return its path.

    Args:
        dest_dir: folder for the wheel (created if missing).
        name: distribution name; the generated package is `import_name` of it.
        version: distribution version.
        requires: ``Requires-Dist`` entries.
        files: extra archive members (path -> text or bytes), added after (so overriding) the
            generated package, modules and shared library.
        tag: compressed wheel tag ``python-abi-platform``; non-``any`` wheels are platlib.
        extra_modules: additional top-level modules, generated like the package.
        data_so: ship a non-extension ``lib<name>.so`` inside the package directory.
        console_scripts: ``entry_points.txt`` console scripts (name -> ``module:function``).
        broken: add a ``.data`` scheme that installers reject, so the install fails while
            resolution still succeeds.
    """
    members = _payload(
        name, version, files=files, extra_modules=extra_modules, data_so=data_so, broken=broken
    )
    dist_info = f"{import_name(name)}-{version}.dist-info"
    members[f"{dist_info}/METADATA"] = _metadata(name, version, requires).encode()
    members[f"{dist_info}/WHEEL"] = _wheel_file(tag).encode()
    if console_scripts:
        members[f"{dist_info}/entry_points.txt"] = _entry_points(console_scripts).encode()
    record_path = f"{dist_info}/RECORD"
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in members.items()]
    members[record_path] = ("\n".join([*record, f"{record_path},,"]) + "\n").encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    wheel_path = dest_dir / f"{import_name(name)}-{version}-{tag}.whl"
    _write_zip(wheel_path, members)
    return wheel_path


@dataclass(frozen=True)
class WheelDef:
    """One wheel of the shared test universe (keyword arguments for `make_wheel`)."""

    name: str
    version: str = "1.0"
    requires: tuple[str, ...] = ()
    tag: str = "py3-none-any"
    data_so: bool = False
    broken: bool = False
    console_scripts: Mapping[str, str] = field(default_factory=dict)


WHEELHOUSE: tuple[WheelDef, ...] = (
    WheelDef("vs-base"),
    WheelDef("vs-util", "1.0"),
    WheelDef("vs-util", "2.0"),
    WheelDef("vs-frame", requires=("vs-base>=1",)),
    WheelDef("vs-frame2", requires=("vs-frame",)),
    WheelDef("vs-app-a", requires=("vs-util",), console_scripts={"vs-app-a": "vs_app_a:main"}),
    WheelDef("vs-app-b", requires=("vs-base",)),
    WheelDef("vs-winonly", tag="py3-none-win_amd64"),
    WheelDef("vs-broken", broken=True),
    WheelDef("vs-native", tag="py3-none-manylinux_2_17_x86_64", data_so=True),
)
"""The package universe of the `wheelhouse` fixture."""


def build_wheelhouse(dest_dir: Path) -> Path:
    """Write every wheel of `WHEELHOUSE` into ``dest_dir`` and return it."""
    for wheel in WHEELHOUSE:
        make_wheel(
            dest_dir,
            wheel.name,
            wheel.version,
            requires=wheel.requires,
            tag=wheel.tag,
            data_so=wheel.data_so,
            broken=wheel.broken,
            console_scripts=wheel.console_scripts,
        )
    return dest_dir


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``--find-links`` folder holding the `WHEELHOUSE` wheels (read-only, shared)."""
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


def create_venv(env_dir: Path) -> Path:
    """Create a pip-less venv with the test interpreter (symlinked) and return its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--symlinks", str(env_dir)], check=True
    )
    return env_dir / "bin" / "python"


def uv_pip_install(
    python: Path,
    *requirements: str,
    find_links: Path | Sequence[Path],
    python_platform: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run real ``uv pip install`` offline from ``find_links``; the caller checks the result."""
    folders = [find_links] if isinstance(find_links, Path) else list(find_links)
    argv = [find_uv_bin(), "pip", "install", "--python", str(python), "--no-config"]
    argv += ["--no-index", "--no-cache", "--no-color"]
    for folder in folders:
        argv += ["--find-links", str(folder)]
    if python_platform is not None:
        argv += ["--python-platform", python_platform]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    return subprocess.run(
        [*argv, *requirements], capture_output=True, text=True, env=env, check=False
    )
