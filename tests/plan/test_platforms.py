"""Target platforms, their marker environments, Linux/macOS targets and uv's platform names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from packaging.markers import Marker, default_environment

from venvstacks.plan import platforms
from venvstacks.plan.platforms import (
    DEFAULT_LINUX_TARGET,
    DEFAULT_MACOSX_TARGET,
    LinuxTarget,
    MacOSTarget,
    TargetPlatform,
    build_platform,
    default_macosx_target,
    marker_environment,
    parse_linux_target,
    parse_macosx_target,
    uv_python_platform,
)
from venvstacks.proc import uv_command

P = TargetPlatform

# platform -> (os_family, machine)
PARTS = {
    P.LINUX: ("linux", "x86_64"),
    P.LINUX_AARCH64: ("linux", "aarch64"),
    P.MACOS_APPLE: ("macosx", "arm64"),
    P.MACOS_INTEL: ("macosx", "x86_64"),
    P.WINDOWS: ("win", "amd64"),
    P.WINDOWS_ARM64: ("win", "arm64"),
}


def test_every_platform_is_in_the_table() -> None:
    assert set(PARTS) == set(TargetPlatform)


@pytest.mark.parametrize("target", sorted(PARTS))
def test_platform_parts(target: TargetPlatform) -> None:
    assert (target.os_family, target.machine) == PARTS[target]


def test_default_set_is_every_platform_sorted() -> None:
    assert [str(p) for p in TargetPlatform.default_set()] == [
        "linux_aarch64",
        "linux_x86_64",
        "macosx_arm64",
        "macosx_x86_64",
        "win_amd64",
        "win_arm64",
    ]


LINUX_TARGETS = [
    ("glibc", LinuxTarget("glibc", (2, 28))),
    ("glibc@2.17", LinuxTarget("glibc", (2, 17))),
    ("glibc@2.34", LinuxTarget("glibc", (2, 34))),
    (DEFAULT_LINUX_TARGET, LinuxTarget("glibc", (2, 28))),
]


@pytest.mark.parametrize(("text", "expected"), LINUX_TARGETS)
def test_parse_linux_target(text: str, expected: LinuxTarget) -> None:
    assert parse_linux_target(text) == expected


def test_manylinux_tag() -> None:
    assert LinuxTarget("glibc", (2, 17)).manylinux_tag == "manylinux_2_17"


BAD_LINUX_TARGETS = [
    ("musl@1.2", "Linux libc variant must be one of ['glibc'], not 'musl'"),
    ("", "Linux libc variant must be one of ['glibc'], not ''"),
    ("glibc@2", "Linux libc version must be of the form 'X.Y', not '2'"),
    ("glibc@2.28.1", "Linux libc version must be of the form 'X.Y', not '2.28.1'"),
    ("glibc@two", "Linux libc version must be of the form 'X.Y', not 'two'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_LINUX_TARGETS)
def test_bad_linux_target(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_linux_target(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("13", (13, 0)), ("13.0", (13, 0)), ("10.15", (10, 15)), ("11.3", (11, 3))],
)
def test_parse_macosx_target(text: str, expected: tuple[int, int]) -> None:
    assert parse_macosx_target(text) == MacOSTarget(expected)


@pytest.mark.parametrize("text", ["", "13.0.1", "v13", "13.x"])
def test_bad_macosx_target(text: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape("macOS target must be of the form 'X' or 'X.Y'")
    ):
        parse_macosx_target(text)


def test_default_macosx_target_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MACOSX_DEPLOYMENT_TARGET", raising=False)
    assert default_macosx_target() == DEFAULT_MACOSX_TARGET
    monkeypatch.setenv("MACOSX_DEPLOYMENT_TARGET", "11.0")
    assert default_macosx_target() == "11.0"
    monkeypatch.setenv("MACOSX_DEPLOYMENT_TARGET", "")
    assert default_macosx_target() == DEFAULT_MACOSX_TARGET


# (marker, platforms where it is true) for CPython 3.12.4
MARKERS = [
    ("sys_platform == 'linux'", {P.LINUX, P.LINUX_AARCH64}),
    ("sys_platform == 'darwin'", {P.MACOS_APPLE, P.MACOS_INTEL}),
    ("sys_platform == 'win32'", {P.WINDOWS, P.WINDOWS_ARM64}),
    ("os_name == 'nt'", {P.WINDOWS, P.WINDOWS_ARM64}),
    ("platform_system == 'Darwin' and platform_machine == 'arm64'", {P.MACOS_APPLE}),
    ("platform_machine == 'x86_64'", {P.LINUX, P.MACOS_INTEL}),
    ("platform_machine == 'AMD64'", {P.WINDOWS}),
    ("platform_machine == 'ARM64'", {P.WINDOWS_ARM64}),
    ("platform_machine == 'aarch64'", {P.LINUX_AARCH64}),
    ("python_version >= '3.12'", set(TargetPlatform)),
    ("python_full_version < '3.12.4'", set()),
    ("implementation_name == 'cpython'", set(TargetPlatform)),
    ("platform_python_implementation == 'PyPy'", set()),
]


@pytest.mark.parametrize(("marker", "true_on"), MARKERS)
def test_marker_environment(marker: str, true_on: set[TargetPlatform]) -> None:
    evaluated = {
        target
        for target in TargetPlatform
        if Marker(marker).evaluate(marker_environment(target, "3.12.4"))  # type: ignore[arg-type]
    }
    assert evaluated == true_on


@pytest.mark.parametrize("target", sorted(PARTS))
def test_marker_environment_fills_every_key(target: TargetPlatform) -> None:
    env = marker_environment(target, "3.11.7")
    assert set(env) == set(default_environment())
    assert env["python_version"] == "3.11"
    assert env["python_full_version"] == "3.11.7"


UV_PLATFORMS = [
    (P.LINUX, None, "x86_64-manylinux_2_28"),
    (P.LINUX, "glibc@2.17", "x86_64-manylinux_2_17"),
    (P.LINUX, "glibc@2.34", "x86_64-manylinux_2_34"),
    (P.LINUX_AARCH64, None, "aarch64-manylinux_2_28"),
    (P.LINUX_AARCH64, "glibc@2.31", "aarch64-manylinux_2_31"),
    (P.MACOS_APPLE, None, "aarch64-apple-darwin"),
    (P.MACOS_INTEL, None, "x86_64-apple-darwin"),
    (P.WINDOWS, None, "x86_64-pc-windows-msvc"),
    (P.WINDOWS_ARM64, None, "aarch64-pc-windows-msvc"),
]


@pytest.fixture(scope="module")
def uv_platform_names() -> set[str]:
    """The values uv itself accepts for `--python-platform` (from its refusal of a bad one)."""
    refused = subprocess.run(
        [*uv_command(), "pip", "compile", "--python-platform", "not-a-platform", "-"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    found = re.search(r"\[possible values: (.*?)\]", refused.stderr, re.DOTALL)
    assert found is not None, refused.stderr
    names = {v.strip() for v in found[1].split(",")}
    assert "x86_64-manylinux_2_28" in names
    return names


@pytest.mark.parametrize(("target", "linux", "expected"), UV_PLATFORMS)
def test_uv_python_platform(
    target: TargetPlatform, linux: str | None, expected: str, uv_platform_names: set[str]
) -> None:
    parsed = parse_linux_target(linux) if linux else None
    assert uv_python_platform(target, parsed) == expected
    assert expected in uv_platform_names


@pytest.mark.parametrize("linux", ["glibc@2.24", "glibc@2.5", "glibc@2.30", "glibc@2.99"])
def test_every_accepted_linux_target_gives_a_platform_uv_knows(
    linux: str, uv_platform_names: set[str]
) -> None:
    assert uv_python_platform(P.LINUX, parse_linux_target(linux)) in uv_platform_names


def _host_platform() -> TargetPlatform:
    import platform

    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        return TargetPlatform(f"linux_{machine}")
    if sys.platform == "darwin":
        return TargetPlatform(f"macosx_{machine}")
    return TargetPlatform(f"win_{machine}")


def test_build_platform_is_this_machine() -> None:
    assert build_platform() == _host_platform()


@pytest.mark.parametrize(
    ("sysconfig_platform", "expected"),
    [
        ("linux-x86_64", P.LINUX),
        ("linux-aarch64", P.LINUX_AARCH64),
        ("macosx-11.0-arm64", P.MACOS_APPLE),
        ("macosx-10.9-x86_64", P.MACOS_INTEL),
        ("win-amd64", P.WINDOWS),
        ("win-arm64", P.WINDOWS_ARM64),
    ],
)
def test_build_platform_names(
    sysconfig_platform: str, expected: TargetPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platforms.sysconfig, "get_platform", lambda: sysconfig_platform)
    assert build_platform() == expected


def test_universal2_macos_uses_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platforms.sysconfig, "get_platform", lambda: "macosx-10.9-universal2")
    monkeypatch.setattr(platforms.platform, "machine", lambda: "arm64")
    assert build_platform() == P.MACOS_APPLE


@pytest.mark.parametrize("name", ["win32", "linux-i686", "linux-riscv64"])
def test_unsupported_build_platform(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platforms.sysconfig, "get_platform", lambda: name)
    with pytest.raises(ValueError, match="unsupported build platform"):
        build_platform()
