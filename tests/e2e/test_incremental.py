"""Incremental builds, table-driven: which tasks an edit re-runs, and which lock files it changes.

Each row of a matrix edits a copy of an already built stack, rebuilds (or relocks) it, and checks
three separate things against DESIGN.md §2:

* the EXACT set of tasks that ran (all others must have been up to date);
* which lock tasks re-resolved with uv (a lock task may run and find its lock still valid, or
  only bump a versioned layer's `lock_version`);
* which files under `requirements/` changed bytes (a relock may run uv and reproduce the same
  lock, which must stop the cascade: layers above are not rebuilt).

The expected sets read DESIGN §2 together with its rule that propagation is by output content: a
lock task re-runs when its inputs changed, an install when the layer's lock bytes changed, a link
when its layer was reinstalled, its modules, its lower-layer set/order, or a deployed name it
refers to (a versioned layer's `@N`) changed. Tasks that run today although DESIGN says they must
not are listed per row in `also_runs` with the defect that causes them: such a row checks
everything else and then xfails, and fails outright once the defect is fixed (so the row gets
updated), like a strict xfail.

The stack is built once per module (per xdist worker) and copied for every row. A built stack
is not relocatable as it is: the doit DB keys file dependencies by absolute path, and `pyvenv.cfg`
and the build-time `sitecustomize.py` (absolute, as in venvstacks 0.8) name the build folder, so
`clone_stack` rewrites the template's root path in the text files that hold it. The `nothing`
row checks that a clone is a faithful copy: it builds as a no-op and its apps run from the copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures_stacks import StackProject, write_basic_stack

from venvstacks.envs.manifest import record_folder

pytestmark = pytest.mark.slow

# The basic stack (tests/fixtures_stacks.py) plus a `util` framework, so that frame2 has two
# frameworks whose order can change, and a second target platform on the runtime, so that a
# layer's platforms can be narrowed (frame2 needs x86_64 only: vs-native has no other wheel).
MATRIX_STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64", "linux_aarch64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[frameworks]]
name = "util"
runtime = "cpython-3.11"
requirements = ["vs-util"]

[[frameworks]]
name = "frame2"
frameworks = ["frame", "util"]
requirements = ["vs-frame2", "vs-native"]
platforms = ["linux_x86_64"]

[[applications]]
name = "a"
frameworks = ["frame2"]
launch_module = "app_a.py"
requirements = ["vs-app-a"]

[[applications]]
name = "b"
runtime = "cpython-3.11"
launch_module = "launch_b"
support_modules = ["helper_b.py"]
requirements = ["vs-app-b"]
versioned = true
"""

RUNTIME = "cpython-3.11"
FRAME = "framework-frame"
UTIL = "framework-util"
FRAME2 = "framework-frame2"
APP_A = "app-a"
APP_B = "app-b"
ENVS = (RUNTIME, FRAME, UTIL, FRAME2, APP_A, APP_B)

# What each kind of lock file is called (see layout.LockPaths).
KINDS = {
    "in": "requirements-{stem}.in",
    "pylock": "pylock.{stem}.toml",
    "meta": "pylock.{stem}.meta.json",
    "summary": "packages-{env}.txt",
}


def tasks(*specs: str) -> frozenset[str]:
    """`tasks("lock install:app-a", "link:frame")`-style shorthand → task names.

    Each argument is `OPS:ENV` where OPS is one or more operations separated by spaces or '+'.
    """
    names = set()
    for spec in specs:
        ops, env = spec.rsplit(":", 1)
        for op in ops.replace("+", " ").split():
            names.add(f"{op}:{env}")
    return frozenset(names)


def files(changes: Mapping[str, str]) -> set[str]:
    """`{"app-a": "pylock meta"}` → the changed paths relative to `requirements/`."""
    from venvstacks.plan.names import EnvName, lock_file_stem

    paths = set()
    for env, kinds in changes.items():
        stem = lock_file_stem(EnvName(env))
        for kind in kinds.split():
            paths.add(f"{env}/{KINDS[kind].format(stem=stem, env=env)}")
    return paths


ALL_LOCK_FILES = "in pylock meta summary"


# ---------------------------------------------------------------------------------------------
# The built template and its clones
# ---------------------------------------------------------------------------------------------


