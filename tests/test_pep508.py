"""pep508.py: every fast answer equals packaging's; packaging judges everything else."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from venvstacks.pep508 import (
    InvalidRequirementText,
    _fast_requirement,
    canonical_name,
    normalised_requirement,
    normalised_version,
    plain_marker,
)

REPO = Path(__file__).resolve().parents[1]

PLAIN = [
    "numpy",
    "numpy>=2,<3",
    "numpy >= 2 , < 3",
    "  numpy>=2  ",
    "Django==4.2.*",
    "django!=4.0.*",
    "torch==2.13.0",
    "scikit-learn~=1.4",
    "scikit_learn~=1.4.2",
    "a",
    "A1",
    "pkg[extra]",
    "pkg[b,a]>=1",
    "pkg[ b , a ]>=1",
    "pkg [a] >=1",
    "pkg[a,a]",
    "x.y-z_w<=01.002",
    "pkg>1,<2,!=1.5",
    "pkg<2,>1",
    "pkg>=1.0,<=2.0",
]

JUDGED_BY_PACKAGING = [
    "numpy>=2; python_version >= '3.10'",
    "numpy @ https://example.invalid/numpy-2.0-py3-none-any.whl",
    "pkg==1.0,==1.0.0",
    "pkg>=1,>=1.0",
    "pkg>=1.0rc1",
    "pkg==1.0+local",
    "pkg===weird",
    "pkg(>=1)",
    "pkg>=1.0.post1",
    "pkg==1!2.0",
    "pkg<=1.*",
    "pkg~=1",
    "pkg~=1.*",
    "pkg>=1,",
    "pkg>=",
    "pkg 2",
    "-pkg",
    "pkg-",
    "pkg[]",
    "pkg[a",
    "",
    "   ",
    "pkg>=1 and",
    "pkg>=1.0a",
    "pkg==v1.0",
]


def _packaging(text: str) -> str | None:
    try:
        return str(Requirement(text))
    except InvalidRequirement:
        return None


def _ours(text: str) -> str | None:
    try:
        return normalised_requirement(text)
    except InvalidRequirementText:
        return None


@pytest.mark.parametrize("text", PLAIN)
def test_plain_requirements_take_the_fast_path_and_match_packaging(text: str) -> None:
    assert _fast_requirement(text) is not None
    assert normalised_requirement(text) == str(Requirement(text))


@pytest.mark.parametrize("text", JUDGED_BY_PACKAGING)
def test_everything_else_is_judged_by_packaging(text: str) -> None:
    assert _fast_requirement(text) is None
    assert _ours(text) == _packaging(text)


def test_an_invalid_requirement_says_what_packaging_says() -> None:
    with pytest.raises(InvalidRequirementText) as caught:
        normalised_requirement("pkg>=")
    with pytest.raises(InvalidRequirement) as theirs:
        Requirement("pkg>=")
    assert str(caught.value) == str(theirs.value).splitlines()[0]


def _repo_requirement_strings() -> list[str]:
    """Every requirement of every spec in the repository, from their TOML."""
    import tomllib

    found: list[str] = []
    for spec in sorted((REPO / "specs").rglob("venvstacks.toml")):
        data = tomllib.loads(spec.read_text())
        for kind in ("runtimes", "frameworks", "applications"):
            for layer in data.get(kind, []):
                found.extend(layer.get("requirements", []))
    return found


def test_the_repository_specs_agree_with_packaging() -> None:
    texts = _repo_requirement_strings()
    assert texts
    for text in texts:
        assert _ours(text) == _packaging(text), text


@pytest.mark.parametrize(
    "name", ["Django", "oslo.concurrency", "a__b", "A-_.-B", "torch", "scikit_learn", "x..y"]
)
def test_canonical_name_is_packagings(name: str) -> None:
    assert canonical_name(name) == canonicalize_name(name)


@pytest.mark.parametrize(
    "text",
    ["2.4.6", "0", "10.0.0", "1.0", "01.2", "1.0rc1", "2.0.post1", "1!2", "1.0+cpu", "v1", "x", ""],
)
def test_versions_are_spelled_as_packaging_spells_them(text: str) -> None:
    try:
        expected: str | None = str(Version(text))
    except InvalidVersion:
        expected = None
    assert normalised_version(text) == expected


def test_loading_a_plain_spec_and_hashing_its_inputs_does_not_import_packaging(
    tmp_path: Path,
) -> None:
    """The point of the module: a no-op build's start-up leaves packaging alone."""
    (tmp_path / "venvstacks.toml").write_text(
        textwrap.dedent(
            """
            [[runtimes]]
            name = "cpython-3.11"
            python_implementation = "cpython@3.11"
            requirements = ["pip>=23"]

            [[frameworks]]
            name = "numpy"
            runtime = "cpython-3.11"
            requirements = ["numpy>=2,<3", "scipy[extra]==1.*"]
            """
        )
    )
    code = textwrap.dedent(
        f"""
        import sys
        from venvstacks.spec.stack import load_stack_spec
        from venvstacks.lock.hashes import lock_input_hash, requirement_hash_lines
        spec = load_stack_spec({str(tmp_path / "venvstacks.toml")!r})
        lock_input_hash(["numpy>=2,<3", "tabulate"])
        requirement_hash_lines(
            '[[packages]]\\nname = "numpy"\\nversion = "2.4.6"\\n'
            'marker = "sys_platform == \\'from_lower_layer\\'"\\n'
            '[[packages]]\\nname = "colorama"\\nversion = "0.4.6"\\n'
            'marker = "sys_platform == \\'win32\\'"\\n'
        )
        loaded = sorted(m for m in sys.modules if m.startswith("packaging."))
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


PLAIN_MARKERS = [
    "sys_platform == 'win32'",
    'sys_platform == "win32"',
    "sys_platform == 'from_lower_layer'",
    "python_version<'3.11' and sys_platform=='linux' or os_name == 'nt'",
    "platform_machine in 'x86_64 aarch64'",
    "python_version not in '3.8, 3.9'",
    "python_version  not   in '3.8'",
    "implementation_name == 'cpython' and platform_python_implementation != 'PyPy'",
    "platform_version == 'a and b'",
    "python_full_version >= '3.11.1'",
]
OTHER_MARKERS = [
    "'linux' == sys_platform",
    "python_implementation == 'CPython'",
    "extra == 'Foo_Bar'",
    "(sys_platform == 'a') and os_name == 'b'",
    "os.name == 'nt'",
    "sys_platform == 'a'and os_name == 'b'",
    "sys_platform == 'a' andos_name == 'b'",
    "sys_platform == 'a' and",
    "sys_platform = 'a'",
    "sys_platform == a",
    "nonsense == 'a'",
    "",
]


def _packaging_marker(text: str) -> str | None:
    try:
        return str(Marker(text)).replace('"', "'")
    except InvalidMarker:
        return None


@pytest.mark.parametrize("text", PLAIN_MARKERS)
def test_plain_markers_are_spelled_as_packaging_spells_them(text: str) -> None:
    assert plain_marker(text) == _packaging_marker(text)


@pytest.mark.parametrize("text", OTHER_MARKERS)
def test_other_markers_are_left_to_packaging(text: str) -> None:
    assert plain_marker(text) is None
