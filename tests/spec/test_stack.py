"""Stack spec loading: every error case of tests/data/specs/error_* has an expectation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from venvstacks.errors import SpecError
from venvstacks.plan.layers import plan_stack
from venvstacks.plan.names import LayerKind
from venvstacks.spec.stack import load_stack_spec, parse_stack_spec

SPECS = Path(__file__).parents[1] / "data" / "specs"

SPEC_ERRORS = {
    "error_app_on_app.toml": r"application 'b': references unknown framework 'a' \(applications cannot depend on applications\)",
    "error_bad_python_implementation.toml": r"python_implementation must look like 'cpython@3.12'.*not 'python3.11'",
    "error_bad_python_version.toml": r"python_implementation version must be X.Y or X.Y.Z, not 'three'",
    "error_c3_failure.toml": r"application 'x': dependency linearization failed",
    "error_category_not_array.toml": r"'runtimes' must be an array of tables",
    "error_common_source_not_index.toml": r"\[tool.uv\]: common uv source for 'numpy' must be an index reference",
    "error_common_source_unknown_index.toml": r"source for 'numpy' references unknown index 'nowhere'",
    "error_cycle.toml": r"framework 'a': dependency cycle: framework 'a' -> framework 'c' -> framework 'b' -> framework 'a'",
    "error_duplicate_application.toml": r"application names must be distinct \('a' is defined twice\)",
    "error_duplicate_framework.toml": r"framework names must be distinct \('f' is defined twice\)",
    "error_duplicate_framework_reference.toml": r"framework 'g': lists a framework more than once",
    "error_duplicate_runtime.toml": r"runtime names must be distinct \('cpython-3.11' is defined twice\)",
    "error_empty_frameworks.toml": r"framework 'f': must specify a runtime or at least one framework dependency",
    "error_exclude_newer_invalid.toml": r"exclude-newer must be an ISO 8601 timestamp, not 'last tuesday'",
    "error_forward_reference.toml": r"framework 'f': references framework 'g' before it is defined",
    "error_inconsistent_lower_indexes.toml": r"application 'a': depends on layers with inconsistent package indexes for 'numpy'.*index_overrides",
    "error_inconsistent_own_index.toml": r"application 'a': declares package index 'other' for 'numpy', but a lower layer uses 'extra'",
    "error_inconsistent_runtimes.toml": r"application 'a': references frameworks on different runtimes",
    "error_invalid_layer_name.toml": r"invalid layer name 'bad/name'",
    "error_layer_name_not_ascii.toml": r"framework '框架': invalid layer name '框架' \(layer names are ASCII",
    "error_invalid_platform.toml": r"invalid target platform 'linux_sparc' \(expected one of",
    "error_invalid_requirement.toml": r"runtime 'cpython-3.11': invalid requirement 'numpy>=>1'",
    "error_invalid_toml.toml": r"invalid TOML: .*line 5",
    "error_key_on_wrong_kind.toml": r"framework 'f': unknown key 'launch_module' \(only allowed on application layers\)",
    "error_launch_module_missing.toml": r"application 'a': launch module '.*no_such_module.py' does not exist",
    "error_launch_support_conflict.toml": r"launch module 'app' conflicts with a support module",
    "error_legacy_both_names.toml": r"sets both 'python_implementation' and the obsolete 'fully_versioned_name'",
    "error_linux_target_variant.toml": r"Linux libc variant must be one of \['glibc'\], not 'musl'",
    "error_linux_target_version.toml": r"Linux libc version must be of the form 'X.Y', not '235'",
    "error_macosx_target.toml": r"macOS target must be of the form 'X' or 'X.Y', not 'fourteen'",
    "error_missing_launch_module.toml": r"application 'a': missing required key 'launch_module'",
    "error_misspelt_category.toml": r"unknown table 'application' \(did you mean 'applications'\?\)",
    "error_missing_name.toml": r"runtimes\[0\]: missing required key 'name'",
    "error_missing_python_implementation.toml": r"runtime 'rt': missing required key 'python_implementation'",
    "error_missing_requirements.toml": r"runtime 'rt': missing required key 'requirements'",
    "error_no_dependency.toml": r"framework 'f': must specify a runtime or at least one framework dependency",
    "error_package_index_normalized_twice.toml": r"package_indexes names 'foo-bar' twice after name normalization",
    "error_platform_not_in_lower.toml": r"framework 'f': specifies target platforms not supported by lower layers \(\['win_amd64'\]\)",
    "error_reserved_runtime_prefix.toml": r"runtime name 'app-runtime' starts with the reserved prefix 'app'",
    "error_runtime_and_frameworks.toml": r"framework 'g': must specify a runtime or framework dependencies, not both",
    "error_runtime_key_on_runtime.toml": r"runtime 'cpython-3.11': unknown key 'runtime' \(only allowed on framework, application layers\)",
    "error_self_cycle.toml": r"framework 'a': dependency cycle: framework 'a' -> framework 'a'",
    "error_several_problems.toml": r"3 problems: .*invalid requirement 'a>=>1'.*'versioned' must be true or false.*missing.py' does not exist",
    "error_support_module_missing.toml": r"support modules do not exist: \['.*nope.py'\]",
    "error_support_module_names_conflict.toml": r"conflicting support module names: \['helper'\]",
    "error_tool_settings_bad_fallback.toml": r"runtime-fallback must be one of \['none', 'host'\], not 'download'",
    "error_tool_settings_unknown_key.toml": r"unknown key 'runtime-archive' \(did you mean 'runtime-archives'\?\)",
    "error_unknown_framework.toml": r"application 'a': references unknown framework 'nope'",
    "error_unknown_key_typo.toml": r"unknown key 'requirments' \(did you mean 'requirements'\?\)",
    "error_unknown_package_index.toml": r"package_indexes maps 'numpy' to unknown index 'nowhere'",
    "error_unknown_priority_index.toml": r"priority_indexes names unknown index 'nowhere'",
    "error_unknown_runtime.toml": r"framework 'f': references unknown runtime 'cpython-3.99'",
    "error_wrong_type_bool.toml": r"'versioned' must be true or false, not a string \('yes'\)",
    "error_wrong_type_list.toml": r"'requirements' must be an array, not a string \('numpy'\)",
    "error_yaml_syntax.yaml": r"invalid YAML: ",
}


def test_every_error_spec_has_an_expectation() -> None:
    assert sorted(p.name for p in SPECS.glob("error_*")) == sorted(SPEC_ERRORS)


@pytest.mark.parametrize("fname", sorted(SPEC_ERRORS))
def test_spec_error(fname: str) -> None:
    path = SPECS / fname
    with pytest.raises(SpecError) as info:
        plan_stack(load_stack_spec(path))
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert "\n" not in message
    assert re.search(SPEC_ERRORS[fname], message), message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_stack_spec(tmp_path / "venvstacks.toml")


def test_folder_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder"):
        load_stack_spec(tmp_path)


def test_valid_spec_fields_are_parsed() -> None:
    spec = load_stack_spec(SPECS / "valid_diamond.toml")
    assert [l.env_name for l in spec.layers] == [
        "cpython-3.11", "framework-a", "framework-b", "framework-c", "framework-d", "app-x",
    ]
    app = spec.applications[0]
    assert app.kind is LayerKind.APPLICATION
    assert app.launch_module == SPECS / "app.py"
    assert app.frameworks == ("d", "b")


def test_requirements_are_normalised() -> None:
    data = {
        "runtimes": [
            {
                "name": "rt",
                "python_implementation": "cpython@3.11",
                "requirements": ["dlltracer;sys_platform=='win32'", "NumPy >= 1.0"],
            }
        ]
    }
    spec = parse_stack_spec(data, Path("/x/venvstacks.toml"))
    assert spec.runtimes[0].requirements == (
        'dlltracer; sys_platform == "win32"',
        "NumPy>=1.0",
    )


def test_legacy_fields_are_converted_with_warnings() -> None:
    data = {
        "runtimes": [
            {
                "name": "rt",
                "fully_versioned_name": "cpython@3.11.7",
                "requirements": [],
                "build_requirements": ["x"],
            }
        ]
    }
    spec = parse_stack_spec(data, Path("/x/venvstacks.toml"))
    assert spec.runtimes[0].python_implementation == "cpython@3.11.7"
    assert any("build_requirements" in w for w in spec.warnings)
    assert any("fully_versioned_name" in w for w in spec.warnings)


def test_yaml_spec_loads_like_toml(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "venvstacks.yaml").write_text(
        "runtimes:\n"
        "  - name: rt\n    python_implementation: cpython@3.12\n    requirements: []\n"
        "frameworks:\n  - name: f\n    runtime: rt\n    requirements: [numpy]\n"
        "applications:\n  - name: a\n    frameworks: [f]\n    launch_module: app.py\n"
        "    requirements: []\n    versioned: true\n"
    )
    plan = plan_stack(load_stack_spec(tmp_path / "venvstacks.yaml"))
    assert [l.env_name for l in plan.layers] == ["rt", "framework-f", "app-a"]
    assert plan["app-a"].spec.versioned


def test_uv_config_from_side_file(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12"\nrequirements = []\n'
    )
    (tmp_path / "venvstacks.uv.toml").write_text(
        'exclude-newer = "2025-01-01T00:00:00Z"\n[[index]]\nname = "x"\nurl = "https://x.invalid"\n'
    )
    spec = load_stack_spec(tmp_path / "venvstacks.toml")
    assert spec.uv.named_indexes["x"].url == "https://x.invalid"
    assert spec.uv.exclude_newer is not None and spec.uv.exclude_newer.year == 2025


def test_inline_uv_table_wins_over_side_file(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12"\nrequirements = []\n'
        "[tool.uv]\n"
    )
    (tmp_path / "venvstacks.uv.toml").write_text("this is = = not toml")
    spec = load_stack_spec(tmp_path / "venvstacks.toml")
    assert spec.uv.indexes == ()


def test_tool_settings(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12"\nrequirements = []\n'
        '[tool.venvstacks]\nruntime-archives = ["archives", "/abs"]\nruntime-fallback = "host"\n'
        'archive-format = "tar.zst"\n'
    )
    settings = load_stack_spec(tmp_path / "venvstacks.toml").settings
    assert settings.runtime_archives == (tmp_path / "archives", Path("/abs"))
    assert settings.runtime_fallback == "host"
    assert settings.archive_format == "tar.zst"


@pytest.mark.parametrize(
    "name",
    ["框架", "my app", ".hidden", "..", ".", "x-", "-x", "a b", "tab\tname", "x" * 101, "naïve"],
)
def test_layer_names_that_cannot_name_a_uv_project_are_refused(name: str) -> None:
    data = {"frameworks": [{"name": name, "runtime": "rt", "requirements": []}]}
    with pytest.raises(SpecError, match=r"invalid layer name .*ASCII letters, digits") as info:
        parse_stack_spec(data, Path("/s/venvstacks.toml"))
    assert str(info.value).startswith("/s/venvstacks.toml: framework")


@pytest.mark.parametrize("name", ["numpy", "torch-cu128", "layerF@1", "a.b_c-d", "X", "x" * 100])
def test_usable_layer_names(name: str) -> None:
    data = {"runtimes": [{"name": name, "python_implementation": "cpython@3.11", "requirements": []}]}
    assert parse_stack_spec(data, Path("/s/venvstacks.toml")).runtimes[0].name == name


def test_names_differing_only_in_case_are_refused() -> None:
    data = {
        "frameworks": [
            {"name": "Web", "runtime": "rt", "requirements": []},
            {"name": "web", "runtime": "rt", "requirements": []},
        ]
    }
    with pytest.raises(SpecError, match="must differ by more than case"):
        parse_stack_spec(data, Path("/s/venvstacks.toml"))


@pytest.mark.parametrize("dist", ["框架", "-numpy", "num py", ""])
def test_package_indexes_need_valid_distribution_names(dist: str) -> None:
    data = {
        "runtimes": [
            {
                "name": "rt",
                "python_implementation": "cpython@3.11",
                "requirements": [],
                "package_indexes": {dist: "extra"},
            }
        ]
    }
    with pytest.raises(SpecError, match="is not a valid distribution name"):
        parse_stack_spec(data, Path("/s/venvstacks.toml"))
