"""Dynamic library linking and portability clean-up of built layer environments."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_wheels import create_venv, make_wheel, uv_pip_install

from venvstacks.envs.dynlib import (
    DYNLIB_DIR,
    SymlinkFix,
    apply_dynlib_links,
    clean_scripts_dir,
    compile_exclude_patterns,
    describe_ambiguities,
    extension_module_suffixes,
    filter_record_text,
    find_shared_libraries,
    is_kept_script,
    is_shared_library,
    make_symlinks_portable,
    plan_dynlib_links,
    plan_symlink_fix,
    translate_glob,
)
from venvstacks.errors import BuildError

LINUX_SUFFIXES = (".cpython-312-x86_64-linux-gnu.so", ".abi3.so", ".so")
HOST_TAG = f"{sys.version_info.major}{sys.version_info.minor}"
HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# --- pure helpers ------------------------------------------------------------------------------


def test_extension_suffixes_are_rewritten_for_the_layer_version() -> None:
    assert extension_module_suffixes("3.11.9", LINUX_SUFFIXES) == {
        ".cpython-311-x86_64-linux-gnu.so",
        ".abi3.so",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("libfoo.so", True),
        ("libfoo.dylib", True),
        ("libfoo.1.2.so", True),
        ("libfoo.so.1", False),
        ("_speedups.cpython-311-x86_64-linux-gnu.so", False),
        ("_speedups.cpython-312-x86_64-linux-gnu.so", True),  # another Python's module
        ("_speedups.abi3.so", False),
        ("module.py", False),
    ],
)
def test_is_shared_library(name: str, expected: bool) -> None:
    suffixes = extension_module_suffixes("3.11", LINUX_SUFFIXES)
    assert is_shared_library(name, suffixes) is expected


GLOB_CASES = [
    ("/libfoo.so", r"(?s:/libfoo\.so)\Z"),
    ("/torch/lib/*.so", r"(?s:/torch/lib/[^/]*\.so)\Z"),
    ("/**/libfoo.so", r"(?s:/(?:.+/)?libfoo\.so)\Z"),
    ("/pkg/**", r"(?s:/pkg/.*)\Z"),
    ("/pkg/*/lib?.so", r"(?s:/pkg/[^/]+/lib[^/]\.so)\Z"),
    ("/pkg/*", r"(?s:/pkg/[^/]+)\Z"),
    ("/lib[!x]y.so", r"(?s:/lib[^x]y\.so)\Z"),
    ("/lib[abc.so", r"(?s:/lib\[abc\.so)\Z"),
    ("/a/**/**/b", r"(?s:/a/(?:.+/)?b)\Z"),
    ("/x/[a-c].so", r"(?s:/x/[a-c]\.so)\Z"),
    ("/x/[-a]", r"(?s:/x/[\-a])\Z"),
    ("/x/[c-a]", r"(?s:/x/(?!))\Z"),
    ("/x/[!c-a]", r"(?s:/x/.)\Z"),
    ("/x/[^&&]", r"(?s:/x/[\^\&\&])\Z"),
]


@pytest.mark.parametrize(("pattern", "expected"), GLOB_CASES)
def test_translate_glob(pattern: str, expected: str) -> None:
    assert translate_glob(pattern) == expected


@pytest.mark.skipif(not hasattr(glob, "translate"), reason="glob.translate needs Python 3.13")
@pytest.mark.parametrize(("pattern", "expected"), GLOB_CASES)
def test_translate_glob_matches_the_stdlib(pattern: str, expected: str) -> None:
    stdlib = glob.translate(pattern, recursive=True, include_hidden=True, seps="/")  # type: ignore[attr-defined]
    assert translate_glob(pattern) == stdlib


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("libfoo.so", "/env/lib/site-packages/pkg/libfoo.so", True),
        ("libfoo.so", "/env/lib/site-packages/pkg/xlibfoo.so", False),
        ("pkg/*.so", "/env/site-packages/pkg/libfoo.so", True),
        ("pkg/*.so", "/env/site-packages/pkg/sub/libfoo.so", False),
        ("pkg/**/*.so", "/env/site-packages/pkg/sub/deep/libfoo.so", True),
        ("**/.hidden/*.so", "/env/site-packages/pkg/.hidden/libfoo.so", True),
    ],
)
def test_exclude_patterns_match_path_ends(pattern: str, path: str, excluded: bool) -> None:
    (regex,) = compile_exclude_patterns([pattern])
    assert bool(regex.search(path)) is excluded


def test_plan_maps_names_to_libraries(tmp_path: Path) -> None:
    libs = [tmp_path / "b" / "libb.so", tmp_path / "a" / "liba.so"]
    assert plan_dynlib_links(libs) == {"liba.so": libs[1], "libb.so": libs[0]}


def test_describe_ambiguities() -> None:
    clashes = {
        "libb.so": [Path("/y/libb.so"), Path("/x/libb.so")],
        "liba.so": [Path("/x/liba.so"), Path("/y/liba.so")],
    }
    assert describe_ambiguities(clashes) == (
        "Ambiguous dynamic library link targets:\n"
        "  share/venv/dynlib/liba.so => [/x/liba.so, /y/liba.so]\n"
        "  share/venv/dynlib/libb.so => [/x/libb.so, /y/libb.so]\n"
        "Set `dynlib_exclude` in the layer definition to resolve this ambiguity."
    )


def _error_text(exc: BaseException) -> str:
    # errors.BuildError currently keeps (layer, message) as its args (RuntimeError.__init__
    # shadows LayerError.__init__ in the MRO); accept the message in either form.
    return "\n".join([str(exc), *(str(a) for a in exc.args)])


def test_plan_reports_every_ambiguity(tmp_path: Path) -> None:
    libs = [tmp_path / d / n for d in ("x", "y") for n in ("liba.so", "libb.so", f"lib{d}.so")]
    with pytest.raises(BuildError) as caught:
        plan_dynlib_links(libs, layer="framework-demo")
    clashes = {n: [tmp_path / "x" / n, tmp_path / "y" / n] for n in ("liba.so", "libb.so")}
    assert describe_ambiguities(clashes) in _error_text(caught.value)
    assert "framework-demo" in _error_text(caught.value)


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("python", True),
        ("python3.12", True),
        ("Python.exe", True),
        ("pip", False),
        ("activate", False),
    ],
)
def test_is_kept_script(name: str, kept: bool) -> None:
    assert is_kept_script(name) is kept


def test_filter_record_text_drops_removed_entries_only() -> None:
    record = (
        '../../../bin/tool,sha256=abc,10\n"pkg/odd,name.py",sha256=def,20\r\npkg/__init__.py,,\n'
    )
    site = "/env/lib/python3.12/site-packages"
    assert filter_record_text(record, site, ["/env/bin/tool"]) == (
        '"pkg/odd,name.py",sha256=def,20\npkg/__init__.py,,\n'
    )
    assert filter_record_text(record, site, ["/env/bin/other"]) is None


def test_plan_symlink_fix_cases(tmp_path: Path) -> None:
    build = str(tmp_path / "build")
    env_bin = tmp_path / "build" / "app-x" / "bin"
    link = env_bin / "python_"

    def plan(raw_target: str) -> SymlinkFix | None:
        return plan_symlink_fix(
            link, raw_target, link_dir_real=str(env_bin), build_dir=build, build_dir_real=build
        )

    runtime_python = f"{build}/cpython-3.12/bin/python3.12"
    assert plan(runtime_python) == SymlinkFix(link, "../../cpython-3.12/bin/python3.12")
    assert plan("python") is None
    assert plan("../../cpython-3.12/bin/python3.12") is None
    assert plan("/usr/bin/python3") == SymlinkFix(link, None)
    assert plan("../../../../outside") == SymlinkFix(link, None)
    assert plan(build + "-sibling/python") == SymlinkFix(link, None)


@pytest.mark.parametrize("spelled_target", [False, True])
def test_plan_symlink_fix_accepts_either_spelling_of_the_build_dir(
    tmp_path: Path, spelled_target: bool
) -> None:
    alias, real = tmp_path / "alias", tmp_path / "real-build"
    link = alias / "env" / "bin" / "python_"
    target = (alias if spelled_target else real) / "rt" / "bin" / "python"
    fix = plan_symlink_fix(
        link,
        str(target),
        link_dir_real=str(real / "env" / "bin"),
        build_dir=str(alias),
        build_dir_real=str(real),
    )
    assert fix == SymlinkFix(link, "../../rt/bin/python")


# --- a real venv with real wheels --------------------------------------------------------------


@pytest.fixture
def built_env(wheelhouse: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A venv in ``<tmp>/build/env`` holding vs-native, vs-app-a and a lib-bundling wheel."""
    extras = tmp_path / "extras"
    make_wheel(
        extras,
        "vs-bundle",
        "1.0",
        tag="py3-none-manylinux_2_17_x86_64",
        files={
            f"vs_bundle/_speedups.cpython-{HOST_TAG}-x86_64-linux-gnu.so": b"ext module",
            "vs_bundle/_stable.abi3.so": b"stable ABI ext module",
            "vs_bundle/libs/libbundle.so": b"a library",
            "vs_bundle/libs/libvsnative.so": b"a clashing copy",
            "vs_bundle/libs/libmac.dylib": b"a macOS library",
            "vs_bundle/libs/libversioned.so.1": b"not scanned",
        },
    )
    python = create_venv(tmp_path / "build" / "env")
    result = uv_pip_install(
        python,
        "vs-native",
        "vs-bundle",
        "vs-app-a",
        find_links=[wheelhouse, extras],
        python_platform="x86_64-manylinux_2_28",
    )
    assert result.returncode == 0, result.stderr
    site_packages = next((tmp_path / "build" / "env" / "lib").glob("python*/site-packages"))
    return tmp_path / "build" / "env", site_packages


