"""Run the CLI on the example stacks at two git commits and check that the results are identical.

    python tests/tools/compare_outputs.py [--old c8e12c9] [--new main] [--build demo ...]

For each commit, a temporary git worktree is checked out and the CLI runs from it (``python -m
venvstacks`` with the worktree first on ``PYTHONPATH``, in this interpreter, so both commits use
the same dependencies). Every example in ``specs/`` is copied to the same scratch path for both
commits, and these run there: ``show`` (text, JSON), ``graph`` (every format; layers, tasks, task
states, ``--all-edges`` when known), ``status``, ``dodo`` and ``lock`` (no-op on committed locks).
Examples named with ``--build`` are also built, published, exported, deployed, verified and run.
Runtimes come from a runtime archive folder of this machine's packed CPythons (the test suite's
cache), so nothing is downloaded but the wheels the committed locks name.

Compared: each command's exit status, stdout and stderr, and the files written (lock files and
their metadata, ``dodo.py``, published archives by sha256 and their metadata, exported metadata).
Because both commits run at the same paths, nothing needs normalising but timings; the scratch
folder's parent is replaced too, in case a message names it. Commands that run tasks get ``-j 1``:
tasks running in parallel log in whatever order they finish, which is not a difference. Exit 0 when identical,
1 with a report of every difference. `compare` and `normalise` are pure and tested by
tests/tools/test_compare_outputs.py.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent.name for p in (REPO / "specs").glob("*/venvstacks.toml"))
GRAPH_FORMATS = ("text", "dot", "mermaid", "json")
_TIMING = re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms|seconds)\b")
_TEXT_SUFFIXES = (".toml", ".json", ".py", ".txt", ".cfg", ".md")

Record = dict[str, bytes]
"""What one commit produced: ``cmd:<example>:<n> <args>:<stream>`` and ``file:<example>:<path>``."""


# ---------------------------------------------------------------------------------------------
# Pure: normalising and comparing
# ---------------------------------------------------------------------------------------------


def normalise(data: bytes, replacements: Mapping[str, str]) -> bytes:
    """``data`` with each key (an absolute path) replaced by its value, and timings blanked."""
    text = data.decode("utf-8", errors="surrogateescape")
    for old in sorted(replacements, key=len, reverse=True):
        text = text.replace(old, replacements[old])
    text = _TIMING.sub("<time>", text)
    return text.encode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class Difference:
    key: str
    detail: str


def _is_text(key: str, data: bytes) -> bool:
    return key.startswith("cmd:") or key.endswith(_TEXT_SUFFIXES) or b"\0" not in data[:4096]


def _describe(key: str, old: bytes, new: bytes) -> str:
    if _is_text(key, old) and _is_text(key, new):
        lines = difflib.unified_diff(
            old.decode(errors="replace").splitlines(),
            new.decode(errors="replace").splitlines(),
            "old",
            "new",
            lineterm="",
            n=1,
        )
        return "\n".join(list(lines)[:40])
    return (
        f"sha256 {hashlib.sha256(old).hexdigest()[:16]} != {hashlib.sha256(new).hexdigest()[:16]}"
    )


def compare(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[Difference]:
    """Every key whose bytes differ, or that only one side has, in key order."""
    found = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            found.append(Difference(key, "only in the old run"))
        elif key not in old:
            found.append(Difference(key, "only in the new run"))
        elif old[key] != new[key]:
            found.append(Difference(key, _describe(key, old[key], new[key])))
    return found


def report(differences: Sequence[Difference], compared: int) -> str:
    """A summary line, then each difference."""
    if not differences:
        return f"identical: {compared} outputs and files compared\n"
    lines = [f"{len(differences)} of {compared} outputs and files differ:"]
    for difference in differences:
        lines.append(f"--- {difference.key}: {difference.detail}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Running one commit
# ---------------------------------------------------------------------------------------------


@dataclass
class Runner:
    """Runs `venvstacks` from one worktree, in one scratch folder, recording what it produced."""

    worktree: Path
    scratch: Path
    runtimes: Path
    record: Record = field(default_factory=dict)
    counter: int = 0

    def replacements(self) -> dict[str, str]:
        base = self.scratch.parent  # holds the scratch folder, the worktree and the runtimes
        return {str(base): "<base>"}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VENVSTACKS_")}
        env["PYTHONPATH"] = str(self.worktree)
        env.pop("BROWSER", None)
        env.pop("DISPLAY", None)
        return env

    def run(self, example: str, *args: str, cwd: Path | None = None) -> int:
        self.counter += 1
        command = [sys.executable, "-m", "venvstacks", *args]
        result = subprocess.run(
            command, cwd=cwd or self.scratch / example, env=self.env(), capture_output=True,
            check=False, timeout=3600,
        )  # fmt: skip
        key = f"cmd:{example}:{self.counter:03d} {' '.join(args)}"
        key = normalise(key.encode(), self.replacements()).decode()
        self.record[f"{key}:status"] = str(result.returncode).encode()
        self.record[f"{key}:stdout"] = normalise(result.stdout, self.replacements())
        self.record[f"{key}:stderr"] = normalise(result.stderr, self.replacements())
        return result.returncode

    def collect(self, example: str, folder: Path, *, hash_only: bool = False) -> None:
        """Record every file under ``folder`` (archives and other binaries by sha256)."""
        if not folder.exists():
            return
        for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
            relative = path.relative_to(self.scratch / example)
            key = f"file:{example}:{relative.as_posix()}"
            if path.is_symlink():
                self.record[key] = f"symlink -> {path.readlink()}".encode()
                continue
            data = path.read_bytes()
            if hash_only or not _is_text(key, data):
                self.record[key] = f"sha256 {hashlib.sha256(data).hexdigest()}".encode()
            else:
                self.record[key] = normalise(data, self.replacements())


def run_example(runner: Runner, example: str, build: bool) -> None:
    """Copy ``example`` into the scratch folder and run the commands on it."""
    folder = runner.scratch / example
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REPO / "specs" / example, folder, ignore=shutil.ignore_patterns("_*"))
    spec = "venvstacks.toml"
    sources = ["--runtime-archives", str(runner.runtimes)]
    serial = ["-j", "1"]  # parallel tasks log in whatever order they finish
    runner.run(example, "show", spec)
    runner.run(example, "show", "--json", spec)
    for fmt in GRAPH_FORMATS:
        runner.run(example, "graph", spec, "--format", fmt)
        runner.run(example, "graph", spec, "--tasks", "--format", fmt)
        runner.run(example, "graph", spec, "--tasks", "--status", "--format", fmt)
    runner.run(example, "status", spec)
    runner.run(example, "dodo", spec, "-o", "dodo.py")
    runner.run(example, "lock", spec, *sources, *serial)
    runner.run(example, "status", spec)
    runner.collect(example, folder / "requirements")
    runner.collect(example, folder / "dodo.py")
    if not build:
        return
    runner.run(example, "build", spec, *sources, "--publish", *serial)
    runner.run(example, "status", spec)
    runner.run(example, "build", spec, *sources, *serial)  # a no-op
    runner.run(example, "local-export", spec, "-o", "_export", *serial)
    deployed = folder / "_deployed"
    runner.run(example, "deploy", "_artifacts", str(deployed), *serial)
    runner.run(example, "verify", str(deployed))
    for app in sorted((folder / "_artifacts").glob("__venvstacks__/env_metadata/app-*.json")):
        runner.run(example, "run", str(deployed), app.stem.split("@")[0].removeprefix("app-"))
    runner.collect(example, folder / "_artifacts")
    runner.collect(example, folder / "_export" / "__venvstacks__")


# ---------------------------------------------------------------------------------------------
# The whole comparison
# ---------------------------------------------------------------------------------------------


def _runtime_folder(target: Path) -> Path:
    """A runtime archive folder with this machine's packed CPython 3.11 and 3.12."""
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures_runtime import packed_runtime_archive  # the test suite's cached packs

    target.mkdir(parents=True, exist_ok=True)
    for series in ("3.11", "3.12"):
        archive = packed_runtime_archive(series)
        for source in (archive, archive.with_name(archive.name + ".sha256")):
            shutil.copy2(source, target / source.name)
    return target


