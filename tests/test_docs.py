"""The docs stay true to the code: every command and option documented, examples that load,
quoted spec errors that are real, and relative links between pages that resolve.

Fast: nothing is locked or built; the spec examples are only parsed and planned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import venvstacks.cli.main
from venvstacks.errors import SpecError
from venvstacks.lock import pylock as lockfile
from venvstacks.lock import resolve as locking
from venvstacks.plan.layers import StackPlan, plan_stack
from venvstacks.spec import settings as spec_settings
from venvstacks.spec.fields import KIND_KEYS, LEGACY_KEYS
from venvstacks.spec.stack import load_stack_spec

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
CLI_DOC = DOCS / "cli.md"

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*$", re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


# --- the click command tree -------------------------------------------------------------------


def _root() -> click.Group:
    venvstacks.cli.main._register_commands()
    return venvstacks.cli.main.cli


def _walk(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


def _long_options(command: click.Command, *, hidden: bool = False) -> list[str]:
    """The command's long options; hidden ones (the global options repeated after a command,
    deprecated aliases) only with `hidden`."""
    names: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option) and (hidden or not param.hidden):
            names += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
    return names


COMMANDS = list(_walk(_root()))
COMMAND_IDS = [" ".join(path) for path, _ in COMMANDS]


# --- markdown helpers -------------------------------------------------------------------------


def _without_fences(text: str) -> str:
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, title in _HEADING.findall(_without_fences(path.read_text(encoding="utf-8"))):
        slug = _slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _section(text: str, title: str) -> str:
    """The text under the heading `title` (backticks ignored), up to the next heading as high."""
    bare = _without_fences(text)
    for match in _HEADING.finditer(bare):
        if match[2].replace("`", "") == title:
            level = len(match[1])
            rest = text[text.index(match[0]) + len(match[0]) :]
            for later in _HEADING.finditer(_without_fences(rest)):
                if len(later[1]) <= level:
                    return rest[: rest.index(later[0])]
            return rest
    raise AssertionError(f"no heading {title!r}")


def _documents(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


# --- cli.md -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=COMMAND_IDS)
def test_every_command_option_is_documented_in_its_section(
    path: tuple[str, ...], command: click.Command
) -> None:
    section = _section(CLI_DOC.read_text(encoding="utf-8"), "venvstacks " + " ".join(path))
    missing = [o for o in _long_options(command) if not _documents(section, o)]
    assert not missing, f"docs/cli.md: `venvstacks {' '.join(path)}` lacks {missing}"


def test_global_options_are_documented() -> None:
    section = _section(CLI_DOC.read_text(encoding="utf-8"), "Global options")
    expected = [*_long_options(_root()), "--help"]
    assert [o for o in expected if not _documents(section, o)] == []


def test_cli_doc_names_no_option_that_does_not_exist() -> None:
    known = {"--help", *_long_options(_root())}
    for _, command in COMMANDS:
        known.update(_long_options(command, hidden=True))
    text = CLI_DOC.read_text(encoding="utf-8")
    code = [m[1] for m in _CODE_SPAN.finditer(_without_fences(text))] + _FENCE.findall(text)
    mentioned = {option for span in code for option in _LONG_OPTION.findall(span)}
    assert sorted(mentioned - known) == []


def test_exit_codes_are_documented() -> None:
    section = _section(CLI_DOC.read_text(encoding="utf-8"), "Exit codes")
    for code in ("0", "1", "2"):
        assert re.search(rf"^\| {code} \|", section, re.MULTILINE), code


# --- links ------------------------------------------------------------------------------------


def _relative_links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        for target in _LINK.findall(_without_fences(page.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                yield page, target


@pytest.mark.parametrize(
    ("page", "target"), list(_relative_links()), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_relative_link_resolves(page: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    resolved = (page.parent / file_part).resolve() if file_part else page
    assert resolved.exists(), f"{page.name}: broken link {target}"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{page.name}: no heading for {target}"


def test_index_links_every_page() -> None:
    linked = {
        target.partition("#")[0] for page, target in _relative_links() if page.name == "index.md"
    }
    assert {p.name for p in PAGES} - {"index.md"} <= linked


# --- spec.md ----------------------------------------------------------------------------------


def _marked_blocks(text: str, marker: str) -> Iterator[tuple[str, list[str]]]:
    """(argument of the marker, the fenced blocks right after it) for each `<!-- docs-test -->`."""
    pattern = rf"<!-- docs-test: {marker}(?: (\S+))? -->\n((?:```[a-z]*\n.*?^```\n)+)"
    for match in re.finditer(pattern, text, re.MULTILINE | re.DOTALL):
        blocks = re.findall(r"```[a-z]*\n(.*?)^```\n", match[2], re.MULTILINE | re.DOTALL)
        yield match[1] or "", blocks


SPEC_TEXT = (DOCS / "spec.md").read_text(encoding="utf-8")
SPEC_EXAMPLES = list(_marked_blocks(SPEC_TEXT, "spec-example"))
SPEC_ERRORS = list(_marked_blocks(SPEC_TEXT, "spec-error"))


def _load_example(folder: Path, name: str, text: str) -> StackPlan:
    folder.mkdir()
    spec_path = folder / name
    spec_path.write_text(text, encoding="utf-8")
    modules = re.findall(r"(?:launch_module|support_modules)\W+([\w/.]+)", text)
    for module in modules:
        path = folder / module
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            path.write_text("", encoding="utf-8")
        else:
            path.mkdir()
            (path / "__init__.py").write_text("", encoding="utf-8")
    return plan_stack(load_stack_spec(spec_path))


def test_spec_examples_exist() -> None:
    assert sorted(name for name, _ in SPEC_EXAMPLES) == ["venvstacks.toml", "venvstacks.yaml"]
    assert len(SPEC_ERRORS) >= 5


def test_spec_examples_load_and_agree(tmp_path: Path) -> None:
    plans = {
        name: _load_example(tmp_path / name.replace(".", "_"), name, blocks[0])
        for name, blocks in SPEC_EXAMPLES
    }
    toml, yaml = plans["venvstacks.toml"], plans["venvstacks.yaml"]

    def summary(plan: StackPlan) -> list[object]:
        return [
            (l.env_name, l.runtime, l.frameworks, l.platforms, l.python_implementation)
            for l in plan.layers
        ]

    def settings(plan: StackPlan) -> tuple[object, ...]:
        s, folder = plan.spec.settings, plan.spec.spec_dir
        return (
            [p.relative_to(folder) for p in s.runtime_archives],
            s.runtime_fallback,
            s.archive_format,
            plan.spec.uv.settings,
            [i.table for i in plan.spec.uv.indexes],
        )

    assert summary(toml) == summary(yaml)
    assert settings(toml) == settings(yaml)
    # What the page says about the example.
    app = toml["app-report"]
    assert app.frameworks == ("framework-torch", "framework-scipy", "framework-http")
    assert [str(p) for p in app.platforms] == ["linux_aarch64", "linux_x86_64"]


@pytest.mark.parametrize(
    ("_", "blocks"), SPEC_ERRORS, ids=[str(n) for n in range(len(SPEC_ERRORS))]
)
def test_quoted_spec_error_is_real(tmp_path: Path, _: str, blocks: list[str]) -> None:
    spec_text, expected = blocks
    spec_path = tmp_path / "venvstacks.toml"
    spec_path.write_text(spec_text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        plan_stack(load_stack_spec(spec_path))
    assert "error: " + str(caught.value).replace(str(tmp_path), "/path/to") == expected.strip()


def test_spec_page_names_every_field_and_setting() -> None:
    fields = set().union(*KIND_KEYS.values()) | LEGACY_KEYS
    settings = set(spec_settings._KEYS)
    missing = [k for k in sorted(fields | settings) if f"`{k}`" not in SPEC_TEXT]
    assert missing == []


def test_tasks_page_names_every_lock_metadata_key() -> None:
    text = (DOCS / "tasks.md").read_text(encoding="utf-8")
    keys = [*lockfile.LockMetadata.__dataclass_fields__, locking.EXTRA_INPUTS_KEY]
    assert [k for k in keys if f"`{k}`" not in text] == []
