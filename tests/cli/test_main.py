"""The installed `venvstacks` command, end to end: help, exit codes, errors, `show` and `graph`.

Every test runs the real entry point in a subprocess (the `venvstacks` script beside the running
Python, else `python -m venvstacks`) and looks only at exit codes, stdout, stderr and written files.
Nothing is locked or built, so every layer shows as unlocked ('*').
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

import pytest
from tools.graph_checks import dot_svg_texts, dot_unquote, mermaid_parse, parse_dot

SPECS = Path(__file__).parents[1] / "data" / "specs"
CLI_BATCH = Path(__file__).parents[1] / "tools" / "cli_batch.py"
ERROR_SPECS = sorted(p.name for p in SPECS.glob("error_*"))
_SCRIPT = Path(sys.executable).with_name("venvstacks" + (".exe" if os.name == "nt" else ""))
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "venvstacks"]

LAYERS = ["cpython-3.11", "framework-a", "framework-b", "framework-c", "framework-d", "app-x"]
# The diamond's edges, lower layer -> upper layer (direct dependencies only).
EDGES = [
    ("cpython-3.11", "framework-a"),
    ("framework-a", "framework-b"),
    ("framework-a", "framework-c"),
    ("framework-b", "framework-d"),
    ("framework-c", "framework-d"),
    ("framework-d", "app-x"),
    ("framework-b", "app-x"),
]
SYS_PATH = {
    "cpython-3.11": [],
    "framework-a": ["cpython-3.11"],
    "framework-b": ["framework-a", "cpython-3.11"],
    "framework-c": ["framework-a", "cpython-3.11"],
    "framework-d": ["framework-b", "framework-c", "framework-a", "cpython-3.11"],
    "app-x": ["framework-d", "framework-b", "framework-c", "framework-a", "cpython-3.11"],
}


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "100", "PYTHONIOENCODING": "utf-8", **(env or {})},
    )


def run_many(*argvs: Sequence[str | Path]) -> list[subprocess.CompletedProcess[str]]:
    """`run` for several argument lists at once (each start-up costs a fifth of a second)."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        return list(pool.map(lambda argv: run(*argv), argvs))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, nothing on stdout, and exactly one line on stderr: `error: ...`."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def diamond(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """valid_diamond.toml copied to a fresh folder (so no lock or build dir can be found)."""
    folder = tmp_path_factory.mktemp("stack")
    shutil.copy(SPECS / "app.py", folder / "app.py")
    return Path(shutil.copy(SPECS / "valid_diamond.toml", folder / "venvstacks.toml")).absolute()


# --- help, version, usage errors ---------------------------------------------------------------


def _subcommands(help_text: str) -> list[str]:
    section = help_text.partition("\nCommands:\n")[2]
    return re.findall(r"^  (\S+)", section, flags=re.MULTILINE)


def test_help_for_every_command() -> None:
    """`--help` on the top level, every command and every subcommand: exit 0, usage and a blurb."""
    seen = []
    level: list[list[str]] = [[]]
    while level:
        results = run_many(*([*path, "--help"] for path in level))
        following: list[list[str]] = []
        for path, result in zip(level, results, strict=True):
            assert result.returncode == 0, (path, result.stderr)
            assert result.stderr == ""
            usage = " ".join(["Usage: venvstacks", *path])
            assert result.stdout.startswith(usage + " [OPTIONS]"), result.stdout
            blurb = result.stdout.split("\n\n")[1].strip()
            assert len(blurb) > 20, (path, result.stdout)  # a sentence saying what it does
            assert "-h, --help" in result.stdout
            seen.append(" ".join(path))
            following.extend([*path, name] for name in _subcommands(result.stdout))
        level = following
    assert {"", "show", "graph"} <= set(seen)
    if "runtime" in seen:
        assert any(s.startswith("runtime ") for s in seen)


def test_short_help_option() -> None:
    short, long = run_many(["-h"], ["--help"])
    assert short.returncode == 0
    assert short.stdout == long.stdout


def test_show_and_graph_help_explain_their_options() -> None:
    show, graph = (r.stdout for r in run_many(["show", "--help"], ["graph", "--help"]))
    for text in ("SPEC_PATH", "--json", "--include", "--allow-missing", "--build-dir", "'*'"):
        assert text in show
    for text in ("SPEC_PATH", "--format", "text|dot|mermaid|json|svg", "--output", "Graphviz"):
        assert text in graph


def test_version() -> None:
    for result in run_many(["--version"], ["-V"]):
        assert result.returncode == 0
        assert result.stdout == f"venvstacks: {version('venvstacks')}\n"


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "venvstacks", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == f"venvstacks: {version('venvstacks')}\n"


def test_no_arguments_prints_help_and_exits_2() -> None:
    """As 0.8.0: the help on stdout, exit status 2."""
    result = run()
    assert result.returncode == 2
    assert result.stderr == ""
    assert result.stdout.startswith("Usage: venvstacks [OPTIONS] COMMAND")
    assert "Commands:" in result.stdout and "show" in result.stdout


def test_command_summaries_are_whole_sentences() -> None:
    for columns in ("60", "100"):
        result = run("--help", env={"COLUMNS": columns})
        section = result.stdout.partition("\nCommands:\n")[2]
        entries = re.split(r"\n  (?=\S)", "\n" + section.rstrip())[1:]
        assert len(entries) >= 10, section
        for entry in entries:
            summary = " ".join(entry.split()[1:])
            assert summary.endswith("."), (columns, summary)
            assert not summary.endswith("..."), (columns, summary)


@pytest.mark.parametrize("command", ["show", "graph", "status", "lock"])
def test_missing_spec_path_without_a_spec_here_is_one_line(command: str, tmp_path: Path) -> None:
    result = run(command, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "venvstacks.toml" in lines[0] and str(tmp_path) in lines[0]


@pytest.mark.parametrize("name", ["venvstacks.toml", "venvstacks.yaml", "venvstacks.yml"])
def test_spec_path_defaults_to_the_spec_in_the_current_folder(name: str, tmp_path: Path) -> None:
    text = (SPECS / "valid_diamond.toml").read_text()
    if name == "venvstacks.toml":
        (tmp_path / name).write_text(text)
    else:
        import tomllib

        import yaml

        (tmp_path / name).write_text(yaml.safe_dump(tomllib.loads(text)))
    shutil.copy(SPECS / "app.py", tmp_path / "app.py")
    shown = run("show", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spec_name"] == str(tmp_path.resolve() / name)
    assert run("status", cwd=tmp_path).returncode == 0
    assert run("graph", "--format", "json", cwd=tmp_path).returncode == 0


def test_two_specs_in_the_current_folder_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.toml").write_text("")
    (tmp_path / "venvstacks.yaml").write_text("")
    result = run("show", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "venvstacks.toml and venvstacks.yaml" in result.stderr


def test_global_options_after_the_command(diamond: Path) -> None:
    quiet = run("show", "--include", "nope*", "--allow-missing", diamond, "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run("show", SPECS / "error_cycle.toml", "-vv")
    assert loud.returncode == 1 and "Traceback" in loud.stderr
    also = run("show", "-v", SPECS / "error_cycle.toml", "--verbose")
    assert also.returncode == 1 and "Traceback" in also.stderr
    assert run("status", diamond, "--version").stdout == f"venvstacks: {version('venvstacks')}\n"
    assert run("runtime", "list", "-q").returncode in (0, 1)


def test_global_options_after_run_arguments_belong_to_the_app(tmp_path: Path) -> None:
    """`venvstacks run DIR APP -v`: the -v is the application's, not venvstacks'."""
    result = run("run", tmp_path, "app", "-v")
    assert result.returncode == 1
    assert "nothing has been deployed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-command"], "No such command"),
        (["show", "--no-such-option", "x.toml"], "No such option"),
        (["graph", "--format", "png", "x.toml"], "Invalid value for '--format'"),
        (["show", "a.toml", "b.toml"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- stack errors ------------------------------------------------------------------------------


def test_every_bad_spec_is_one_error_line() -> None:
    """Each error_* spec: exit 1, one `error:` line naming the spec, no traceback, no output.

    They all go through `main()` in one process (tools/cli_batch.py) to keep this fast; the
    tests below run a few of them through the real script as well.
    """
    assert ERROR_SPECS
    argvs = [["show", str(SPECS / name)] for name in ERROR_SPECS]
    batch = subprocess.run(
        [sys.executable, str(CLI_BATCH)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        timeout=120,
    )
    wrong = []
    for name, result in zip(ERROR_SPECS, json.loads(batch.stdout), strict=True):
        lines = result["stderr"].splitlines()
        ok = (
            result["code"] == 1
            and result["stdout"] == ""
            and len(lines) == 1
            and lines[0].startswith(f"error: {SPECS / name}")
        )
        if not ok:
            wrong.append(f"{name}: exit {result['code']}\n{result['stderr']}{result['stdout']}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "name", ["error_invalid_toml.toml", "error_yaml_syntax.yaml", "error_several_problems.toml"]
)
def test_bad_spec_through_the_script(name: str) -> None:
    assert_one_line_error(run("show", SPECS / name), str(SPECS / name))


@pytest.mark.parametrize("fmt", ["text", "svg"])
def test_graph_of_a_bad_spec_is_one_error_line(fmt: str) -> None:
    spec = SPECS / "error_cycle.toml"
    assert_one_line_error(run("graph", "--format", fmt, spec), "cycle")


def test_missing_spec_file_is_one_error_line(tmp_path: Path) -> None:
    assert_one_line_error(run("show", tmp_path / "nowhere.toml"), "nowhere.toml")


def test_folder_as_spec_is_refused_without_traceback(tmp_path: Path) -> None:
    result = run("show", tmp_path)
    assert result.returncode in (1, 2)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "director" in result.stderr or "folder" in result.stderr


def test_very_verbose_shows_the_traceback() -> None:
    spec = SPECS / "error_cycle.toml"
    verbosities = [["-vv"], ["-v", "-v"], ["--verbose", "--verbose"], ["-vvv"]]
    results = run_many(*([*v, "show", str(spec)] for v in verbosities))
    for verbose, result in zip(verbosities, results, strict=True):
        assert result.returncode == 1, verbose
        assert "Traceback (most recent call last)" in result.stderr, verbose
        assert result.stderr.splitlines()[-1].startswith("error: "), verbose


def test_verbose_once_shows_no_traceback() -> None:
    result = run("-v", "show", SPECS / "error_cycle.toml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")


# --- show --------------------------------------------------------------------------------------


def test_show_tree(diamond: Path) -> None:
    result = run("show", diamond)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (
        f"{diamond}\n"
        "├── Runtimes\n"
        "│   └── *cpython-3.11\n"
        "├── Frameworks\n"
        "│   ├── *framework-a\n"
        "│   │   └── *cpython-3.11\n"
        "│   ├── *framework-b\n"
        "│   │   ├── *framework-a\n"
        "│   │   └── *cpython-3.11\n"
        "│   ├── *framework-c\n"
        "│   │   ├── *framework-a\n"
        "│   │   └── *cpython-3.11\n"
        "│   └── *framework-d\n"
        "│       ├── *framework-b\n"
        "│       ├── *framework-c\n"
        "│       ├── *framework-a\n"
        "│       └── *cpython-3.11\n"
        "└── Applications\n"
        "    └── *app-x\n"
        "        ├── *framework-d\n"
        "        ├── *framework-b\n"
        "        ├── *framework-c\n"
        "        ├── *framework-a\n"
        "        └── *cpython-3.11\n"
    )


def test_show_from_another_folder_with_a_relative_path(diamond: Path) -> None:
    result = run("show", Path(diamond.parent.name) / diamond.name, cwd=diamond.parent.parent)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.splitlines()[0]).samefile(diamond)


def test_show_json(diamond: Path) -> None:
    result = run("show", "--json", diamond)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert result.stdout == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert set(data) == {"spec_name", "runtimes", "frameworks", "applications"}
    assert Path(data["spec_name"]) == diamond
    layers = {"runtimes": LAYERS[:1], "frameworks": LAYERS[1:5], "applications": LAYERS[5:]}
    for category, names in layers.items():
        assert [layer["name"] for layer in data[category]] == names
        for layer in data[category]:
            expected_keys = {"name", "install_target", "has_valid_lock", "selected_operations"}
            if category != "runtimes":
                expected_keys.add("dependencies")
            assert set(layer) == expected_keys
            assert layer["install_target"] == layer["name"]
            assert layer["has_valid_lock"] is False
            assert layer["selected_operations"] is None
            deps = layer.get("dependencies", [])
            assert [d["name"] for d in deps] == SYS_PATH[layer["name"]]
            for dep in deps:
                assert set(dep) == {
                    "name",
                    "install_target",
                    "has_valid_lock",
                    "selected_operations",
                }


def test_show_json_of_a_runtime_only_stack() -> None:
    spec = SPECS / "valid_runtime_only.toml"
    result = run("show", "--json", spec)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "spec_name": str(spec),
        "runtimes": [
            {
                "name": "layerF@1",
                "install_target": "layerF@1",
                "has_valid_lock": False,
                "selected_operations": None,
            },
        ],
        "frameworks": [],
        "applications": [],
    }


def _shown_layers(tree: str) -> list[str]:
    """The layers at the top of each category of a `show` tree (not their dependencies)."""
    return re.findall(r"^(?:│   |    )[├└]── \*?(\S+)", tree, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        # The included layer, its dependencies and the layers built on it; not its siblings.
        (["framework-b"], ["cpython-3.11", "framework-a", "framework-b", "framework-d", "app-x"]),
        (["app-*"], LAYERS),
        (["cpython-3.11"], LAYERS),
        (
            ["framework-d"],
            ["cpython-3.11", "framework-a", "framework-b", "framework-c", "framework-d", "app-x"],
        ),
        (
            ["framework-c", "framework-b"],
            ["cpython-3.11", "framework-a", "framework-b", "framework-c", "framework-d", "app-x"],
        ),
    ],
)
def test_show_include(diamond: Path, patterns: list[str], expected: list[str]) -> None:
    args = [a for p in patterns for a in ("--include", p)]
    result = run("show", "--json", *args, diamond)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert [
        l["name"] for k in ("runtimes", "frameworks", "applications") for l in data[k]
    ] == expected


def test_show_include_keeps_dependencies_in_the_tree(diamond: Path) -> None:
    result = run("show", "--include", "framework-b", diamond)
    assert result.returncode == 0, result.stderr
    assert _shown_layers(result.stdout) == [
        "cpython-3.11",
        "framework-a",
        "framework-b",
        "framework-d",
        "app-x",
    ]
    assert result.stdout == (
        f"{diamond}\n"
        "├── Runtimes\n"
        "│   └── *cpython-3.11\n"
        "├── Frameworks\n"
        "│   ├── *framework-a\n"
        "│   │   └── *cpython-3.11\n"
        "│   ├── *framework-b\n"
        "│   │   ├── *framework-a\n"
        "│   │   └── *cpython-3.11\n"
        "│   └── *framework-d\n"
        "│       ├── *framework-b\n"
        "│       ├── *framework-c\n"
        "│       ├── *framework-a\n"
        "│       └── *cpython-3.11\n"
        "└── Applications\n"
        "    └── *app-x\n"
        "        ├── *framework-d\n"
        "        ├── *framework-b\n"
        "        ├── *framework-c\n"
        "        ├── *framework-a\n"
        "        └── *cpython-3.11\n"
    )


def test_show_include_unmatched_is_an_error(diamond: Path) -> None:
    line = assert_one_line_error(
        run("show", "--include", "app-x", "--include", "nope*", diamond), "nope*", "--allow-missing"
    )
    assert "app-x" not in line


def test_show_include_unmatched_with_allow_missing_warns(diamond: Path) -> None:
    result = run("show", "--include", "app-x", "--include", "nope*", "--allow-missing", diamond)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("warning: ")
    assert "nope*" in result.stderr
    assert _shown_layers(result.stdout) == [
        "cpython-3.11",
        "framework-a",
        "framework-b",
        "framework-c",
        "framework-d",
        "app-x",
    ]


def test_show_include_nothing_matched_with_allow_missing(diamond: Path) -> None:
    result = run("show", "--include", "nope*", "--allow-missing", diamond)
    assert result.returncode == 0
    assert result.stdout == f"{diamond}\n"
    assert "nope*" in result.stderr


def test_quiet_hides_the_warning(diamond: Path) -> None:
    result = run("-q", "show", "--include", "nope*", "--allow-missing", diamond)
    assert result.returncode == 0
    assert result.stderr == ""


# --- graph -------------------------------------------------------------------------------------

TEXT_FORMATS = ("text", "dot", "mermaid", "json")


@pytest.fixture(scope="module")
def graph_output(diamond: Path) -> dict[str, str]:
    """`venvstacks graph --format F` of the diamond, for every text format (run once)."""
    results = run_many(*(["graph", "--format", fmt, str(diamond)] for fmt in TEXT_FORMATS))
    for fmt, result in zip(TEXT_FORMATS, results, strict=True):
        assert result.returncode == 0, (fmt, result.stderr)
        assert result.stderr == "", fmt
    return {fmt: r.stdout for fmt, r in zip(TEXT_FORMATS, results, strict=True)}


def test_graph_text(diamond: Path, graph_output: dict[str, str]) -> None:
    result = run("graph", diamond)
    assert result.returncode == 0, result.stderr
    assert result.stdout == graph_output["text"]
    assert result.stdout == (
        "venvstacks.toml\n"
        "Applications:\n"
        "  app-x [stale]\n"
        "    <- framework-d\n"
        "    <- framework-b\n"
        "Frameworks:\n"
        "  framework-a [stale]\n"
        "    <- cpython-3.11\n"
        "  framework-b [stale]\n"
        "    <- framework-a\n"
        "  framework-c [stale]\n"
        "    <- framework-a\n"
        "  framework-d [stale]\n"
        "    <- framework-b\n"
        "    <- framework-c\n"
        "Runtimes:\n"
        "  cpython-3.11 [stale]\n"
        "(an arrow goes from a layer to the layers built directly on it)\n"
        "legend: [up-to-date] lock is valid; [stale] needs locking\n"
    )


def test_graph_dot(graph_output: dict[str, str]) -> None:
    text = graph_output["dot"]
    assert text.startswith("digraph ")
    assert text.count(" -> ") == len(EDGES)
    dot = parse_dot(text)
    assert dot.get_type() == "digraph"
    clusters = {dot_unquote(c.get("label")): c for c in dot.get_subgraphs()}
    assert list(clusters) == ["Applications", "Frameworks", "Runtimes"]
    members = {k: [dot_unquote(n.get_name()) for n in c.get_nodes()] for k, c in clusters.items()}
    assert members == {
        "Applications": ["app-x"],
        "Frameworks": ["framework-a", "framework-b", "framework-c", "framework-d"],
        "Runtimes": ["cpython-3.11"],
    }
    edges = [
        (dot_unquote(e.get_source()), dot_unquote(e.get_destination())) for e in dot.get_edges()
    ]
    assert edges == EDGES


def test_graph_dot_is_drawn_by_graphviz(graph_output: dict[str, str]) -> None:
    texts = dot_svg_texts(graph_output["dot"])
    title = ["venvstacks.toml", "an arrow goes from a layer to the layers built directly on it"]
    legend = ["colours", "up-to-date", "lock is valid", "stale", "needs locking"]
    groups = ["Applications", "Frameworks", "Runtimes"]
    assert sorted(texts) == sorted([*LAYERS, *groups, *title, *legend])


def test_graph_mermaid(graph_output: dict[str, str]) -> None:
    text = graph_output["mermaid"]
    # Structural checks that need no tools.
    assert text.splitlines()[0] == "flowchart BT"
    assert text.count(" --> ") == len(EDGES)
    # one subgraph per kind, and the colour legend
    assert text.count("subgraph ") == text.count("\n  end\n") + text.endswith("\n  end") == 4
    for layer in LAYERS:
        assert f'["{layer}"]' in text
    # Mermaid's own parser.
    (parsed,) = mermaid_parse(text)
    assert parsed["ok"], parsed.get("error")
    assert parsed["direction"] == "BT"
    name = {v["id"]: v["text"] for v in parsed["vertices"]}
    legend = ["up-to-date: lock is valid", "stale: needs locking"]
    assert sorted(name.values()) == sorted([*LAYERS, *legend])
    assert [(name[e["start"]], name[e["end"]]) for e in parsed["edges"]] == EDGES
    groups = {s["title"]: sorted(name[n] for n in s["nodes"]) for s in parsed["subgraphs"]}
    assert groups == {
        "colours": sorted(legend),
        "Applications": ["app-x"],
        "Frameworks": ["framework-a", "framework-b", "framework-c", "framework-d"],
        "Runtimes": ["cpython-3.11"],
    }


def test_graph_json(graph_output: dict[str, str]) -> None:
    data = json.loads(graph_output["json"])
    assert data["title"] == "venvstacks.toml"
    assert [n["id"] for n in data["nodes"]] == LAYERS
    kinds = {n["id"]: n["kind"] for n in data["nodes"]}
    assert kinds == {
        "cpython-3.11": "runtime",
        "framework-a": "framework",
        "framework-b": "framework",
        "framework-c": "framework",
        "framework-d": "framework",
        "app-x": "application",
    }
    assert {n["id"]: n["sys_path_order"] for n in data["nodes"]} == SYS_PATH
    assert all(n["state"] == "stale" for n in data["nodes"])
    edges = [(e["from"], e["to"]) for e in data["edges"]]
    assert edges == EDGES
    for lower, upper in edges:  # every edge goes from a lower layer up to the one using it
        assert lower in SYS_PATH[upper]


def test_graph_include(diamond: Path) -> None:
    result, unmatched = run_many(
        ["graph", "--format", "json", "--include", "framework-c", diamond],
        ["graph", "--include", "nope", diamond],
    )
    data = json.loads(result.stdout)
    assert [n["id"] for n in data["nodes"]] == [
        "cpython-3.11",
        "framework-a",
        "framework-c",
        "framework-d",
        "app-x",
    ]
    assert [(e["from"], e["to"]) for e in data["edges"]] == [
        ("cpython-3.11", "framework-a"),
        ("framework-a", "framework-c"),
        ("framework-c", "framework-d"),
        ("framework-d", "app-x"),
    ]
    assert_one_line_error(unmatched, "nope")


def _needs_dot() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's 'dot' is not on PATH (apt-get install graphviz)")


def test_graph_svg(diamond: Path) -> None:
    _needs_dot()
    result = run("graph", "--format", "svg", diamond)
    assert result.returncode == 0, result.stderr
    root = ElementTree.fromstring(result.stdout)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert set(LAYERS) <= texts


def test_graph_svg_without_graphviz(diamond: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = run("graph", "--format", "svg", diamond, env={"PATH": str(empty)})
    assert_one_line_error(result, "graphviz")


@pytest.mark.skipif(os.name == "nt", reason="uses a shell script as a fake 'dot'")
def test_graph_svg_when_dot_fails(diamond: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "dot").write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 1\n")
    (fake / "dot").chmod(0o755)
    result = run("graph", "--format", "svg", diamond, env={"PATH": str(fake)})
    assert_one_line_error(result, "dot failed", "syntax error")


def test_graph_output_file(diamond: Path, tmp_path: Path, graph_output: dict[str, str]) -> None:
    formats = [*TEXT_FORMATS, *(["svg"] if shutil.which("dot") else [])]
    outs = {fmt: tmp_path / f"graph.{fmt}" for fmt in formats}
    outs["text"].write_text("an existing file is replaced\n")
    results = run_many(
        *(["graph", "--format", fmt, "-o", str(out), str(diamond)] for fmt, out in outs.items()),
        ["graph", "--output", tmp_path / "long.txt", diamond],
    )
    for fmt, result in zip([*formats, "--output"], results, strict=True):
        assert result.returncode == 0, (fmt, result.stderr)
        assert result.stdout == result.stderr == "", fmt
    for fmt in TEXT_FORMATS:
        assert outs[fmt].read_text(encoding="utf-8") == graph_output[fmt], fmt
    if "svg" in outs:
        assert ElementTree.fromstring(outs["svg"].read_bytes()).tag.endswith("}svg")
    assert (tmp_path / "long.txt").read_text(encoding="utf-8") == graph_output["text"]


def test_graph_output_into_a_missing_folder(diamond: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "graph.dot"
    assert_one_line_error(run("graph", "-o", out, diamond), "cannot write", "graph.dot")
    assert not out.exists()


def test_graph_tasks_renders_cleanly_in_every_format(diamond: Path) -> None:
    """The task graph (ids like 'lock:app-x') goes through the same renderers: DOT and Mermaid
    read back by their parsers must give the nodes and edges of the JSON form."""
    results = run_many(
        *(["graph", "--tasks", "--format", fmt, str(diamond)] for fmt in ("json", "dot", "mermaid"))
    )
    for result in results:
        assert result.returncode == 0, result.stderr
    as_json, as_dot, as_mermaid = (r.stdout for r in results)
    data = json.loads(as_json)
    labels = {n["id"]: n["label"] for n in data["nodes"]}
    edges = [(e["from"], e["to"]) for e in data["edges"]]
    assert set(LAYERS) <= {n["group"] for n in data["nodes"]}
    assert edges and all(a in labels and b in labels for a, b in edges)

    dot = parse_dot(as_dot)
    names = [dot_unquote(n.get_name()) for c in dot.get_subgraphs() for n in c.get_nodes()]
    assert sorted(names) == sorted(labels)
    dot_edges = [
        (dot_unquote(e.get_source()), dot_unquote(e.get_destination())) for e in dot.get_edges()
    ]
    assert dot_edges == edges
    note = "an arrow goes from a task to the tasks that need it; arrows implied by others are "
    note += "left out (--all-edges draws them)"
    assert sorted(dot_svg_texts(as_dot)) == sorted(
        [*labels.values(), *{n["group"] for n in data["nodes"]}, data["title"], note]
    )

    (parsed,) = mermaid_parse(as_mermaid)
    assert parsed["ok"], parsed.get("error")
    text = {v["id"]: v["text"] for v in parsed["vertices"]}
    assert sorted(text.values()) == sorted(labels.values())
    by_label = {label: node for node, label in labels.items()}
    assert [
        (by_label[text[e["start"]]], by_label[text[e["end"]]]) for e in parsed["edges"]
    ] == edges


def test_unknown_include_is_one_line_and_with_json_one_document(diamond: Path) -> None:
    plain, as_json, spec_error = run_many(
        ("show", diamond, "--include", "framework-bb"),
        ("show", diamond, "--include", "framework-bb", "--json"),
        ("show", SPECS / "error_cycle.toml", "--json"),
    )
    line = assert_one_line_error(plain)
    assert line == (
        f"error: {diamond}: --include 'framework-bb' matches no layer (did you mean "
        "'framework-b'?); layers: cpython-3.11, a, b, c, d, x (pass --allow-missing to make "
        "this a warning)"
    )
    assert as_json.returncode == 1 and as_json.stderr.strip() == line
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "SelectionError" and f"error: {error['message']}" == line
    assert error["suggestions"] == {"framework-bb": "framework-b"}
    # Every user error under --json is a document, with its type and message.
    error = json.loads(spec_error.stdout)["error"]
    assert spec_error.returncode == 1 and error["type"] == "SpecError"
    assert f"error: {error['message']}" == spec_error.stderr.strip()