def _names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.slow
def test_find_shared_libraries_in_a_real_env(built_env: tuple[Path, Path]) -> None:
    _env, site_packages = built_env
    libs = find_shared_libraries(site_packages, py_version=HOST_VERSION, exclude_patterns=[])
    assert sorted(_names(libs)) == [
        "libbundle.so",
        "libmac.dylib",
        "libvsnative.so",
        "libvsnative.so",
    ]
    assert all(p.is_absolute() for p in libs)
    other_python = find_shared_libraries(site_packages, py_version="3.99", exclude_patterns=[])
    assert f"_speedups.cpython-{HOST_TAG}-x86_64-linux-gnu.so" in _names(other_python)


@pytest.mark.slow
def test_dynlib_ambiguity_is_resolved_by_exclusions(built_env: tuple[Path, Path]) -> None:
    env, site_packages = built_env
    libs = find_shared_libraries(site_packages, py_version=HOST_VERSION, exclude_patterns=[])
    with pytest.raises(BuildError, match=re.escape("share/venv/dynlib/libvsnative.so => [")):
        plan_dynlib_links(libs)
    libs = find_shared_libraries(
        site_packages, py_version=HOST_VERSION, exclude_patterns=["vs_bundle/**/libvsnative.so"]
    )
    plan = plan_dynlib_links(libs)
    assert plan["libvsnative.so"] == site_packages / "vs_native" / "libvsnative.so"
    (env / DYNLIB_DIR).mkdir(parents=True)
    (env / DYNLIB_DIR / "stale.so").symlink_to("nowhere")
    dynlib_dir = apply_dynlib_links(env, plan)
    assert sorted(p.name for p in dynlib_dir.iterdir()) == sorted(plan)
    for name, target in plan.items():
        link = dynlib_dir / name
        assert not link.readlink().is_absolute()
        assert link.resolve() == target.resolve()
        assert link.read_bytes() == target.read_bytes()


