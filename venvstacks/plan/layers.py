"""The layer graph: references, cycles, C3 linearisation, platforms and selection. Pure.

`plan_stack` turns a checked `StackSpec` into a `StackPlan`: every layer with its runtime, its
frameworks in `sys.path` priority order (C3, like Python's MRO), its effective target platforms and
its merged package index choices. Cross-layer problems are all collected and raised as one SpecError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from venvstacks.errors import SelectionError, SpecError
from venvstacks.plan.names import (
    EnvName,
    LayerKind,
    LayerName,
    UnmatchedNames,
    match_layer_names,
)
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.spec.indexes import check_layer_indexes, merge_package_indexes
from venvstacks.spec.stack import LayerSpec, StackSpec

__all__ = [
    "LayerPlan",
    "StackPlan",
    "c3_linearise",
    "plan_stack",
    "require_matches",
    "select_layers",
    "unmatched_layers",
]


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """One layer with its cross-layer facts resolved."""

    spec: LayerSpec
    runtime: EnvName
    frameworks: tuple[EnvName, ...]
    platforms: tuple[TargetPlatform, ...]
    package_indexes: Mapping[str, str] = field(default_factory=dict)
    python_implementation: str

    @property
    def kind(self) -> LayerKind:
        return self.spec.kind

    @property
    def name(self) -> LayerName:
        return self.spec.name

    @property
    def env_name(self) -> EnvName:
        return self.spec.env_name

    @property
    def enabled(self) -> bool:
        """A layer with no target platforms is never locked, built, published or shown."""
        return bool(self.platforms)

    @property
    def dependencies(self) -> tuple[EnvName, ...]:
        """Lower layers in sys.path priority order: frameworks (C3), then the runtime."""
        if self.kind is LayerKind.RUNTIME:
            return ()
        return (*self.frameworks, self.runtime)

    @property
    def direct_dependencies(self) -> tuple[EnvName, ...]:
        if self.kind is LayerKind.RUNTIME:
            return ()
        if self.spec.frameworks:
            return tuple(EnvName(f"framework-{f}") for f in self.spec.frameworks)
        return (self.runtime,)

    @property
    def py_version(self) -> str:
        """The runtime's version as written after '@' (X.Y or X.Y.Z)."""
        return self.python_implementation.partition("@")[2].split("-", 1)[0]

    @property
    def py_major_minor(self) -> str:
        return ".".join(self.py_version.split(".")[:2])

    def targets(self, platform: TargetPlatform) -> bool:
        return platform in self.platforms


