"""The locally built test wheels are valid: uv installs them and their modules import."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import pytest
from fixtures_wheels import WHEELHOUSE, create_venv, import_name, make_wheel, uv_pip_install


def _run_python(python: Path, code: str) -> str:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_wheelhouse_holds_every_defined_wheel(wheelhouse: Path) -> None:
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    expected = sorted(f"{import_name(w.name)}-{w.version}-{w.tag}.whl" for w in WHEELHOUSE)
    assert names == expected


def test_record_lists_every_member_with_its_hash(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "vs-demo", "3.1", requires=["vs-base>=1"], data_so=True)
    with zipfile.ZipFile(wheel) as archive:
        record_name = "vs_demo-3.1.dist-info/RECORD"
        rows = list(csv.reader(io.StringIO(archive.read(record_name).decode())))
        assert sorted(r[0] for r in rows) == sorted(archive.namelist())
        for path, hash_, size in rows:
            if path == record_name:
                assert (hash_, size) == ("", "")
                continue
            data = archive.read(path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hash_ == "sha256=" + digest.decode()
            assert int(size) == len(data)
        metadata = archive.read("vs_demo-3.1.dist-info/METADATA").decode()
    assert "Requires-Dist: vs-base>=1\n" in metadata
    assert "vs_demo/libvsdemo.so" in {r[0] for r in rows}


def test_wheels_are_reproducible(tmp_path: Path) -> None:
    first = make_wheel(tmp_path / "a", "vs-demo", "1.0", extra_modules=["vs_extra"])
    second = make_wheel(tmp_path / "b", "vs-demo", "1.0", extra_modules=["vs_extra"])
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.slow
def test_framework_chain_installs_and_imports(wheelhouse: Path, tmp_path: Path) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(python, "vs-frame2", find_links=wheelhouse)
    assert result.returncode == 0, result.stderr
    out = _run_python(
        python,
        "import vs_frame2, vs_frame, vs_base\n"
        "for m in (vs_frame2, vs_frame, vs_base): print(m.__name__, m.__version__, m.where())",
    )
    site_packages = (tmp_path / "env" / "lib").resolve()
    lines = [line.split() for line in out.splitlines()]
    assert [(name, version) for name, version, _ in lines] == [
        ("vs_frame2", "1.0"),
        ("vs_frame", "1.0"),
        ("vs_base", "1.0"),
    ]
    assert all(Path(where).resolve().is_relative_to(site_packages) for _, _, where in lines)


@pytest.mark.slow
@pytest.mark.parametrize(("requirement", "version"), [("vs-util", "2.0"), ("vs-util==1.0", "1.0")])
def test_both_util_versions_are_available(
    wheelhouse: Path, tmp_path: Path, requirement: str, version: str
) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(python, requirement, find_links=wheelhouse)
    assert result.returncode == 0, result.stderr
    assert _run_python(python, "import vs_util; print(vs_util.__version__)").strip() == version


@pytest.mark.slow
def test_app_console_script_is_generated(wheelhouse: Path, tmp_path: Path) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(python, "vs-app-a", "vs-app-b", find_links=wheelhouse)
    assert result.returncode == 0, result.stderr
    script = tmp_path / "env" / "bin" / "vs-app-a"
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out.startswith("vs_app_a 1.0 ")


@pytest.mark.slow
def test_native_wheel_ships_a_plain_shared_library(wheelhouse: Path, tmp_path: Path) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(
        python, "vs-native", find_links=wheelhouse, python_platform="x86_64-manylinux_2_28"
    )
    assert result.returncode == 0, result.stderr
    site_packages = next((tmp_path / "env" / "lib").glob("python*/site-packages"))
    assert (site_packages / "vs_native" / "libvsnative.so").is_file()


@pytest.mark.slow
def test_windows_only_wheel_does_not_install_on_linux(wheelhouse: Path, tmp_path: Path) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(
        python, "vs-winonly", find_links=wheelhouse, python_platform="x86_64-manylinux_2_28"
    )
    assert result.returncode != 0
    assert "vs-winonly" in result.stderr


@pytest.mark.slow
def test_broken_wheel_resolves_but_fails_to_install(wheelhouse: Path, tmp_path: Path) -> None:
    python = create_venv(tmp_path / "env")
    result = uv_pip_install(python, "vs-broken", find_links=wheelhouse)
    assert result.returncode != 0
    assert "Failed to install" in result.stderr
    assert "vs_broken-1.0-py3-none-any.whl" in result.stderr
