"""The pure part of tests/tools/compare_outputs.py: normalising outputs and comparing two runs."""

from __future__ import annotations

from tools.compare_outputs import Difference, compare, normalise, report


def test_normalise_replaces_paths_longest_first_and_blanks_timings() -> None:
    replacements = {"/tmp/x": "<scratch>", "/tmp/x/wt": "<worktree>"}
    data = b"built /tmp/x/demo in 2.5 s from /tmp/x/wt/venvstacks (0.31s, 120 ms)"
    assert normalise(data, replacements) == (
        b"built <scratch>/demo in <time> from <worktree>/venvstacks (<time>, <time>)"
    )


def test_normalise_keeps_undecodable_bytes() -> None:
    assert normalise(b"\xff\x00/tmp/x", {"/tmp/x": "<s>"}) == b"\xff\x00<s>"


def test_identical_runs_have_no_differences() -> None:
    run = {"cmd:demo:001 show:stdout": b"tree\n", "file:demo:requirements/a.toml": b"x"}
    assert compare(run, dict(run)) == []
    assert report([], 2) == "identical: 2 outputs and files compared\n"


def test_differences_name_the_key_and_show_a_diff_or_hashes() -> None:
    old = {
        "cmd:demo:001 show:stdout": b"a\nb\n",
        "file:demo:_artifacts/x.tar.xz": b"\xfd7zXZ\x00old",
        "file:demo:gone.json": b"{}",
    }
    new = {
        "cmd:demo:001 show:stdout": b"a\nc\n",
        "file:demo:_artifacts/x.tar.xz": b"\xfd7zXZ\x00new",
        "file:demo:new.json": b"{}",
    }
    found = {d.key: d.detail for d in compare(old, new)}
    assert "-b" in found["cmd:demo:001 show:stdout"] and "+c" in found["cmd:demo:001 show:stdout"]
    assert found["file:demo:_artifacts/x.tar.xz"].startswith("sha256 ")
    assert found["file:demo:gone.json"] == "only in the old run"
    assert found["file:demo:new.json"] == "only in the new run"
    text = report([Difference("k", "d")], 5)
    assert text.splitlines() == ["1 of 5 outputs and files differ:", "--- k: d"]