def clone_stack(template: StackProject, root: Path) -> StackProject:
    """A working copy of a built stack folder at `root` (same depth as the template's)."""
    assert len(root.parts) == len(template.root.parts), "lock files hold relative wheel paths"
    shared = tuple(f"{folder}{os.sep}" for folder in _shared_folders(template.root))
    old, new = str(template.root), str(root)
    copied: list[str] = []

    def copy(src: str, dst: str) -> None:
        if src.startswith(shared):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
            copied.append(dst)

    shutil.copytree(template.root, root, symlinks=True, copy_function=copy)
    rewritten = []
    for name in copied:
        path = Path(name)
        if "__pycache__" in path.parts or old.encode() not in path.read_bytes():
            continue
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(old, new), encoding="utf-8")
        rewritten.append(path.relative_to(root))
    assert rewritten, "expected the build dir to name its own location"
    _record_manifests_again(root / "_build")
    return StackProject(root, template.runtime_archives, template.wheelhouse, dict(template.env))


def _record_manifests_again(build: Path) -> None:
    """The clone's files were rewritten for its location: record them as built there.

    (venvstacks checks each environment against the listing recorded when it was built; a clone
    made by rewriting paths would otherwise count, rightly, as a changed environment.)
    """
    for manifest in (build / ".venvstacks" / "manifests").glob("*.json"):
        kind, _, name = manifest.stem.partition(".")
        folder = build / name if kind == "env" else build / ".venvstacks" / "runtimes" / name
        if folder.is_dir():
            record_folder(folder, manifest)


def _shared_folders(root: Path) -> list[Path]:
    """Folders a clone hard-links instead of copying (~100 MB a clone).

    Only folders whose files venvstacks replaces (rename into place) but never writes into: the
    unpacked runtime interpreters, and the runtime environment's standard library. The template
    fixture checks at teardown that no shared file was changed through a clone.
    """
    build = root / "_build"
    runtimes = build / ".venvstacks" / "runtimes"  # its <runtime>.json records are rewritten
    stdlib = build / RUNTIME / "lib" / "python3.11"
    return [
        *(p for p in runtimes.iterdir() if p.is_dir()),
        *(p for p in stdlib.iterdir() if p.name != "site-packages"),
    ]


