"""Tests for venvstacks.runtimes.{pack,probe,relocate}: packing host CPythons into relocatable runtime archives."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_runtime import find_host_python

from venvstacks.cli.runtime import runtime
from venvstacks.errors import RuntimeProvisionError, StackError
from venvstacks.runtimes import pack as runtime_pack
from venvstacks.runtimes.archives import ARCHIVE_MTIME, archive_name
from venvstacks.runtimes.pack import pack_runtime
from venvstacks.runtimes.probe import _host_python_from, clean_subprocess_env
from venvstacks.runtimes.relocate import (
    RunpathRole,
    find_patchelf,
    relocatable_shebang,
    relocated_runpath,
)

PREFIX = "/root/.pyenv/versions/3.11.7"


def message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The user-facing message of a raised StackError (the last constructor argument)."""
    return str(excinfo.value.args[-1])


# ---------------------------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------------------------

RUNPATH_CASES = [
    ("executable", f"{PREFIX}/lib", True, "$ORIGIN/../lib"),
    ("executable", "", True, "$ORIGIN/../lib"),
    ("executable", f"{PREFIX}/lib", False, ""),
    ("libpython", f"{PREFIX}/lib", True, "$ORIGIN"),
    ("other", f"{PREFIX}/lib", True, ""),
    ("other", f"{PREFIX}/lib:/opt/ssl/lib", True, "/opt/ssl/lib"),
    ("other", f"$ORIGIN:{PREFIX}", True, "$ORIGIN"),
    ("other", f"{PREFIX}-other/lib", True, f"{PREFIX}-other/lib"),
    ("other", "", True, ""),
]


@pytest.mark.parametrize(("role", "runpath", "shared", "expected"), RUNPATH_CASES)
def test_relocated_runpath(
    role: RunpathRole, runpath: str, shared: bool, expected: str
) -> None:
    assert relocated_runpath(role, runpath, PREFIX, shared=shared) == expected


def test_shebang_into_prefix_becomes_a_relative_trampoline() -> None:
    script = f"#!{PREFIX}/bin/python3.11 -E\nimport sys\n".encode()
    rewritten = relocatable_shebang(script, PREFIX)
    assert rewritten is not None
    lines = rewritten.decode().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert '/python3.11" "$0" "$@"' in lines[1]
    assert PREFIX not in rewritten.decode()
    assert lines[-1] == "import sys"


@pytest.mark.parametrize(
    "script",
    [b"#!/bin/sh\necho hi\n", b"#!/usr/bin/env python3\n", b"\x7fELF...", b"no shebang\n"],
)
def test_other_shebangs_are_left_alone(script: bytes) -> None:
    assert relocatable_shebang(script, PREFIX) is None


