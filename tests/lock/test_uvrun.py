"""Tests for venvstacks.lock.uvrun: uv's failure output read in the layer's terms.

The outputs below are what uv 0.9 printed for `uv lock` on resolve projects over local wheels
(vs-needs-old-util needs vs-util<2, vs-needs-new-util needs vs-util>=2, vs-winonly has only a
win_amd64 wheel); tests/e2e/test_lock_failures.py runs real uv through the CLI.
"""

from __future__ import annotations

import pytest

from venvstacks.lock.uvrun import describe_failure, failing_platform, settings_rejected
from venvstacks.plan.platforms import TargetPlatform

LINUX, WIN = TargetPlatform.LINUX, TargetPlatform.WINDOWS
TWO = (LINUX, WIN)

SPLIT_LINUX = (
    "error: No solution found when resolving dependencies for split "
    "(markers: platform_machine == 'x86_64' and sys_platform == 'linux')\n"
)
SPLIT_WIN = (
    "error: No solution found when resolving dependencies for split "
    "(markers: platform_machine == 'AMD64' and sys_platform == 'win32')\n"
)
UV_HINT = (
    "\nhint: The resolution failed for an environment that is not the current one, consider "
    "limiting the environments with `tool.uv.environments`.\n"
)
CONFLICT = SPLIT_LINUX + (
    "  cause: Because all versions of vs-needs-old-util depend on vs-util<2 and all versions of "
    "vs-needs-new-util depend on vs-util>=2, we can conclude that all versions of "
    "vs-needs-new-util and all versions of vs-needs-old-util are incompatible.\n"
    "         And because your project depends on vs-needs-new-util and vs-needs-old-util, we "
    "can conclude that your project's requirements are unsatisfiable.\n"
)
PINS = SPLIT_LINUX + (
    "  cause: Because your project depends on vs-util==1.0 and vs-util==2.0, we can conclude "
    "that your project's requirements are unsatisfiable.\n"
)
NO_WHEELS = SPLIT_LINUX + (
    "  cause: Because vs-winonly==1.0 has no `platform_machine == 'x86_64' and sys_platform == "
    "'linux'`-compatible wheels and only vs-winonly==1.0 is available, we can conclude that all "
    "versions of vs-winonly cannot be used.\n"
    "         And because your project depends on vs-winonly, we can conclude that your "
    "project's requirements are unsatisfiable.\n"
)
WIN_ONLY_CONFLICT = (
    SPLIT_WIN
    + (
        "  cause: Because all versions of vs-needs-old-util depend on vs-util<2 and your project "
        "depends on vs-needs-old-util{sys_platform == 'win32'}, we can conclude that your "
        "project depends on vs-util<2.\n"
        "         And because your project depends on vs-util==2.0, we can conclude that your "
        "project's requirements are unsatisfiable.\n"
    )
    + UV_HINT
)


def test_failing_platform_is_read_from_the_split_markers() -> None:
    assert failing_platform(CONFLICT, TWO) is LINUX
    assert failing_platform(WIN_ONLY_CONFLICT, TWO) is WIN
    assert failing_platform("error: something else\n", TWO) is None


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        (CONFLICT, "two of its requirements conflict: 'vs-needs-new-util' and 'vs-needs-old-util'"),
        (PINS, "two of its requirements conflict: 'vs-util==1.0' and 'vs-util==2.0'"),
        (NO_WHEELS, "uv could not resolve its requirements"),
    ],
)
def test_conflicts_inside_a_layer_name_both_requirements(output: str, cause: str) -> None:
    failure = describe_failure(output + UV_HINT, TWO, {})
    assert failure.cause == cause
    if output is not NO_WHEELS:
        assert failure.hint is None  # the conflict is there on every platform


@pytest.mark.parametrize(
    ("output", "hint"),
    [
        (NO_WHEELS, 'the resolution failed for linux_x86_64 only; to leave it out, set `platforms = ["win_amd64"]`'),
        (WIN_ONLY_CONFLICT, 'the resolution failed for win_amd64 only; to leave it out, set `platforms = ["linux_x86_64"]`'),
    ],
)  # fmt: skip
def test_platform_hint_only_for_platform_specific_failures(output: str, hint: str) -> None:
    failure = describe_failure(output, TWO, {})
    assert failure.hint is not None and hint in failure.hint


def test_no_platform_hint_for_a_single_platform_layer() -> None:
    assert describe_failure(NO_WHEELS, (LINUX,), {}).hint is None


def test_lower_layer_pins_come_first() -> None:
    failure = describe_failure(PINS, TWO, {"vs-util": "vs-util==1.0 from cpython-3.11"})
    assert (
        failure.cause
        == "its requirements conflict with lower layers (vs-util==1.0 from cpython-3.11)"
    )


def test_rejected_settings() -> None:
    output = (
        "warning: Failed to parse `pyproject.toml` during settings discovery:\n"
        "  TOML parse error at line 7, column 1\n"
        "    |\n"
        "  7 | no-biuld = true\n"
        "    | ^^^^^^^^\n"
        "  unknown field `no-biuld`, expected one of `required-version`, `no-build`, `offline`\n"
        "\n"
        "Resolved 1 package in 5ms\n"
    )
    rejected = settings_rejected(output)
    assert rejected == "unknown key 'no-biuld' (did you mean 'no-build'?)"
    assert settings_rejected("Resolved 1 package in 5ms\n") is None


@pytest.mark.parametrize(
    ("output", "index"),
    [
        (
            (
                "error: Request failed after 3 retries in 9.8s\n"
                "  cause: Failed to fetch: http://127.0.0.1:9/simple/numpy/\n"
                "  cause: client error (Connect)\n  cause: tcp connect error\n"
                "  cause: Connection refused (os error 111)\n"
            ),
            "http://127.0.0.1:9/simple/",
        ),
        (
            (
                "error: Failed to fetch: `https://pypi.org/simple/numpy/`\n"
                "  Caused by: dns error: failed to lookup address information\n"
            ),
            "https://pypi.org/simple/",
        ),
    ],
)
def test_an_unreachable_index_is_named_with_an_offline_hint(output: str, index: str) -> None:
    failure = describe_failure(output, TWO, {})
    assert failure.cause == f"the package index could not be reached ({index})"
    assert failure.hint is not None and "--local-wheels" in failure.hint