def _snapshot(folders: list[Path]) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in ([folder] if folder.is_file() else folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


@pytest.fixture(scope="module")
def built_template(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> Iterator[StackProject]:
    root = tmp_path_factory.mktemp("incremental-template") / "stack"
    root.mkdir()
    project = StackProject(root, runtime_archive_dir, wheelhouse)
    write_basic_stack(project, runtime_versions)
    project.write("venvstacks.toml", MATRIX_STACK.format(py311=runtime_versions["3.11"]))
    project.build("-j", "2")
    shared = _snapshot(_shared_folders(root))
    yield project
    assert _snapshot(_shared_folders(root)) == shared, "a clone wrote into the template"


@pytest.fixture
def stack(built_template: StackProject, tmp_path: Path) -> StackProject:
    return clone_stack(built_template, tmp_path / "stack")


# ---------------------------------------------------------------------------------------------
# Observations
# ---------------------------------------------------------------------------------------------


def changed_files(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def task_values(project: StackProject, task: str) -> dict[str, object]:
    """The values a task's action returned when it last ran (doit's JSON dependency DB)."""
    db = json.loads((project.build_dir / ".venvstacks" / "tasks.db").read_text())
    values = db.get(task, {}).get("_values_:", {})
    assert isinstance(values, dict)
    return values


def resolved_locks(project: StackProject, ran: set[str]) -> set[str]:
    """The envs whose lock task ran uv in this run (task values say `resolved`)."""
    return {
        name.split(":", 1)[1]
        for name in ran
        if name.startswith("lock:") and task_values(project, name).get("resolved") is True
    }


def run_verbose(project: StackProject, command: str, *args: str) -> list[str]:
    result = project.run("-v", command, str(project.spec), *project.source_options(), *args)
    return project.ran_tasks(result)


def check_apps_run(project: StackProject) -> None:
    build = str(project.build_dir)
    out_a = project.run_app(APP_A, "app_a")
    modules = [line.split() for line in out_a.splitlines() if line.startswith("vs_")]
    assert len(modules) == 6 and all(m[2].startswith(build) for m in modules), out_a
    out_b = project.run_app(APP_B, "launch_b")
    assert out_b.split()[0] == "app-b" and out_b.split()[2].startswith(build), out_b


def check_lock_times(
    project: StackProject,
    before: Mapping[str, Mapping[str, object]],
    changed: set[str],
    bumps: frozenset[str],
) -> None:
    """`locked_at` moves only with the lock's content; `lock_version` only for `bumps`."""
    for env, old in before.items():
        new = project.lock_meta(env)
        content_changed = any(
            name.startswith(f"{env}/pylock.") and name.endswith(".toml") for name in changed
        )
        if not content_changed and env not in bumps:
            assert new["locked_at"] == old["locked_at"], env
        version = int(str(old["lock_version"]))
        assert new["lock_version"] == (version + 1 if env in bumps else version), env


def check_deviation(
    ran: set[str], expected: frozenset[str], row_also: frozenset[str], bug: str
) -> None:
    """Assert `ran` is exactly `expected` plus the row's known deviations; xfail on those."""
    missing = expected - ran
    assert not missing, f"tasks that should have run did not: {sorted(missing)}"
    extra = ran - expected
    if extra or row_also:
        assert extra == row_also, (
            f"ran {sorted(ran)}\nbeyond DESIGN §2: {sorted(extra)}; "
            f"known deviations of this row: {sorted(row_also)} "
            "(if a known deviation no longer happens, its defect was fixed: update the row)"
        )
        pytest.xfail(f"also runs {sorted(extra)}: {bug}")


# ---------------------------------------------------------------------------------------------
# Defects the rows expose (reported; their fixes are outside this test's files)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Edits
# ---------------------------------------------------------------------------------------------


def replace_in(relative: str, old: str, new: str) -> Callable[[StackProject], None]:
    def edit(project: StackProject) -> None:
        path = project.root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    return edit


def spec_edit(old: str, new: str) -> Callable[[StackProject], None]:
    return replace_in("venvstacks.toml", old, new)


def append_to(relative: str, text: str, *, new: bool = False) -> Callable[[StackProject], None]:
    def edit(project: StackProject) -> None:
        path = project.root / relative
        assert path.exists() != new, path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + text)

    return edit


def no_edit(project: StackProject) -> None:
    pass


def tamper_frame_lock(project: StackProject) -> None:
    """Edit framework-frame's lock by hand: a different wheel hash for vs-frame."""
    path = project.root / "requirements" / FRAME / "pylock.framework-frame.toml"
    text = path.read_text()
    start = text.index('name = "vs-frame"')
    hash_at = text.index('sha256 = "', start) + len('sha256 = "')
    path.write_text(text[:hash_at] + "0" * 64 + text[hash_at + 64 :])


def use_python_312(project: StackProject) -> None:
    from fixtures_runtime import find_host_python

    v311 = find_host_python("3.11").parents[1].name
    v312 = find_host_python("3.12").parents[1].name
    spec_edit(f"cpython@{v311}", f"cpython@{v312}")(project)


# ---------------------------------------------------------------------------------------------
# The build matrix
# ---------------------------------------------------------------------------------------------

BUILD = tasks(*(f"lock+install+link:{env}" for env in ENVS))


@dataclass(frozen=True)
class Row:
    """One edit and what a build after it must do."""

    id: str
    edit: Callable[[StackProject], None]
    runs: frozenset[str]
    resolves: frozenset[str] = frozenset()  # lock tasks that run uv
    changes: Mapping[str, str] = field(default_factory=dict)  # env → changed lock file kinds
    also_runs: frozenset[str] = frozenset()  # run today against DESIGN (see `bug`)
    bug: str = ""
    check: Callable[[StackProject], None] | None = None
    bumps: frozenset[str] = frozenset()  # versioned layers whose lock_version goes up
    restores_lock: bool = False  # the edit is to lock files, which the build must undo


def _app_a_has_vs_app_b(project: StackProject) -> None:
    site = project.build_dir / APP_A / "lib" / "python3.11" / "site-packages"
    assert (site / "vs_app_b").is_dir()


def _app_b_version_bumped(project: StackProject) -> None:
    assert project.lock_meta(APP_B)["lock_version"] == 2
    assert project.run_app(APP_B, "launch_b").split()[-1] == "43"
    stamp = json.loads((project.build_dir / ".venvstacks/stamps/link.app-b.json").read_text())
    assert stamp["install_target"] == "app-b@2"


def _app_b_version_kept(project: StackProject) -> None:
    assert project.lock_meta(APP_B)["lock_version"] == 1


def _app_a_module_updated(project: StackProject) -> None:
    assert project.run_app(APP_A, "app_a").splitlines()[-1] == "edited"


def _frame2_path_order(*expected: str) -> Callable[[StackProject], None]:
    def check(project: StackProject) -> None:
        sitecustomize = (
            project.build_dir / FRAME2 / "lib/python3.11/site-packages/sitecustomize.py"
        ).read_text()
        order = sorted(expected, key=lambda env: sitecustomize.index(f"/{env}/"))
        assert order == list(expected)

    return check


def _frame_lock_has_comment(project: StackProject) -> None:
    text = (project.root / "requirements" / FRAME / "pylock.framework-frame.toml").read_text()
    assert text.endswith("# a note added by hand\n")


def _runtime_is_312(project: StackProject) -> None:
    out = project.run_app(APP_A, "app_a")
    assert "/lib/python3.12/" in out, out


BUILD_ROWS = [
    Row(
        "nothing",
        no_edit,
        runs=frozenset(),
    ),
    Row(
        "app-requirements",
        spec_edit('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-app-b"]'),
        runs=tasks(f"lock+install+link:{APP_A}"),
        resolves=frozenset({APP_A}),
        changes={APP_A: ALL_LOCK_FILES},
        check=_app_a_has_vs_app_b,
    ),
    Row(
        # vs-base is already in frame's lock (shared from the runtime): uv gives the same lock.
        "framework-requirements-same-lock",
        spec_edit('requirements = ["vs-frame"]', 'requirements = ["vs-frame", "vs-base"]'),
        runs=tasks(f"lock:{FRAME}"),
        resolves=frozenset({FRAME}),
        changes={FRAME: "in meta"},
    ),
    Row(
        # util's new pin changes app-a's lock (its shared vs-util), not frame2's (no vs-util).
        "framework-requirements-new-lock",
        spec_edit('requirements = ["vs-util"]', 'requirements = ["vs-util==1.0"]'),
        runs=tasks(f"lock+install+link:{UTIL}", f"lock:{FRAME2}", f"lock+install+link:{APP_A}"),
        resolves=frozenset({UTIL, FRAME2, APP_A}),
        changes={UTIL: ALL_LOCK_FILES, FRAME2: "meta", APP_A: "pylock meta summary"},
    ),
    Row(
        # Every lock on the runtime is re-resolved; only app-b's changes (vs-app-b now shared).
        "runtime-requirements",
        spec_edit('requirements = ["vs-base"]', 'requirements = ["vs-base", "vs-app-b"]'),
        runs=tasks(
            *(f"lock:{env}" for env in ENVS), f"install+link:{RUNTIME}", f"install+link:{APP_B}"
        ),
        resolves=frozenset(ENVS),
        changes={
            RUNTIME: ALL_LOCK_FILES,
            FRAME: "meta",
            UTIL: "meta",
            FRAME2: "meta",
            APP_A: "meta",
            APP_B: "pylock meta summary",
        },
        bumps=frozenset({APP_B}),
    ),
    Row(
        # Python X.Y is in every lock (requires-python): everything is rebuilt.
        "runtime-python-x.y",
        use_python_312,
        runs=BUILD | {f"runtime:{RUNTIME}"},
        resolves=frozenset(ENVS),
        changes={env: "pylock meta" for env in ENVS},
        check=_runtime_is_312,
        bumps=frozenset({APP_B}),
    ),
    Row(
        "launch-module-unversioned",
        append_to("app_a.py", "print('edited')\n"),
        runs=tasks(f"link:{APP_A}"),
        check=_app_a_module_updated,
    ),
    Row(
        # The versioned app's lock_version is bumped from its metadata, without uv or a reinstall.
        "support-module-versioned",
        replace_in("helper_b.py", "VALUE = 42", "VALUE = 43"),
        runs=tasks(f"lock+link:{APP_B}"),
        changes={APP_B: "meta"},
        check=_app_b_version_bumped,
        bumps=frozenset({APP_B}),
    ),
    Row(
        "launch-module-versioned",
        append_to("launch_b/__main__.py", "# edited\n"),
        runs=tasks(f"lock+link:{APP_B}"),
        changes={APP_B: "meta"},
        bumps=frozenset({APP_B}),
    ),
    Row(
        # Reordering frame2's frameworks changes its sys.path order and app-a's: both relock
        # (same lock bytes) and relink; nothing is reinstalled.
        "framework-order",
        spec_edit('frameworks = ["frame", "util"]', 'frameworks = ["util", "frame"]'),
        runs=tasks(f"lock+link:{FRAME2}", f"lock+link:{APP_A}"),
        resolves=frozenset({FRAME2, APP_A}),
        changes={FRAME2: "meta", APP_A: "meta"},
        check=_frame2_path_order(UTIL, FRAME, RUNTIME),
    ),
    Row(
        # Naming a framework app-a already inherits leaves its linearisation as it was.
        "framework-list-same-linearisation",
        spec_edit('frameworks = ["frame2"]', 'frameworks = ["frame2", "util"]'),
        runs=frozenset(),
    ),
    Row(
        # app-a no longer gets vs-util from below: it installs it itself. frame2's lock keeps
        # its bytes (it needs no vs-util) but its lower layers changed, so it is relinked.
        "framework-removed",
        spec_edit('frameworks = ["frame", "util"]', 'frameworks = ["frame"]'),
        runs=tasks(f"lock+link:{FRAME2}", f"lock+install+link:{APP_A}"),
        resolves=frozenset({FRAME2, APP_A}),
        changes={FRAME2: "meta", APP_A: "pylock meta summary"},
        check=_frame2_path_order(FRAME, RUNTIME),
    ),
    Row(
        # Byte-code caches are not module content (the source filter skips __pycache__).
        "pycache-in-launch-package",
        append_to(
            "launch_b/__pycache__/__main__.cpython-311.pyc", "not really byte code", new=True
        ),
        runs=frozenset(),
    ),
    Row(
        "spec-comment-only",
        append_to("venvstacks.toml", "\n# a comment changes no layer\n"),
        runs=frozenset(),
    ),
    Row(
        "linux-target",
        spec_edit(
            'platforms = ["linux_x86_64"]\n',
            'platforms = ["linux_x86_64"]\nlinux_target = "glibc@2.31"\n',
        ),
        # The lock is re-checked, and the env reinstalled: uv picks wheels for the target glibc.
        runs=tasks(f"lock+install+link:{FRAME2}"),
        resolves=frozenset({FRAME2}),
        changes={FRAME2: "meta"},
    ),
    Row(
        # The lock's `environments` line changes, so app-b is rebuilt and its version bumped.
        "platforms-narrowed-app",
        spec_edit("versioned = true", 'versioned = true\nplatforms = ["linux_x86_64"]'),
        runs=tasks(f"lock+install+link:{APP_B}"),
        resolves=frozenset({APP_B}),
        changes={APP_B: "pylock meta"},
        bumps=frozenset({APP_B}),
    ),
    Row(
        # frame changes; frame2 (already x86_64 only) re-checks its lock and keeps it.
        "platforms-narrowed-framework",
        spec_edit(
            'requirements = ["vs-frame"]\n',
            'requirements = ["vs-frame"]\nplatforms = ["linux_x86_64"]\n',
        ),
        runs=tasks(f"lock+install+link:{FRAME}", f"lock:{FRAME2}", f"lock:{APP_A}"),
        resolves=frozenset({FRAME}),
        changes={FRAME: "pylock meta"},
    ),
    Row(
        # A relock undoes the edit, byte for byte: nothing else needs to run.
        "lock-edited-by-hand",
        tamper_frame_lock,
        runs=tasks(f"lock:{FRAME}"),
        resolves=frozenset({FRAME}),
        restores_lock=True,
    ),
    Row(
        # The lock stays valid (the comment is no package), but its bytes changed: frame is
        # reinstalled and the locks above it re-checked (and kept).
        "lock-comment-added-by-hand",
        append_to(f"requirements/{FRAME}/pylock.{FRAME}.toml", "# a note added by hand\n"),
        runs=tasks(f"install+link:{FRAME}", f"lock:{FRAME2}", f"lock:{APP_A}"),
        changes={FRAME: "pylock"},
        check=_frame_lock_has_comment,
    ),
]


@pytest.mark.parametrize("row", BUILD_ROWS, ids=[row.id for row in BUILD_ROWS])
def test_build_matrix(row: Row, stack: StackProject) -> None:
    before = stack.lock_files()
    before_meta = {env: stack.lock_meta(env) for env in ENVS}
    row.edit(stack)
    edited = stack.lock_files()
    result = stack.build()
    ran = set(stack.ran_tasks(result))
    assert f"({len(ran)} task(s) ran," in result.stdout

    changed = changed_files(before, stack.lock_files())
    if row.restores_lock:
        assert edited != before and changed == set(), "the relock restores the lock's bytes"
    else:
        assert changed == files(row.changes)
    assert resolved_locks(stack, ran) == set(row.resolves)
    check_lock_times(stack, before_meta, changed, row.bumps)
    check_apps_run(stack)
    if row.check is not None:
        row.check(stack)
    assert stack.ran_tasks(stack.build()) == [], "a second build must be a no-op"
    check_deviation(ran, row.runs, row.also_runs, row.bug)


# ---------------------------------------------------------------------------------------------
# The lock matrix: `venvstacks lock` only
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockRow:
    id: str
    edit: Callable[[StackProject], None]
    runs: frozenset[str]
    changes: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    also_runs: frozenset[str] = frozenset()
    bug: str = ""


LOCK_ROWS = [
    LockRow("nothing", no_edit, runs=frozenset()),
    LockRow(
        "reset-every-lock",
        no_edit,
        runs=tasks(*(f"lock:{env}" for env in ENVS)),
        args=("--reset-lock", "*"),
    ),
    LockRow(
        "app-requirements",
        spec_edit('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-app-b"]'),
        runs=tasks(f"lock:{APP_A}"),
        changes={APP_A: ALL_LOCK_FILES},
    ),
    LockRow(
        "framework-requirements-same-lock",
        spec_edit('requirements = ["vs-frame"]', 'requirements = ["vs-frame", "vs-base"]'),
        runs=tasks(f"lock:{FRAME}"),
        changes={FRAME: "in meta"},
    ),
    LockRow(
        "framework-requirements-new-lock",
        spec_edit('requirements = ["vs-util"]', 'requirements = ["vs-util==1.0"]'),
        runs=tasks(f"lock:{UTIL}", f"lock:{FRAME2}", f"lock:{APP_A}"),
        changes={UTIL: ALL_LOCK_FILES, FRAME2: "meta", APP_A: "pylock meta summary"},
    ),
    LockRow(
        "support-module-versioned",
        replace_in("helper_b.py", "VALUE = 42", "VALUE = 43"),
        runs=tasks(f"lock:{APP_B}"),
        changes={APP_B: "meta"},
    ),
    LockRow(
        "launch-module-unversioned",
        append_to("app_a.py", "print('edited')\n"),
        runs=frozenset(),
    ),
    LockRow(
        "only-selected-layer",
        spec_edit('requirements = ["vs-app-a"]', 'requirements = ["vs-app-a", "vs-app-b"]'),
        runs=frozenset(),
        args=("--include", APP_B),
    ),
]


@pytest.mark.parametrize("row", LOCK_ROWS, ids=[row.id for row in LOCK_ROWS])
def test_lock_matrix(row: LockRow, stack: StackProject) -> None:
    before = stack.lock_files()
    row.edit(stack)
    ran = set(run_verbose(stack, "lock", *row.args))
    assert changed_files(before, stack.lock_files()) == files(row.changes)
    again = run_verbose(stack, "lock", *row.args)
    assert set(again) == (row.runs if "--reset-lock" in row.args else set()), "locking twice"
    assert changed_files(before, stack.lock_files()) == files(row.changes), "locking twice"
    check_deviation(ran, row.runs, row.also_runs, row.bug)
