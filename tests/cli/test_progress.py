"""Progress a person can follow: the live table on a real pseudo-terminal, and whole, task-prefixed
`-v` lines from tasks running in parallel."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_pty import Screen, run_on_pty
from fixtures_stacks import VENVSTACKS, StackProject, write_basic_stack

from venvstacks.cli.progress import LEGEND, LineProgress, LiveProgress, TaskLineHandler
from venvstacks.tasks.engine import TaskDict, run_tasks

# ---------------------------------------------------------------------------------------------
# -v lines of parallel tasks: whole, each prefixed by its task
# ---------------------------------------------------------------------------------------------

_LINES = 300


def _chatty(name: str) -> None:
    log = logging.getLogger("venvstacks.test.chatty")
    for n in range(_LINES):
        log.info("%s line %d\nsecond half of %s line %d", name, n, name, n)


def _chatty_task(name: str) -> TaskDict:
    return {"basename": "talk", "name": name, "actions": [(_chatty, [name])], "uptodate": [False]}


def test_parallel_tasks_log_whole_lines_prefixed_by_their_task(tmp_path: Path) -> None:
    out = tmp_path / "stderr.txt"
    with open(out, "w", buffering=1) as stream:  # a real file, line-buffered like a terminal
        handler = TaskLineHandler(stream, prefix_tasks=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("venvstacks")
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            result = run_tasks(
                [_chatty_task("one"), _chatty_task("two")],
                ["talk:one", "talk:two"],
                tmp_path / "tasks.db",
                jobs=2,
                progress=LineProgress(stream),
            )
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate
    assert result.code == 0 and sorted(result.executed) == ["talk:one", "talk:two"]
    lines = out.read_text().splitlines()
    logged = [line for line in lines if line.startswith("[")]
    assert len(logged) == 2 * 2 * _LINES
    pattern = re.compile(r"\[talk:(one|two)\] (second half of )?(one|two) line \d+")
    for line in logged:
        found = pattern.fullmatch(line)
        assert found, f"merged or unprefixed line: {line!r}"
        assert found.group(1) == found.group(3), f"line under the wrong task: {line!r}"
    others = [line for line in lines if not line.startswith("[")]
    assert sorted(o.split()[0] + " " + o.split()[1] for o in others) == [
        "... talk:one",
        "... talk:two",
        "ok talk:one",
        "ok talk:two",
    ]


def test_log_lines_outside_tasks_have_no_prefix() -> None:
    stream = io.StringIO()
    handler = TaskLineHandler(stream, prefix_tasks=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.LogRecord("venvstacks", logging.WARNING, "", 0, "a\nb", None, None))
    assert stream.getvalue() == "a\nb\n"


def test_a_warning_during_the_table_is_printed_verbatim_above_it() -> None:
    from rich.console import Console

    screen = io.StringIO()
    display = LiveProgress(["lock:a"], console=Console(file=screen, force_terminal=True))
    handler = TaskLineHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(message)s"))
    text = "warning: [bold]x[/bold] :smile: y"
    with display:
        handler.emit(logging.LogRecord("venvstacks", logging.WARNING, "", 0, text, None, None))
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert text in shown  # no markup, no emoji codes: the message as logged
    assert shown.index(text) < shown.rindex("lock")  # above the table's last drawing


# ---------------------------------------------------------------------------------------------
# The live table on a real pseudo-terminal, through the installed CLI
# ---------------------------------------------------------------------------------------------


def _env(project: StackProject) -> dict[str, str]:
    env = {**os.environ, **project.env, "TERM": "xterm-256color", "COLUMNS": "160"}
    env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
    env.pop("NO_COLOR", None)
    return env


def _startup_floor() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - start


def _titles(chunks: list[tuple[float, bytes]]) -> list[int]:
    text = b"".join(data for _, data in chunks).decode(errors="replace")
    return [int(s) for s in re.findall(r"venvstacks build: (\d+) s", text)]


@pytest.fixture
def project(stack_project: StackProject, runtime_versions: dict[str, str]) -> StackProject:
    write_basic_stack(stack_project, runtime_versions)
    stack_project.lock()
    return stack_project


def _build_argv(project: StackProject, *extra: str) -> list[str]:
    return [*VENVSTACKS, "build", str(project.spec), *project.source_options(), *extra]


def test_live_table_shows_at_once_ticks_and_explains_its_symbols(project: StackProject) -> None:
    floor = _startup_floor()
    status, chunks = run_on_pty(_build_argv(project, "-j", "1"), project.root, _env(project))
    assert status == 0, b"".join(d for _, d in chunks).decode(errors="replace")
    first_at = next(at for at, data in chunks if b"venvstacks build" in data)
    # Something is on screen within 0.3 s of start on a quiet machine (where `python -c pass`
    # takes under 30 ms); on a loaded one, everything is slower by the same factor.
    limit = 0.3 * max(1.0, floor / 0.03)
    assert first_at < limit, f"first output after {first_at:.2f} s (python -c pass: {floor:.2f} s)"
    # It ticks: a cold build takes seconds and the title counts each of them.
    seconds = _titles(chunks)
    assert len(set(seconds)) >= 2 and seconds == sorted(seconds), seconds
    # A running task shows its own seconds.
    text = b"".join(d for _, d in chunks).decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"▸ \d+s", plain), "no running task showed its elapsed seconds"
    screen = Screen()
    screen.feed(text)
    final = screen.text()
    assert final.count(LEGEND) == 1, final
    assert sum(line.startswith("venvstacks build:") for line in final) == 1, final
    assert any(line.startswith("Built 5 layer(s)") for line in final), final


def test_a_warning_during_the_table_leaves_no_stray_header(project: StackProject) -> None:
    project.build()
    db = project.build_dir / ".venvstacks" / "tasks.db"
    db.write_text("{ damaged")
    status, chunks = run_on_pty(_build_argv(project), project.root, _env(project))
    text = b"".join(d for _, d in chunks).decode(errors="replace")
    assert status == 0, text
    screen = Screen()
    screen.feed(text)
    final = screen.text()
    warnings = [line for line in final if "task database" in line and "damaged" in line]
    assert len(warnings) == 1, final
    headers = [line for line in final if line.startswith("venvstacks build:")]
    assert len(headers) == 1, final
    assert sum(line.startswith("layer") for line in final) == 1, final
    assert final.index(warnings[0]) < final.index(headers[0]), final  # above the table


def test_nothing_is_left_on_screen_when_the_command_fails_before_running_tasks(
    project: StackProject,
) -> None:
    status, chunks = run_on_pty(
        [*VENVSTACKS, "build", str(project.root / "missing.toml")], project.root, _env(project)
    )
    text = b"".join(d for _, d in chunks).decode(errors="replace")
    screen = Screen()
    screen.feed(text)
    final = screen.text()
    assert status != 0
    assert not any("reading the stack" in line for line in final), final
    assert any(line.startswith("error:") or "Error" in line for line in final), final