def test_shebang_trampoline_runs(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(sys.executable)
    script = bin_dir / "hello"
    original = f"#!{PREFIX}/bin/python3.11\nimport sys\nprint('hi', sys.argv[1:])\n".encode()
    rewritten = relocatable_shebang(original, PREFIX)
    assert rewritten is not None
    script.write_bytes(rewritten)
    script.chmod(0o755)
    out = subprocess.run([str(script), "x"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hi ['x']"


def test_archive_name() -> None:
    expected = "cpython-3.12.1+local-x86_64-unknown-linux-gnu-install_only.tar.gz"
    assert archive_name("3.12.1", "x86_64") == expected
    with pytest.raises(RuntimeProvisionError, match="machine 'riscv64'"):
        archive_name("3.12.1", "riscv64")


def test_clean_subprocess_env_drops_pip_python_and_venv_settings() -> None:
    env = {
        "PATH": "/bin",
        "PIP_FIND_LINKS": "/opt/wheels",
        "PYTHONPATH": "/x",
        "PYTHONHOME": "/y",
        "VIRTUAL_ENV": "/v",
        "LD_LIBRARY_PATH": "/l",
        "UV_INDEX_URL": "http://x",
        "HOME": "/root",
    }
    assert clean_subprocess_env(env) == {"PATH": "/bin", "HOME": "/root"}


# ---------------------------------------------------------------------------------------------
# Refusals: each is one clear line
# ---------------------------------------------------------------------------------------------


def _probe(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "implementation": "cpython",
        "version": "3.11.7",
        "major_minor": "3.11",
        "platform": "linux",
        "prefix": PREFIX,
        "base_prefix": PREFIX,
        "executable": f"{PREFIX}/bin/python3.11",
        "stdlib": f"{PREFIX}/lib/python3.11",
        "platstdlib": f"{PREFIX}/lib/python3.11",
        "include": f"{PREFIX}/include/python3.11",
        "libdir": f"{PREFIX}/lib",
        "shared": True,
        "machine": "x86_64",
        "libc": "glibc",
    }
    data.update(overrides)
    return data


PROBE_REFUSALS = [
    ({"implementation": "pypy"}, "is pypy, not CPython"),
    ({"prefix": "/work/venv"}, "belongs to a virtual environment"),
    ({"platform": "darwin"}, "not a glibc Linux build"),
    ({"libc": ""}, "not a glibc Linux build"),
    ({"version": "3.11.7+"}, "unusual version"),
    ({"stdlib": "/elsewhere/lib/python3.11"}, "outside its prefix"),
]


@pytest.mark.parametrize(("overrides", "expected"), PROBE_REFUSALS)
def test_probe_refusals(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(RuntimeProvisionError) as excinfo:
        _host_python_from(Path(f"{PREFIX}/bin/python3"), _probe(**overrides))
    assert expected in message(excinfo)
    assert "\n" not in message(excinfo)


def test_probe_accepts_a_base_install() -> None:
    host = _host_python_from(Path(f"{PREFIX}/bin/python3"), _probe())
    assert (host.version, host.major_minor, host.shared) == ("3.11.7", "3.11", True)


@pytest.mark.parametrize(
    ("make_path", "expected"),
    [
        (lambda tmp: tmp / "missing", "no Python found at"),
        (lambda tmp: tmp, "not a Python installation prefix"),
        (lambda tmp: Path("/bin/true"), "is not a working Python"),
        (lambda tmp: Path(sys.executable), "belongs to a virtual environment"),
    ],
    ids=["missing", "empty-dir", "not-python", "venv"],
)
def test_pack_refuses_what_it_cannot_relocate(
    tmp_path: Path, make_path: object, expected: str
) -> None:
    assert callable(make_path)
    with pytest.raises(RuntimeProvisionError) as excinfo:
        pack_runtime(make_path(tmp_path), tmp_path / "out")
    assert expected in message(excinfo)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pack_refuses_other_operating_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_pack, "sys", types.SimpleNamespace(platform="darwin"))
    with pytest.raises(RuntimeProvisionError) as excinfo:
        pack_runtime(tmp_path, tmp_path)
    assert (
        message(excinfo)
        == "packing a host Python is only supported on Linux for now (this is darwin)"
    )


def test_missing_patchelf_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_patchelf()
    assert "patchelf not found" in message(excinfo)


def test_cli_error_is_one_line_on_stderr() -> None:
    result = CliRunner().invoke(runtime, ["pack", sys.executable])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "virtual environment" in lines[0]
    assert result.stdout == ""


def test_runtime_provision_error_is_a_stack_error() -> None:
    assert issubclass(RuntimeProvisionError, StackError)


# ---------------------------------------------------------------------------------------------
# Real packs of pyenv's CPythons
# ---------------------------------------------------------------------------------------------


def _members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return tar.getmembers()


@pytest.mark.slow
def test_packing_twice_is_byte_identical(tmp_path: Path) -> None:
    try:
        python = find_host_python("3.11")
    except LookupError as exc:
        pytest.skip(str(exc))
    first = pack_runtime(python.parents[1], tmp_path / "api")  # a prefix
    result = CliRunner().invoke(runtime, ["pack", str(python), "-o", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    second = tmp_path / "cli" / first.archive.name
    assert result.stdout.splitlines() == [str(second), f"sha256: {first.sha256}"]
    assert first.archive.read_bytes() == second.read_bytes()
    checksum_line = f"{first.sha256}  {first.archive.name}\n"
    assert first.checksum_file.read_text() == checksum_line
    assert (tmp_path / "cli" / first.checksum_file.name).read_text() == checksum_line


@pytest.mark.slow
def test_archive_layout_and_normalised_metadata(
    runtime_archive_dir: Path, runtime_versions: dict[str, str]
) -> None:
    version = runtime_versions["3.12"]
    archive = runtime_archive_dir / archive_name(version, "x86_64")
    raw = archive.read_bytes()
    assert raw[3] == 0  # gzip flags: no file name, no comment
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    members = _members(archive)
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {n.split("/")[0] for n in names} == {"python"}
    assert {
        "python/bin/python3",
        "python/bin/python3.12",
        "python/lib/libpython3.12.so.1.0",
    } <= set(names)
    assert all(m.mtime == ARCHIVE_MTIME and m.uid == m.gid == 0 for m in members)
    assert all(m.uname == m.gname == "" for m in members)
    assert {m.mode for m in members} <= {0o755, 0o644, 0o777}
    site = "python/lib/python3.12/site-packages/"
    assert [n for n in names if n.startswith(site)] == [site + "README.txt"]
    for unwanted in ("/__pycache__/", "/test/", "/idle_test/", "/pkgconfig/"):
        assert not [n for n in names if unwanted in n + "/"], unwanted
    assert not [n for n in names if n.endswith((".a", ".o", ".pyc"))]
    assert sorted(n for n in names if n.startswith("python/bin/")) == [
        "python/bin/python",
        "python/bin/python3",
        "python/bin/python3-config",
        "python/bin/python3.12",
        "python/bin/python3.12-config",
    ]


def _runpath(path: Path) -> str:
    command = [str(find_patchelf()), "--print-rpath", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_no_elf_file_points_into_the_original_prefix(
    runtime_archive_dir: Path, runtime_versions: dict[str, str], tmp_path: Path
) -> None:
    version = runtime_versions["3.11"]
    original = str(find_host_python(version).parents[1])
    root = _unpack(runtime_archive_dir / archive_name(version, "x86_64"), tmp_path)
    runpaths = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            runpaths[path.relative_to(root).as_posix()] = _runpath(path)
    assert len(runpaths) > 50  # the interpreter, libpython and the lib-dynload modules
    assert not {name: rp for name, rp in runpaths.items() if original in rp}
    assert runpaths["bin/python3.11"] == "$ORIGIN/../lib"
    assert runpaths["lib/libpython3.11.so.1.0"] == "$ORIGIN"
    assert runpaths["lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"] == ""


def _unpack(archive: Path, destination: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination / "python"


def _hidden_original(prefix: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a fresh tmpfs mounted over ``prefix`` (private mount namespace)."""
    script = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(prefix), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_subprocess_env(),
        timeout=120,
        check=False,
    )


def _can_hide_folders() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("series", ["3.11", "3.12"])
def test_unpacked_runtime_works_with_the_original_hidden(
    series: str, runtime_archive_dir: Path, runtime_versions: dict[str, str], tmp_path: Path
) -> None:
    if not _can_hide_folders():
        pytest.skip("`unshare -m` is not permitted here (needs root or user namespaces)")
    version = runtime_versions[series]
    original = find_host_python(version).parents[1]
    root = _unpack(runtime_archive_dir / archive_name(version, "x86_64"), tmp_path / "elsewhere")
    python = str(root / "bin" / "python3")
    check = "import ssl, sqlite3, ctypes, sys; print(sys.prefix)"
    ran = _hidden_original(original, [python, "-c", check], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(root)
    venv = tmp_path / "venv"
    ran = _hidden_original(original, [python, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    assert ran.returncode == 0, ran.stderr
    check = "import ssl, sys; print(sys.base_prefix)"
    ran = _hidden_original(original, [str(venv / "bin" / "python"), "-c", check], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(root)
    # and the original really was hidden: its interpreter is gone inside the namespace
    ran = _hidden_original(original, [str(original / "bin" / "python3"), "-V"], tmp_path)
    assert ran.returncode != 0