@dataclass(frozen=True)
class StackPlan:
    """Every layer of a stack, in build order (runtimes, frameworks, applications)."""

    spec: StackSpec
    layers: tuple[LayerPlan, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_env", {layer.env_name: layer for layer in self.layers})

    def __getitem__(self, env: str) -> LayerPlan:
        by_env: dict[str, LayerPlan] = self._by_env  # type: ignore[attr-defined]
        return by_env[env]

    def __contains__(self, env: object) -> bool:
        return env in self._by_env  # type: ignore[attr-defined]

    @property
    def enabled(self) -> tuple[LayerPlan, ...]:
        return tuple(layer for layer in self.layers if layer.enabled)

    def of_kind(self, kind: LayerKind) -> tuple[LayerPlan, ...]:
        return tuple(layer for layer in self.enabled if layer.kind is kind)

    def dependencies(self, env: str) -> tuple[LayerPlan, ...]:
        return tuple(self[d] for d in self[env].dependencies)

    def derived(self, env: str) -> tuple[LayerPlan, ...]:
        """Enabled layers that have `env` among their dependencies."""
        return tuple(layer for layer in self.enabled if env in layer.dependencies)


def c3_linearise(
    head: str, bases: Sequence[str], linearisations: Mapping[str, Sequence[str]]
) -> list[str]:
    """C3 merge of `bases` (each already linearised) for `head`; `head` is not in the result.

    Raises ValueError naming the sequences that could not be merged.
    """
    sequences = [[b, *linearisations[b]] for b in bases] + [list(bases)]
    result: list[str] = []
    while any(sequences):
        sequences = [s for s in sequences if s]
        candidate = next(
            (s[0] for s in sequences if not any(s[0] in other[1:] for other in sequences)), None
        )
        if candidate is None:
            raise ValueError(f"no consistent order for {head} (remaining sequences: {sequences})")
        result.append(candidate)
        sequences = [s[1:] if s[0] == candidate else s for s in sequences]
    return result


def plan_stack(spec: StackSpec) -> StackPlan:
    """Resolve every cross-layer reference of a spec. Raises SpecError naming every problem."""
    problems: list[str] = []
    _check_framework_cycles(spec.frameworks, problems)
    planned: dict[str, LayerPlan] = {}
    for runtime in spec.runtimes:
        planned[runtime.env_name] = _plan_runtime(runtime, spec, problems)
    for layer in spec.frameworks + spec.applications:
        plan = _plan_layered(layer, planned, spec, problems)
        if plan is not None:
            planned[layer.env_name] = plan
    if problems:
        raise SpecError(str(spec.path), list(dict.fromkeys(problems)))
    return StackPlan(spec, tuple(planned.values()))


def _plan_runtime(runtime: LayerSpec, spec: StackSpec, problems: list[str]) -> LayerPlan:
    platforms = _narrow_platforms(runtime, TargetPlatform.default_set(), problems)
    check_layer_indexes(
        runtime.where, runtime.package_indexes, runtime.priority_indexes, spec.uv, problems
    )
    assert runtime.python_implementation is not None  # required key, checked by spec.py
    return LayerPlan(
        spec=runtime,
        runtime=runtime.env_name,
        frameworks=(),
        platforms=platforms,
        package_indexes=dict(runtime.package_indexes),
        python_implementation=runtime.python_implementation,
    )


def _plan_layered(
    layer: LayerSpec, planned: Mapping[str, LayerPlan], spec: StackSpec, problems: list[str]
) -> LayerPlan | None:
    deps = _resolve_references(layer, planned, spec, problems)
    if deps is None:
        return None
    runtime = _consistent_runtime(layer, deps, planned, problems)
    if runtime is None:
        return None
    lin = {env: planned[env].frameworks for env in planned}
    try:
        frameworks = tuple(EnvName(e) for e in c3_linearise(layer.env_name, deps, lin))
    except ValueError as exc:
        problems.append(f"{layer.where}: dependency linearization failed ({exc})")
        return None
    inferred = _inherited_platforms(runtime, [planned[f] for f in frameworks])
    check_layer_indexes(
        layer.where, layer.package_indexes, layer.priority_indexes, spec.uv, problems
    )
    lower = [planned[f].package_indexes for f in frameworks] or [runtime.package_indexes]
    merged = merge_package_indexes(
        layer.where, layer.package_indexes, layer.index_overrides, lower, problems
    )
    return LayerPlan(
        spec=layer,
        runtime=runtime.env_name,
        frameworks=frameworks,
        platforms=_narrow_platforms(layer, inferred, problems),
        package_indexes=merged,
        python_implementation=runtime.python_implementation,
    )


def _resolve_references(
    layer: LayerSpec, planned: Mapping[str, LayerPlan], spec: StackSpec, problems: list[str]
) -> list[str] | None:
    """Env names of the declared dependencies, or None (with problems) when any is unusable."""
    if layer.runtime is not None:
        if layer.runtime not in {r.name for r in spec.runtimes}:
            problems.append(f"{layer.where}: references unknown runtime {layer.runtime!r}")
            return None
        return []
    ok = True
    declared: dict[str, int] = {f.name: n for n, f in enumerate(spec.frameworks)}
    for name in layer.frameworks:
        env = f"framework-{name}"
        if env in planned:
            continue
        ok = False
        if name not in declared:
            hint = _reference_hint(name, declared, spec)
            problems.append(f"{layer.where}: references unknown framework {name!r}{hint}")
        elif (
            layer.kind is LayerKind.FRAMEWORK
            and declared[name] >= declared[layer.name]
            and not _in_cycle(name, layer.name, spec.frameworks)
        ):
            problems.append(
                f"{layer.where}: references framework {name!r} before it is defined "
                f"(forward references are not allowed: define {name!r} first)"
            )
    return [f"framework-{n}" for n in layer.frameworks] if ok else None


def _reference_hint(name: str, declared: Mapping[str, int], spec: StackSpec) -> str:
    """Why a framework reference may be unknown: a build name, or an application."""
    prefix = LayerKind.FRAMEWORK.prefix
    if name.startswith(prefix) and name[len(prefix) :] in declared:
        short = name[len(prefix) :]
        return f" (name frameworks by their spec name: {short!r}, not the build name {name!r})"
    if any(a.name == name for a in spec.applications):
        return " (applications cannot depend on applications)"
    return ""


def _consistent_runtime(
    layer: LayerSpec, deps: list[str], planned: Mapping[str, LayerPlan], problems: list[str]
) -> LayerPlan | None:
    if not deps:
        return planned[str(layer.runtime)]
    runtimes = {planned[d].runtime: d for d in reversed(deps)}
    if len(runtimes) > 1:
        described = ", ".join(f"{d!r} uses {r!r}" for r, d in sorted(runtimes.items()))
        problems.append(f"{layer.where}: references frameworks on different runtimes ({described})")
        return None
    return planned[next(iter(runtimes))]


def _inherited_platforms(
    runtime: LayerPlan, frameworks: Iterable[LayerPlan]
) -> tuple[TargetPlatform, ...]:
    allowed = set(runtime.platforms)
    for framework in frameworks:
        allowed &= set(framework.platforms)
    return tuple(sorted(allowed, key=str))


def _narrow_platforms(
    layer: LayerSpec, inferred: tuple[TargetPlatform, ...], problems: list[str]
) -> tuple[TargetPlatform, ...]:
    result = inferred
    if layer.platforms is not None:
        unsupported = [p.value for p in layer.platforms if p not in inferred]
        if unsupported:
            problems.append(
                f"{layer.where}: specifies target platforms not supported by lower layers "
                f"({unsupported})"
            )
        result = tuple(sorted((p for p in layer.platforms if p in inferred), key=str))
    return result


def _check_framework_cycles(frameworks: Sequence[LayerSpec], problems: list[str]) -> None:
    edges: dict[str, Sequence[str]] = {f.name: f.frameworks for f in frameworks}
    for cycle in _find_cycles(edges):
        path = " -> ".join(f"framework {n!r}" for n in cycle)
        problems.append(f"framework {cycle[0]!r}: dependency cycle: {path}")


def _find_cycles(edges: Mapping[str, Sequence[str]]) -> Iterator[list[str]]:
    """Each elementary cycle once, reported from its first node in `edges` order."""
    order = {name: n for n, name in enumerate(edges)}
    reported: set[frozenset[str]] = set()
    for start in edges:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    key = frozenset(path)
                    if key not in reported and min(path, key=order.__getitem__) == start:
                        reported.add(key)
                        yield [*path, start]
                elif nxt in edges and nxt not in path and order[nxt] > order[start]:
                    stack.append((nxt, [*path, nxt]))


def _in_cycle(a: str, b: str, frameworks: Sequence[LayerSpec]) -> bool:
    edges: dict[str, Sequence[str]] = {f.name: f.frameworks for f in frameworks}
    return any(a in c and b in c for c in _find_cycles(edges))


def select_layers(
    plan: StackPlan,
    patterns: Sequence[str],
    *,
    with_dependencies: bool = True,
    with_derived: bool = True,
) -> tuple[tuple[LayerPlan, ...], tuple[str, ...]]:
    """Layers named by `patterns`, plus their dependencies and derived layers.

    A pattern names layers by build name (``framework-web``, ``app-x``, ``cpython-3.11``; an
    `fnmatch` pattern as in 0.8.0) or, when it matches no build name, by spec name (``web``);
    see `match_layer_names`. Returns the selection in build order and the patterns that matched
    nothing.
    """
    enabled = plan.enabled
    names = {layer.env_name: ((layer.env_name,), str(layer.name)) for layer in enabled}
    matched, unmatched = match_layer_names(patterns, names)
    chosen = set(matched)
    for env in matched:
        if with_dependencies:
            chosen.update(plan[env].dependencies)
        if with_derived:
            chosen.update(layer.env_name for layer in plan.derived(env))
    return tuple(layer for layer in enabled if layer.env_name in chosen), unmatched


def require_matches(
    plan: StackPlan,
    unmatched: Sequence[str],
    *,
    allow_missing: bool,
    option: str = "--include",
) -> str | None:
    """A `SelectionError` for patterns that name no layer of `plan`, or (with `allow_missing`)
    the warning text instead. The message names the spec, the patterns, the closest layer
    names and the layers that exist (see `UnmatchedNames`)."""
    if not unmatched:
        return None
    problem = unmatched_layers(plan, unmatched, option)
    if not allow_missing:
        raise SelectionError(
            problem.message("pass --allow-missing to make this a warning"), problem.details()
        )
    return problem.message()


def unmatched_layers(plan: StackPlan, unmatched: Sequence[str], option: str) -> UnmatchedNames:
    """What to tell of `unmatched` patterns: layers that exist by spec name, and a note for a
    pattern that names only layers without target platforms (never selected)."""
    enabled = plan.enabled
    disabled = {
        layer.env_name: ((layer.env_name,), str(layer.name))
        for layer in plan.layers
        if not layer.enabled
    }
    notes = []
    for pattern in unmatched:
        hits, _ = match_layer_names([pattern], disabled)
        if hits:
            listed = ", ".join(plan[h].name for h in hits)
            notes.append(f"{pattern!r} names {listed}, which targets no platform")
    return UnmatchedNames(
        option=option,
        unmatched=tuple(unmatched),
        known=tuple(dict.fromkeys(str(layer.name) for layer in enabled)),
        also_known=tuple(layer.env_name for layer in enabled),
        source=str(plan.spec.path),
        notes=tuple(notes),
    )
