"""Tests for venvstacks.lock.pylock: golden uv exports in, venvstacks lock files out.

Golden inputs in tests/data/lockfile/ come from real ``uv lock`` + ``uv export --format
pylock.toml`` runs over tiny local wheels (see make_golden.py there); synthetic locks below cover
the cases a real resolution cannot produce.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fixtures_pylock import pkg, pylock

from venvstacks.errors import LockError
from venvstacks.lock import pylock as lockfile
from venvstacks.lock.pylock import (
    SHARED_MARKER,
    LockedPackage,
    LowerLayerPackages,
    constraint_dependencies,
    package_summary,
    process_lock,
    read_packages,
    requirements_hash,
)
from venvstacks.lock.wheels import local_wheel_path
from venvstacks.plan.platforms import TargetPlatform, parse_linux_target, parse_macosx_target

DATA = Path(__file__).parents[1] / "data" / "lockfile"
SCENARIO: dict[str, Any] = json.loads((DATA / "scenario.json").read_text())
CASES: dict[str, dict[str, Any]] = SCENARIO["cases"]
PLACEHOLDER = "@WHEELHOUSE@"
FAKE_ROOT = Path("/project")
HEADER_COMMAND = "python -Im venvstacks lock"

ALL = TargetPlatform.default_set()
L64, LARM = TargetPlatform.LINUX, TargetPlatform.LINUX_AARCH64
MARM, MX86 = TargetPlatform.MACOS_APPLE, TargetPlatform.MACOS_INTEL
W64, WARM = TargetPlatform.WINDOWS, TargetPlatform.WINDOWS_ARM64
THREE = (L64, MARM, W64)


# --- helpers -----------------------------------------------------------------------------------


def raw_export(name: str, wheel_dir: Path = FAKE_ROOT / "wheels") -> str:
    return (DATA / "raw" / f"pylock.{name}.toml").read_text().replace(PLACEHOLDER, str(wheel_dir))


def process_case(case_name: str, processed: dict[str, str], wheel_dir: Path) -> str:
    case = CASES[case_name]
    linux = case.get("linux_target")
    result = process_lock(
        raw_export(case["raw"], wheel_dir),
        env_name=case["raw"],
        targets=[TargetPlatform(t) for t in case["targets"]],
        python_full_version=SCENARIO["python_full_version"],
        linux_target=parse_linux_target(linux) if linux else None,
        lower=LowerLayerPackages.from_lock_texts(processed[n] for n in case["lower"]),
        lock_dir=wheel_dir.parent / "requirements" / case["raw"],
        header_command=HEADER_COMMAND,
    )
    return result.text


def processed_cases(wheel_dir: Path = FAKE_ROOT / "wheels") -> dict[str, str]:
    processed: dict[str, str] = {}
    for case_name in CASES:  # lower cases come first in scenario.json
        processed[case_name] = process_case(case_name, processed, wheel_dir)
    return processed


def process(
    text: str,
    targets: tuple[TargetPlatform, ...] = THREE,
    lower: tuple[str, ...] = (),
    **kwargs: Any,
) -> lockfile.ProcessedLock:
    return process_lock(
        text,
        env_name="app-x",
        targets=targets,
        python_full_version="3.11.7",
        lower=LowerLayerPackages.from_lock_texts(lower),
        lock_dir=FAKE_ROOT / "requirements" / "app-x",
        header_command=HEADER_COMMAND,
        **kwargs,
    )


def entries(text: str) -> list[dict[str, Any]]:
    packages: list[dict[str, Any]] = tomllib.loads(text).get("packages", [])
    return packages


# --- golden: real uv exports -------------------------------------------------------------------


def test_every_golden_case_has_inputs_and_expectations() -> None:
    raw = {p.name.removeprefix("pylock.").removesuffix(".toml") for p in DATA.glob("raw/*.toml")}
    assert {case["raw"] for case in CASES.values()} == raw
    expected = sorted(p.name for p in (DATA / "expected").iterdir())
    assert expected == sorted(
        name for case in CASES for name in (f"packages-{case}.txt", f"pylock.{case}.toml")
    )


@pytest.mark.parametrize("case_name", list(CASES))
def test_golden_pylock_and_summary(case_name: str) -> None:
    text = processed_cases()[case_name]
    assert text == (DATA / "expected" / f"pylock.{case_name}.toml").read_text()
    summary = package_summary(CASES[case_name]["raw"], text)
    assert summary == (DATA / "expected" / f"packages-{case_name}.txt").read_text()


@pytest.mark.parametrize("env_name", list(SCENARIO["layers"]))
def test_constraints_match_what_uv_was_given(env_name: str) -> None:
    processed = processed_cases()
    lower = LowerLayerPackages.from_lock_texts(
        processed[name] for name in SCENARIO["layers"][env_name]["lower"]
    )
    given = (DATA / "raw" / f"constraints.{env_name}.txt").read_text().splitlines()
    assert constraint_dependencies(lower) == given


def test_golden_framework_shares_runtime_packages() -> None:
    fw = {(p.name, p.version): p for p in read_packages(processed_cases()["framework-fw"])}
    assert fw["alpha", "1.0"] == LockedPackage("alpha", "1.0", None, shared=True)
    assert fw["gamma", "1.5"] == LockedPackage("gamma", "1.5", "sys_platform == 'win32'", True)
    assert not fw["beta", "2.0"].shared
    assert ("iota", "1.0") not in fw  # sys_platform == 'emscripten': no target platform
    assert ("kappa", "1.0") not in fw  # not needed by the framework


def test_golden_output_keeps_uv_layout_and_valid_pep751() -> None:
    text = processed_cases()["framework-fw"]
    assert "\r" not in text
    assert text.startswith(
        "# Locked requirements for framework-fw (DO NOT EDIT)\n"
        "#     Auto-generated by venvstacks with the following command:\n"
        "#         python -Im venvstacks lock\n"
        'lock-version = "1.0"\n'
    )
    doc = tomllib.loads(text)
    assert list(doc) == ["lock-version", "created-by", "requires-python", "packages"]
    for entry in doc["packages"]:
        assert not {"sdist", "archive", "directory", "vcs"} & set(entry)
        assert list(entry)[:2] == ["name", "version"]
        for wheel in entry.get("wheels", []):
            assert list(wheel) == ["path", "hashes"]
            assert wheel["path"].startswith("../../wheels/")


def test_golden_runtime_drops_sdists() -> None:
    raw = {e["name"]: e for e in entries(raw_export("cpython-3.11"))}
    assert "sdist" in raw["kappa"]
    out = {e["name"]: e for e in entries(processed_cases()["cpython-3.11"])}
    assert "sdist" not in out["kappa"]
    assert out["kappa"]["wheels"][0]["hashes"] == raw["kappa"]["wheels"][0]["hashes"]


def test_uv_export_header_is_replaced() -> None:
    uv_header = "# This file was autogenerated by uv via the following command:\n#    uv export\n"
    raw = raw_export("cpython-3.11")
    assert process(uv_header + raw, ALL).text == process(raw, ALL).text
    assert process(raw.replace("\n", "\r\n"), ALL).text == process(raw, ALL).text


@pytest.mark.slow
def test_uv_installs_processed_lock(tmp_path: Path) -> None:
    """uv accepts the processed lock: shared packages are skipped, relative paths resolve."""
    uv = shutil.which("uv", path=str(Path(__file__).parents[2] / ".venv" / "bin"))
    if uv is None:
        pytest.skip("uv not installed in the dev venv")
    shutil.copytree(DATA / "wheels", tmp_path / "wheels")
    lock = processed_cases(tmp_path / "wheels")["framework-fw"]
    lock_path = tmp_path / "requirements" / "framework-fw" / "pylock.framework-fw.toml"
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text(lock)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PREVIEW_FEATURES": "pylock"}
    env.pop("VIRTUAL_ENV", None)
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--no-config", str(venv)], check=True, env=env)
    cmd = [uv, "pip", "install", "--no-config", "--dry-run", "--python", str(venv), "-r"]
    for platform, expected in [
        ("x86_64-manylinux_2_28", {"beta", "delta", "eta", "lam==2.0", "zeta"}),
        ("x86_64-pc-windows-msvc", {"beta", "delta", "lam==1.0", "zeta"}),
    ]:
        result = subprocess.run(
            [*cmd, str(lock_path), "--python-platform", platform],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        installed = {line.split()[1] for line in result.stderr.splitlines() if " + " in line}
        assert {name.split("==")[0] for name in installed} == {e.split("==")[0] for e in expected}
        assert {e for e in expected if "==" in e} <= installed


# --- lower layers and constraints --------------------------------------------------------------


@pytest.mark.parametrize(
    ("locks", "constraints"),
    [
        ([], []),
        ([pylock(pkg("a"), pkg("b", "2.0", "sys_platform == 'win32'"))],
         ["a==1.0", "b==2.0 ; sys_platform == 'win32'"]),
        # first unconditional occurrence wins and shadows later ones
        ([pylock(pkg("a", "1.0")), pylock(pkg("a", "2.0")), pylock(pkg("a", "3.0", "os_name == 'nt'"))],
         ["a==1.0"]),
        # conditional ones seen first are kept (one per marker), before the unconditional one
        ([pylock(pkg("a", "1.0", "os_name == 'nt'")),
          pylock(pkg("a", "1.1", "os_name == 'nt'"), pkg("a", "2.0", "os_name != 'nt'")),
          pylock(pkg("a", "3.0"))],
         ["a==1.0 ; os_name == 'nt'", "a==2.0 ; os_name != 'nt'", "a==3.0"]),
        # packages a lower lock marks shared are not offered again
        ([pylock(pkg("a", marker=SHARED_MARKER),
                 pkg("b", marker=f"(os_name == 'nt') and {SHARED_MARKER}", index=None, tags=()))],
         []),
        # markers are normalised (double quotes from hand-written locks)
        ([pylock(pkg("a", marker='os_name == \\"nt\\"'))], ["a==1.0 ; os_name == 'nt'"]),
        # names are canonicalised
        ([pylock(pkg("Foo_Bar"))], ["foo-bar==1.0"]),
    ],
)  # fmt: skip
def test_constraint_collection(locks: list[str], constraints: list[str]) -> None:
    assert constraint_dependencies(LowerLayerPackages.from_lock_texts(locks)) == constraints


@pytest.mark.parametrize(
    ("lower", "entry", "targets", "marker"),
    [
        # nothing lower: never shared
        ((), pkg("a"), THREE, None),
        # lower unconditional, same or any version
        ((pylock(pkg("a")),), pkg("a"), THREE, SHARED_MARKER),
        ((pylock(pkg("a", "0.9")),), pkg("a"), THREE, SHARED_MARKER),
        ((pylock(pkg("a")),), pkg("a", marker="os_name == 'nt'"), THREE,
         f"(os_name == 'nt') and {SHARED_MARKER}"),
        # lower conditional with exactly the same (name, version, marker)
        ((pylock(pkg("a", marker="sys_platform == 'linux'")),),
         pkg("a", marker="sys_platform == 'linux'"), THREE,
         f"(sys_platform == 'linux') and {SHARED_MARKER}"),
        # lower conditional markers cover every platform the package applies to
        ((pylock(pkg("a", marker="sys_platform == 'win32'")),), pkg("a"), (W64,), SHARED_MARKER),
        ((pylock(pkg("a", marker="sys_platform == 'win32'"),
                 pkg("a", "2.0", marker="sys_platform != 'win32'")),),
         pkg("a"), THREE, SHARED_MARKER),
        ((pylock(pkg("a", marker="sys_platform == 'win32'")),),
         pkg("a", marker="os_name == 'nt'"), THREE, f"(os_name == 'nt') and {SHARED_MARKER}"),
        # ... but not when some platform is left uncovered: installed here on every platform
        ((pylock(pkg("a", marker="sys_platform == 'win32'")),), pkg("a"), THREE, None),
        # a different package name never matches
        ((pylock(pkg("b")),), pkg("a"), THREE, None),
        # shared in the lower lock: its own lower layer is listed separately
        ((pylock(pkg("a", marker=SHARED_MARKER, index=None, tags=())),), pkg("a"), THREE, None),
    ],
)  # fmt: skip
def test_shared_marking(
    lower: tuple[str, ...], entry: str, targets: tuple[TargetPlatform, ...], marker: str | None
) -> None:
    (out,) = entries(process(pylock(entry), targets, lower).text)
    assert out.get("marker") == marker
    if marker is None:
        assert "index" in out and "wheels" in out
    else:
        assert "index" not in out and "wheels" not in out


def test_shared_marker_is_placed_after_version() -> None:
    text = process(pylock(pkg("a")), lower=(pylock(pkg("a")),)).text
    assert '[[packages]]\nname = "a"\nversion = "1.0"\nmarker = "sys_platform ==' in text


# --- platform filtering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "targets", "expected"),
    [
        (None, ALL, None),
        ("sys_platform == 'win32'", ALL, "sys_platform == 'win32'"),
        ("sys_platform == 'win32'", (W64, WARM), None),  # matches every target: unconditional
        ("sys_platform == 'win32'", (L64, MARM), "dropped"),  # matches no target
        ("platform_machine == 'AMD64'", ALL, "platform_machine == 'AMD64'"),
        ("platform_machine == 'aarch64' or platform_machine == 'arm64'", (LARM, MARM), None),
        ("python_full_version < '3.11.5'", ALL, "dropped"),  # runtime is 3.11.7
        ("python_full_version >= '3.11.5' and implementation_name == 'cpython'", ALL, None),
        ("sys_platform == 'emscripten'", ALL, "dropped"),
        ("'dev' in dependency_groups", ALL, "dropped"),
    ],
)
def test_platform_filtering(
    marker: str, targets: tuple[TargetPlatform, ...], expected: str | None
) -> None:
    out = entries(process(pylock(pkg("a", marker=marker)), targets).text)
    if expected == "dropped":
        assert out == []
    else:
        assert out[0].get("marker") == expected


def test_all_packages_dropped_leaves_a_valid_empty_lock() -> None:
    text = process(pylock(pkg("a", marker="sys_platform == 'cygwin'"))).text
    assert tomllib.loads(text)["packages"] == []
    assert process(pylock()).packages == ()
    assert tomllib.loads(process('lock-version = "1.0"\npackages = []\n').text)["packages"] == []


# --- wheel availability ------------------------------------------------------------------------

LINUX_228 = parse_linux_target("glibc@2.28")
MACOS_13 = parse_macosx_target("13.0")


@pytest.mark.parametrize(
    ("tags", "missing", "kwargs"),
    [
        (("any",), [], {}),
        (("win_amd64", "any"), [], {}),
        (("manylinux_2_17_x86_64.manylinux2014_x86_64",), [LARM, MARM, MX86, W64, WARM], {}),
        (("manylinux2014_aarch64", "manylinux_2_28_x86_64"), [MARM, MX86, W64, WARM], {}),
        (("manylinux1_x86_64", "manylinux2010_aarch64"), [MARM, MX86, W64, WARM], {}),
        (("manylinux_2_35_x86_64",), [L64, LARM, MARM, MX86, W64, WARM], {}),
        (("manylinux_2_35_x86_64",), [LARM, MARM, MX86, W64, WARM],
         {"linux_target": parse_linux_target("glibc@2.35")}),
        (("musllinux_1_2_x86_64",), [L64, LARM, MARM, MX86, W64, WARM], {}),
        (("linux_x86_64", "linux_aarch64"), [MARM, MX86, W64, WARM], {}),  # naive local builds
        (("macosx_10_9_universal2",), [L64, LARM, W64, WARM], {}),
        (("macosx_11_0_arm64", "macosx_10_9_x86_64"), [L64, LARM, W64, WARM], {}),
        (("macosx_14_0_arm64", "macosx_13_0_x86_64"), [L64, LARM, MARM, W64, WARM], {}),
        (("macosx_14_0_arm64",), [L64, LARM, MX86, W64, WARM],
         {"macosx_target": parse_macosx_target("14")}),
        # arm64 macOS starts at 11.0, so an older target still accepts macosx_11_0_arm64
        (("macosx_11_0_arm64",), [L64, LARM, MX86, W64, WARM],
         {"macosx_target": parse_macosx_target("10.15")}),
        (("macosx_12_0_x86_64",), [L64, LARM, MARM, MX86, W64, WARM],
         {"macosx_target": parse_macosx_target("10.15")}),
        (("win_amd64", "win_arm64"), [L64, LARM, MARM, MX86], {}),
        (("win32",), [L64, LARM, MARM, MX86, W64, WARM], {}),
    ],
)  # fmt: skip
def test_wheel_availability(
    tags: tuple[str, ...], missing: list[TargetPlatform], kwargs: dict[str, Any]
) -> None:
    text = pylock(pkg("a", tags=tags))
    if not missing:
        process(text, ALL, **kwargs)
        return
    with pytest.raises(LockError) as info:
        process(text, ALL, **kwargs)
    in_target_order = [str(p) for p in ALL if p in missing]
    assert f"  a: no wheels available for {in_target_order}\n" in str(info.value)


def test_wheel_availability_error_message_suggests_platforms() -> None:
    text = pylock(
        pkg("b", tags=("manylinux_2_17_x86_64", "win_amd64", "macosx_11_0_arm64")),
        pkg("c", marker="sys_platform == 'linux'", tags=("manylinux_2_17_aarch64",)),
        pkg("d", marker="sys_platform == 'win32'", tags=("win_amd64", "win_arm64")),
        pkg("e", tags=("any",)),
    )
    with pytest.raises(LockError) as info:
        process(text, ALL)
    assert info.value.layer == "app-x"
    assert info.value.detail == (
        "Some packages did not have wheels for all target platforms:\n"
        "  b: no wheels available for ['linux_aarch64', 'macosx_x86_64', 'win_arm64']\n"
        "  c: no wheels available for ['linux_x86_64']\n"
        "Set platforms to ['macosx_arm64', 'win_amd64'] to limit to available wheels."
    )
    assert str(info.value).startswith("layer app-x: Some packages did not have wheels")


def test_wheel_availability_error_without_any_usable_platform() -> None:
    text = pylock(pkg("b", tags=("win_amd64",)), pkg("c", tags=("manylinux_2_17_x86_64",)))
    with pytest.raises(LockError) as info:
        process(text, (L64, W64))
    assert info.value.detail == (
        "Some packages did not have wheels for all target platforms:\n"
        "  b: no wheels available for ['linux_x86_64']\n"
        "  c: no wheels available for ['win_amd64']\n"
        "There are no platforms with wheels available for all packages."
    )


def test_shared_packages_need_no_wheels() -> None:
    lower = (pylock(pkg("b", tags=("win_amd64",))),)
    process(pylock(pkg("b", tags=("win_amd64",))), ALL, lower)  # no LockError


def test_golden_app_lacks_wheels_for_default_linux_target() -> None:
    case = CASES["app-app"]
    processed = processed_cases()
    with pytest.raises(LockError) as info:
        process_lock(
            raw_export("app-app"),
            env_name="app-app",
            targets=[TargetPlatform(t) for t in case["targets"]],
            python_full_version=SCENARIO["python_full_version"],
            lower=LowerLayerPackages.from_lock_texts(processed[n] for n in case["lower"]),
            lock_dir=FAKE_ROOT / "requirements" / "app-app",
            header_command=HEADER_COMMAND,
        )
    assert info.value.detail.splitlines()[1:] == [
        "  epsilon: no wheels available for ['linux_x86_64']",
        "Set platforms to ['macosx_arm64', 'win_amd64'] to limit to available wheels.",
    ]


# --- local wheel paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wheel", "expected"),
    [
        ('url = "file:///project/wheels/a-1.0-py3-none-any.whl"', {"path": "../../wheels/a-1.0-py3-none-any.whl"}),
        ('url = "file:///project/my%20wheels/a-1.0-py3-none-any.whl"', {"path": "../../my wheels/a-1.0-py3-none-any.whl"}),
        ('url = "file://localhost/elsewhere/a-1.0-py3-none-any.whl"', {"path": "../../../elsewhere/a-1.0-py3-none-any.whl"}),
        ('url = "file:///project/requirements/app-x/w/a-1.0-py3-none-any.whl"', {"path": "w/a-1.0-py3-none-any.whl"}),
        ('path = "/project/wheels/a-1.0-py3-none-any.whl"', {"path": "../../wheels/a-1.0-py3-none-any.whl"}),
        ('path = "../../wheels/a-1.0-py3-none-any.whl"', {"path": "../../wheels/a-1.0-py3-none-any.whl"}),
        ('url = "https://files.example/a-1.0-py3-none-any.whl", size = 3',
         {"url": "https://files.example/a-1.0-py3-none-any.whl", "size": 3}),
    ],
)  # fmt: skip
def test_local_wheels_become_relative_paths(wheel: str, expected: dict[str, Any]) -> None:
    text = pylock(pkg("a", tags=())) + f'wheels = [{{ {wheel}, hashes = {{ sha256 = "00" }} }}]\n'
    (out,) = entries(process(text).text)
    assert out["wheels"] == [{**expected, "hashes": {"sha256": "00"}}]


@pytest.mark.parametrize(
    ("wheel", "path"),
    [
        ({"url": "file:///C:/wheels/a.whl"}, "C:/wheels/a.whl"),
        ({"url": "file://server/share/a.whl"}, "//server/share/a.whl"),
        ({"url": "file:///srv/a%2Bb.whl"}, "/srv/a+b.whl"),
        ({"path": "C:\\wheels\\a.whl"}, "C:\\wheels\\a.whl"),
        ({"path": "wheels/a.whl"}, None),
        ({"url": "https://host/a.whl"}, None),
        ({"name": "a.whl"}, None),
    ],
)
def test_local_wheel_locations(wheel: dict[str, str], path: str | None) -> None:
    assert local_wheel_path(wheel) == path


def test_unrelatable_wheel_path_is_a_lock_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def other_drive(path: str, start: str) -> str:
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(os.path, "relpath", other_drive)
    text = pylock(pkg("a", tags=())) + 'wheels = [{ path = "/w/a-1-py3-none-any.whl" }]\n'
    with pytest.raises(LockError, match=r"Unable to locate '/w/a-1-py3-none-any.whl' relative to"):
        process(text)


def test_requirements_hash_of_processed_lock_is_reported() -> None:
    result = process(pylock(pkg("a")))
    assert result.requirements_hash == requirements_hash(result.text)