@pytest.mark.slow
def test_clean_scripts_dir_keeps_python_and_fixes_record(built_env: tuple[Path, Path]) -> None:
    env, site_packages = built_env
    (env / "bin" / "__pycache__").mkdir()
    removed = clean_scripts_dir(env)
    assert "vs-app-a" in _names(removed)
    assert "activate" in _names(removed)
    assert "__pycache__" in _names(removed)
    assert all(is_kept_script(p.name) for p in (env / "bin").iterdir())
    assert (env / "bin" / "python").exists()
    record = (site_packages / "vs_app_a-1.0.dist-info" / "RECORD").read_text()
    assert "bin/vs-app-a" not in record
    assert "vs_app_a/__init__.py," in record
    assert "\r" not in record
    assert clean_scripts_dir(env) == []


@pytest.mark.slow
def test_make_symlinks_portable(built_env: tuple[Path, Path], tmp_path: Path) -> None:
    env, _site_packages = built_env
    build = tmp_path / "build"
    (build / "peer").mkdir()
    (build / "peer" / "data.txt").write_text("peer data")
    (env / "peer-link").symlink_to(build / "peer" / "data.txt")
    bin_dir = env / "bin"
    links = [p for p in bin_dir.iterdir() if p.is_symlink()]
    outward = {p.name: p.resolve() for p in links if p.readlink().is_absolute()}
    inward = {p.name for p in links} - outward.keys()
    assert outward  # the venv's interpreter link points at the base Python, outside the build

    fixes = make_symlinks_portable(env, build)

    assert {f.link.name for f in fixes} == {"peer-link", *outward}
    assert str((env / "peer-link").readlink()) == "../peer/data.txt"
    assert (env / "peer-link").read_text() == "peer data"
    for name, original in outward.items():
        materialised = bin_dir / name
        assert not materialised.is_symlink()
        assert materialised.read_bytes() == original.read_bytes()
        assert os.access(materialised, os.X_OK)
    assert all((bin_dir / name).is_symlink() for name in inward)
    version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(version) == env
    assert make_symlinks_portable(env, build) == []
