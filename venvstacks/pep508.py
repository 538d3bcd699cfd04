"""Project names, requirements and versions spelled as `packaging` spells them, without importing it
for the common simple cases. Pure.

A no-op build used to import `packaging` (its parser compiles dozens of regular expressions) and
parse every lock's markers and versions with it: 8% of the instructions of a small stack's no-op
and 6% of a 60-layer one's, counted with valgrind. Most requirements are plain ``name[extras]`` with
numeric version clauses, and most locked versions are plain numeric releases: those are
validated and normalised here by a strict pattern that only accepts what packaging accepts and
gives the same text. Anything else (markers, URLs, pre-releases, local versions, odd spacing
inside a version) goes to packaging itself, imported then. `tests/test_pep508.py` checks every
fast answer against packaging's.
"""

from __future__ import annotations

import re

__all__ = [
    "InvalidRequirementText",
    "canonical_name",
    "normalised_requirement",
    "normalised_version",
    "plain_marker",
]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_CLAUSE = re.compile(r"\s*(==|!=|<=|>=|~=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?\s*")
_SIMPLE = re.compile(
    rf"\s*(?P<name>{_NAME})\s*"
    rf"(?:\[\s*(?P<extras>{_NAME}(?:\s*,\s*{_NAME})*)\s*\])?\s*"
    r"(?P<specs>[^;@\[\]()\s][^;@\[\]()]*)?"
)
_PLAIN_VERSION = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
# Marker variables packaging keeps as written (not its aliases such as `os.name`, not `extra`,
# whose values it normalises), compared with a quoted value holding no quote or backslash.
_MARKER_VARIABLE = (
    "python_version|python_full_version|sys_platform|platform_system|platform_machine|"
    "platform_release|platform_version|os_name|implementation_name|implementation_version|"
    "platform_python_implementation"
)
_MARKER_CLAUSE = re.compile(
    rf"\s*({_MARKER_VARIABLE})\s*(===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)\s*"
    r"(?:'([^'\"\\]*)'|\"([^'\"\\]*)\")\s*"
)
_MARKER_JOIN = re.compile(r"(and|or)\b")


class InvalidRequirementText(ValueError):
    """A requirement string that is not valid PEP 508; the message is packaging's first line."""


def canonical_name(name: str) -> str:
    """PEP 503's normalised project name, exactly as `packaging.utils.canonicalize_name`."""
    value = name.lower().replace("_", "-").replace(".", "-")
    while "--" in value:
        value = value.replace("--", "-")
    return value


def _simple_clause(text: str) -> str | None:
    """`operator + version` of one plain numeric clause, or None if packaging must judge it."""
    match = _CLAUSE.fullmatch(text)
    if match is None:
        return None
    operator, version, wildcard = match.groups()
    if wildcard and operator not in ("==", "!="):
        return None
    if operator == "~=" and "." not in version:
        return None
    return operator + version + (wildcard or "")


def _fast_requirement(text: str) -> str | None:
    """`str(Requirement(text))` for a plain requirement, or None if packaging must judge it."""
    match = _SIMPLE.fullmatch(text)
    if match is None:
        return None
    parts = [match["name"]]
    if match["extras"]:
        extras = sorted({extra.strip() for extra in match["extras"].split(",")})
        parts.append("[" + ",".join(extras) + "]")
    if match["specs"]:
        clauses = [_simple_clause(clause) for clause in match["specs"].split(",")]
        written = [clause for clause in clauses if clause is not None]
        operators = {clause.rstrip("0123456789.*") for clause in written}
        if len(written) < len(clauses) or len(operators) < len(written):
            return None  # packaging judges it; it also merges equal clauses (`==1.0,==1.0.0`)
        parts.append(",".join(sorted(written)))
    return "".join(parts)


def normalised_requirement(text: str) -> str:
    """`str(packaging.requirements.Requirement(text))`; raises InvalidRequirementText."""
    fast = _fast_requirement(text)
    if fast is not None:
        return fast
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(text))
    except InvalidRequirement as exc:
        raise InvalidRequirementText(str(exc).splitlines()[0]) from None


def normalised_version(text: str) -> str | None:
    """`str(packaging.version.Version(text))`, or None when the text is not a valid version."""
    if _PLAIN_VERSION.fullmatch(text):
        return text
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(text))
    except InvalidVersion:
        return None


def plain_marker(text: str) -> str | None:
    """packaging's spelling of a marker (single quotes, as uv writes them) when the marker is a
    plain chain of ``variable op 'value'`` clauses joined by ``and``/``or``; else None."""
    clauses: list[str] = []
    pos = 0
    while True:
        match = _MARKER_CLAUSE.match(text, pos)
        if match is None:
            return None
        variable, operator, single, double = match.groups()
        value = single if single is not None else double
        clauses.append(f"{variable} {' '.join(operator.split())} '{value}'")
        pos = match.end()
        if pos == len(text):
            return " ".join(clauses)
        join = _MARKER_JOIN.match(text, pos)
        if join is None or not text[pos - 1].isspace():
            return None
        clauses.append(join[1])
        pos = join.end()
