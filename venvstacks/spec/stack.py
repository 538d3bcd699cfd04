"""Stack specifications: `venvstacks.toml` (or `.yaml`) → frozen, checked `StackSpec` values.

Reading the file is the only I/O here (plus existence checks of launch and support modules); all
checks collect their problems and `load_stack_spec` raises one `SpecError` naming every problem.
Cross-layer rules (references, cycles, C3 order, platforms, index consistency) live in `graph.py`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvstacks.errors import SpecError
from venvstacks.paths import canonical_file
from venvstacks.plan.names import EnvName, LayerKind, LayerName, env_name_for
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.spec.fields import LayerTable, Problems, check_distinct_names, check_name
from venvstacks.spec.indexes import UvConfig, parse_uv_config
from venvstacks.spec.settings import ToolSettings, parse_tool_settings

__all__ = ["LayerSpec", "StackSpec", "load_stack_spec", "parse_stack_spec"]

SPEC_CATEGORIES = ("runtimes", "frameworks", "applications")
_KIND_OF = {kind.category: kind for kind in LayerKind}
UV_CONFIG_FILENAME = "venvstacks.uv.toml"


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """One layer as declared in the spec (before cross-layer resolution)."""

    kind: LayerKind
    name: LayerName
    requirements: tuple[str, ...]
    platforms: tuple[TargetPlatform, ...] | None = None
    versioned: bool = False
    linux_target: str | None = None
    macosx_target: str | None = None
    dynlib_exclude: tuple[str, ...] = ()
    package_indexes: Mapping[str, str] = field(default_factory=dict)
    priority_indexes: tuple[str, ...] = ()
    index_overrides: Mapping[str, str] = field(default_factory=dict)
    python_implementation: str | None = None
    runtime: str | None = None
    frameworks: tuple[str, ...] = ()
    launch_module: Path | None = None
    support_modules: tuple[Path, ...] = ()

    @property
    def env_name(self) -> EnvName:
        return env_name_for(self.kind, self.name)

    @property
    def where(self) -> str:
        return f"{self.kind.value} {self.name!r}"


@dataclass(frozen=True, kw_only=True)
class StackSpec:
    """A whole stack as declared: layers by kind in file order, uv and venvstacks settings."""

    path: Path
    runtimes: tuple[LayerSpec, ...]
    frameworks: tuple[LayerSpec, ...]
    applications: tuple[LayerSpec, ...]
    uv: UvConfig
    settings: ToolSettings
    warnings: tuple[str, ...] = ()

    @property
    def spec_dir(self) -> Path:
        return self.path.parent

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        """Every layer, runtimes first, then frameworks, then applications."""
        return self.runtimes + self.frameworks + self.applications


def load_stack_spec(path: Path) -> StackSpec:
    """Read and check a stack spec file. Raises SpecError naming every problem found."""
    path = canonical_file(path)
    data = _read_document(path)
    return parse_stack_spec(data, path)


def _read_document(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        raise SpecError(str(path), ["no such file"])
    if path.is_dir():
        raise SpecError(str(path), ["is a folder, not a stack spec file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"cannot read: {exc}"]) from None
    if path.suffix in (".yaml", ".yml"):
        return _parse_yaml(text, path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [f"invalid TOML: {exc}"]) from None


def _parse_yaml(text: str, path: Path) -> Mapping[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise SpecError(str(path), [f"invalid YAML: {detail}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(str(path), ["the document must be a mapping of layer categories"])
    return data


def parse_stack_spec(data: Mapping[str, Any], path: Path) -> StackSpec:
    """Check a parsed spec document. Raises SpecError naming every problem found."""
    problems = Problems()
    _check_top_level_keys(data, problems)
    layers = {cat: _parse_category(data, cat, path.parent, problems) for cat in SPEC_CATEGORIES}
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        problems.add("", "'tool' must be a table")
        tool = {}
    uv = _load_uv_config(tool, path, problems)
    settings = parse_tool_settings(tool.get("venvstacks", {}), path.parent, problems.items)
    _check_application_modules(layers["applications"], problems)
    if problems.items:
        raise SpecError(str(path), problems.items)
    return StackSpec(
        path=path,
        runtimes=layers["runtimes"],
        frameworks=layers["frameworks"],
        applications=layers["applications"],
        uv=uv,
        settings=settings,
        warnings=tuple(problems.warnings),
    )


def _check_top_level_keys(data: Mapping[str, Any], problems: Problems) -> None:
    """A near-miss of a layer table is an error (its layers would vanish); others are warned."""
    import difflib

    for key in sorted(set(data) - {*SPEC_CATEGORIES, "tool"}):
        close = difflib.get_close_matches(key, SPEC_CATEGORIES, n=1, cutoff=0.75)
        if close:
            problems.add("", f"unknown table {key!r} (did you mean {close[0]!r}?)")
        else:
            problems.warnings.append(f"ignoring unknown top-level key {key!r}")


def _parse_category(
    data: Mapping[str, Any], category: str, spec_dir: Path, problems: Problems
) -> tuple[LayerSpec, ...]:
    raw = data.get(category, [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.add("", f"{category!r} must be an array of tables ([[{category}]])")
        return ()
    kind = _KIND_OF[category]
    tables = [LayerTable(kind, n, t, problems) for n, t in enumerate(raw)]
    check_distinct_names(tables, problems)
    specs = (_parse_layer(t, spec_dir) for t in tables)
    return tuple(s for s in specs if s is not None)


def _parse_layer(t: LayerTable, spec_dir: Path) -> LayerSpec | None:
    before = len(t.problems.items)
    _apply_legacy_fields(t)
    t.check_keys()
    name = check_name(t)
    fields: dict[str, Any] = {
        "requirements": t.requirements(),
        "platforms": t.platforms(),
        "versioned": t.boolean("versioned"),
        "linux_target": t.linux_target(),
        "macosx_target": t.macosx_target(),
        "dynlib_exclude": t.string_list("dynlib_exclude") or (),
        "package_indexes": t.package_indexes(),
        "priority_indexes": t.string_list("priority_indexes") or (),
        "index_overrides": t.string_table("index_overrides"),
    }
    fields.update(_kind_fields(t, spec_dir))
    if name is None or len(t.problems.items) > before:
        return None
    return LayerSpec(kind=t.kind, name=LayerName(name), **fields)


def _apply_legacy_fields(t: LayerTable) -> None:
    """Convert or drop the fields older venvstacks releases accepted, with a warning each."""
    table = dict(t.table)
    if "build_requirements" in table:
        del table["build_requirements"]
        t.problems.warnings.append(f"{t.where}: dropping legacy field 'build_requirements'")
    if "fully_versioned_name" in table:
        if t.kind is not LayerKind.RUNTIME:
            t.problem("unknown key 'fully_versioned_name' (only allowed on runtime layers)")
        elif "python_implementation" in table:
            t.problem("sets both 'python_implementation' and the obsolete 'fully_versioned_name'")
        else:
            table["python_implementation"] = table["fully_versioned_name"]
            t.problems.warnings.append(
                f"{t.where}: converting legacy field 'fully_versioned_name' to "
                "'python_implementation'"
            )
        del table["fully_versioned_name"]
    t.table = table


def _kind_fields(t: LayerTable, spec_dir: Path) -> dict[str, Any]:
    if t.kind is LayerKind.RUNTIME:
        return {"python_implementation": _python_implementation(t)}
    fields = _dependency_fields(t)
    if t.kind is LayerKind.APPLICATION:
        launch = t.string("launch_module")
        fields["launch_module"] = (spec_dir / launch) if launch else None
        if launch == "":
            t.problem("'launch_module' must not be empty")
        support = t.string_list("support_modules") or ()
        fields["support_modules"] = tuple(spec_dir / p for p in sorted(support))
    return fields


def _python_implementation(t: LayerTable) -> str | None:
    text = t.string("python_implementation")
    if text is None:
        return None
    impl, sep, version = text.partition("@")
    if not sep or impl not in ("cpython", "pypy") or not version:
        t.problem(
            f"python_implementation must look like 'cpython@3.12' or 'cpython@3.12.7', not {text!r}"
        )
        return None
    digits = version.split("-", 1)[0].split(".")
    if not (2 <= len(digits) <= 3 and all(d.isdigit() for d in digits)):
        t.problem(f"python_implementation version must be X.Y or X.Y.Z, not {version!r}")
        return None
    return text


def _dependency_fields(t: LayerTable) -> dict[str, Any]:
    runtime = t.string("runtime")
    frameworks = t.string_list("frameworks")
    mistyped = ("runtime" in t.table and runtime is None) or (
        "frameworks" in t.table and frameworks is None
    )
    if runtime is not None and frameworks:
        t.problem(
            f"must specify a runtime or framework dependencies, not both "
            f"(runtime: {runtime!r}; frameworks: {list(frameworks)})"
        )
    elif runtime is None and not frameworks and not mistyped:
        t.problem("must specify a runtime or at least one framework dependency")
    elif frameworks and len(set(frameworks)) != len(frameworks):
        t.problem(f"lists a framework more than once: {list(frameworks)}")
    return {"runtime": runtime, "frameworks": frameworks or ()}


def _check_application_modules(apps: tuple[LayerSpec, ...], problems: Problems) -> None:
    """Launch and support modules: distinct module names, and the files must exist."""
    for app in apps:
        assert app.launch_module is not None  # required key, checked before
        stems = [p.stem for p in app.support_modules]
        duplicates = sorted({s for s in stems if stems.count(s) > 1})
        if duplicates:
            problems.add(app.where, f"conflicting support module names: {duplicates}")
        if app.launch_module.stem in stems:
            problems.add(
                app.where,
                f"launch module {app.launch_module.stem!r} conflicts with a support module",
            )
        if not app.launch_module.exists():
            problems.add(app.where, f"launch module {str(app.launch_module)!r} does not exist")
        missing = [str(p) for p in app.support_modules if not p.exists()]
        if missing:
            problems.add(app.where, f"support modules do not exist: {missing}")


def _load_uv_config(tool: Mapping[str, Any], path: Path, problems: Problems) -> UvConfig:
    if "uv" in tool:
        table, origin = tool["uv"], "[tool.uv]"
    else:
        side_file = path.parent / UV_CONFIG_FILENAME
        if not side_file.exists():
            return UvConfig()
        origin = str(side_file)
        try:
            table = tomllib.loads(side_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.add(origin, f"cannot read uv settings: {exc}")
            return UvConfig()
    if not isinstance(table, dict):
        problems.add(origin, "must be a table")
        return UvConfig()
    return parse_uv_config(table, origin, problems.items)