def _worktree(commit: str, path: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), commit],
        check=True,
    )
    return path


def _remove_worktree(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False
    )


def run_commit(commit: str, base: Path, runtimes: Path, builds: Sequence[str]) -> Record:
    """Everything ``commit`` produces on the examples (worktree removed afterwards)."""
    worktree = _worktree(commit, base / "worktree")
    scratch = base / "run"  # the same path for both commits
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        runner = Runner(worktree, scratch, runtimes)
        for example in EXAMPLES:
            print(f"  {commit}: {example}", file=sys.stderr, flush=True)
            run_example(runner, example, example in builds)
        return runner.record
    finally:
        _remove_worktree(worktree)
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="c8e12c9", help="the reference commit")
    parser.add_argument("--new", default="main", help="the commit to check")
    parser.add_argument(
        "--build", action="append", default=None, choices=EXAMPLES,
        help="also build, publish, deploy and run this example (repeatable; default: demo)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    options = parser.parse_args(argv)
    builds = options.build if options.build is not None else ["demo"]
    base = Path(tempfile.mkdtemp(prefix="venvstacks-compare-"))
    try:
        runtimes = _runtime_folder(base / "runtimes")
        old = run_commit(options.old, base, runtimes, builds)
        new = run_commit(options.new, base, runtimes, builds)
    finally:
        if not options.keep:
            shutil.rmtree(base, ignore_errors=True)
    differences = compare(old, new)
    print(f"{options.old} -> {options.new}: ", end="")
    print(report(differences, len(set(old) | set(new))), end="")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
