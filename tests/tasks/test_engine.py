"""The doit embedding: running real tasks, content-hash staleness, task states, the build-dir lock."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from doit.exceptions import TaskFailed

from venvstacks.errors import StackError
from venvstacks.tasks.engine import TaskDict, build_dir_lock, full_name, run_tasks, task_states

# ---------------------------------------------------------------------------------------------
# Task helpers: every action does real file I/O in tmp_path and records that it ran
# ---------------------------------------------------------------------------------------------


def _log_run(log: Path, name: str) -> None:
    with open(log, "a") as handle:
        handle.write(name + "\n")


def _runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _copy_upper(src: Path, dst: Path, log: Path, name: str) -> None:
    _log_run(log, name)
    dst.write_text(src.read_text().upper())


def _copy_task(name: str, src: Path, dst: Path, log: Path, **extra: Any) -> TaskDict:
    task: TaskDict = {
        "basename": "copy",
        "name": name,
        "actions": [(_copy_upper, [src, dst, log, f"copy:{name}"])],
        "file_dep": [str(src)],
        "targets": [str(dst)],
    }
    task.update(extra)  # type: ignore[typeddict-item]
    return task


@pytest.fixture
def chain(tmp_path: Path) -> tuple[list[TaskDict], Path, Path]:
    """in.txt -> copy:one -> mid.txt -> copy:two -> out.txt; the run log is runs.log."""
    src, mid, out, log = (tmp_path / n for n in ("in.txt", "mid.txt", "out.txt", "runs.log"))
    src.write_text("hello")
    tasks = [
        _copy_task("one", src, mid, log),
        _copy_task("two", mid, out, log),
    ]
    return tasks, tmp_path / "state" / "tasks.db", log


# ---------------------------------------------------------------------------------------------
# run_tasks: run, skip, re-run by content
# ---------------------------------------------------------------------------------------------


def test_full_name() -> None:
    assert full_name({"basename": "lock", "name": "app-x"}) == "lock:app-x"


def test_first_run_executes_in_dependency_order(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, log = chain
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.code == 0
    assert result.executed == ["copy:one", "copy:two"]
    assert result.up_to_date == []
    assert result.failures == {}
    assert set(result.durations) == {"copy:one", "copy:two"}
    assert (tmp_path / "out.txt").read_text() == "HELLO"
    assert _runs(log) == ["copy:one", "copy:two"]
    assert db.is_file()


def test_second_run_skips_everything(chain: tuple[list[TaskDict], Path, Path]) -> None:
    tasks, db, log = chain
    run_tasks(tasks, ["copy:two"], db)
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.code == 0
    assert result.executed == []
    assert result.up_to_date == ["copy:one", "copy:two"]
    assert _runs(log) == ["copy:one", "copy:two"]


def test_content_change_reruns_the_chain(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "in.txt").write_text("changed")
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.executed == ["copy:one", "copy:two"]
    assert (tmp_path / "out.txt").read_text() == "CHANGED"


def test_same_bytes_rewrite_does_not_rerun(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, log = chain
    run_tasks(tasks, ["copy:two"], db)
    src = tmp_path / "in.txt"
    time.sleep(0.01)
    src.write_text("hello")  # new mtime, same content: the MD5 checker sees no change
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.executed == []
    assert _runs(log) == ["copy:one", "copy:two"]


def test_upstream_reproducing_same_bytes_stops_the_cascade(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "in.txt").write_text("HELLO")  # upper-cases to the same mid.txt
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.executed == ["copy:one"]
    assert result.up_to_date == ["copy:two"]


def test_selecting_a_lower_task_runs_only_it(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, _log = chain
    result = run_tasks(tasks, ["copy:one"], db)
    assert result.executed == ["copy:one"]
    assert not (tmp_path / "out.txt").exists()


def test_always_reruns_up_to_date_tasks(chain: tuple[list[TaskDict], Path, Path]) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    result = run_tasks(tasks, ["copy:two"], db, always=True)
    assert result.executed == ["copy:one", "copy:two"]


def test_missing_target_reruns(chain: tuple[list[TaskDict], Path, Path], tmp_path: Path) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "out.txt").unlink()
    result = run_tasks(tasks, ["copy:two"], db)
    assert result.executed == ["copy:two"]


def test_progress_events(chain: tuple[list[TaskDict], Path, Path]) -> None:
    tasks, db, _log = chain
    events: list[tuple[str, str]] = []

    def progress(event: str, name: str, seconds: float | None) -> None:
        events.append((event, name))
        if event in ("done", "fail"):
            assert seconds is not None and seconds >= 0
        else:
            assert seconds is None

    run_tasks(tasks, ["copy:two"], db, progress=progress)
    assert events == [
        ("start", "copy:one"),
        ("done", "copy:one"),
        ("start", "copy:two"),
        ("done", "copy:two"),
    ]
    events.clear()
    run_tasks(tasks, ["copy:two"], db, progress=progress)
    assert events == [("skip", "copy:one"), ("skip", "copy:two")]


def test_task_dep_orders_without_file_dep(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tasks: list[TaskDict] = [
        {
            "basename": "step",
            "name": name,
            "actions": [(_log_run, [log, name])],
            "task_dep": deps,
            "uptodate": [False],
        }
        for name, deps in (("c", ["step:b"]), ("b", ["step:a"]), ("a", []))
    ]
    run_tasks(tasks, ["step:c"], tmp_path / "tasks.db")
    assert _runs(log) == ["a", "b", "c"]


def test_returned_values_are_saved(tmp_path: Path) -> None:
    target = tmp_path / "t"

    def action() -> dict[str, Any]:
        target.write_text("x")
        return {"answer": 42}

    tasks: list[TaskDict] = [
        {"basename": "v", "name": "one", "actions": [action], "targets": [str(target)],
         "file_dep": []}
    ]
    db = tmp_path / "tasks.db"
    assert run_tasks(tasks, ["v:one"], db).code == 0
    assert '"answer": 42' in db.read_text()


# ---------------------------------------------------------------------------------------------
# run_tasks: failures and errors
# ---------------------------------------------------------------------------------------------


def _fail(message: str) -> TaskFailed:
    return TaskFailed(message)


def _boom() -> None:
    raise ZeroDivisionError("the action blew up")


def _single(tmp_path: Path, action: Callable[..., Any], *args: Any) -> list[TaskDict]:
    return [
        {
            "basename": "op",
            "name": "x",
            "actions": [(action, list(args))],
            "targets": [str(tmp_path / "never-written")],
        }
    ]


def test_failed_action_exits_1_with_its_message(tmp_path: Path) -> None:
    events: list[str] = []
    result = run_tasks(
        _single(tmp_path, _fail, "layer app-x: bad things"),
        ["op:x"],
        tmp_path / "tasks.db",
        progress=lambda event, name, seconds: events.append(event),
    )
    assert result.code == 1
    assert result.failures == {"op:x": "layer app-x: bad things"}
    assert result.executed == []
    assert events == ["start", "fail"]


def test_failed_task_is_not_recorded_as_done(tmp_path: Path) -> None:
    dep = tmp_path / "dep.txt"
    dep.write_text("x")
    db = tmp_path / "tasks.db"
    outcome = iter([_fail("no"), None])

    def flaky() -> TaskFailed | None:
        return next(outcome)

    tasks: list[TaskDict] = [
        {"basename": "op", "name": "x", "actions": [flaky], "file_dep": [str(dep)]}
    ]
    assert run_tasks(tasks, ["op:x"], db).code == 1
    # Unchanged inputs, but the failed run was not recorded: the task runs again.
    assert run_tasks(tasks, ["op:x"], db).executed == ["op:x"]
    assert run_tasks(tasks, ["op:x"], db).up_to_date == ["op:x"]


def test_exception_in_action_is_one_line_and_its_traceback_is_debug_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="venvstacks"):
        result = run_tasks(_single(tmp_path, _boom), ["op:x"], tmp_path / "tasks.db")
    assert result.code == 2
    message = result.failures["op:x"]
    assert "\n" not in message
    assert message.startswith("ZeroDivisionError: the action blew up")
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "Traceback" in debug and "_boom" in debug


def test_failure_stops_downstream_tasks(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tasks: list[TaskDict] = [
        *_single(tmp_path, _fail, "nope"),
        {"basename": "after", "name": "y", "actions": [(_log_run, [log, "after"])],
         "task_dep": ["op:x"], "uptodate": [False]},
    ]
    result = run_tasks(tasks, ["after:y"], tmp_path / "tasks.db")
    assert result.code == 1
    assert _runs(log) == []


def test_keep_going_runs_independent_tasks_after_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tasks: list[TaskDict] = [
        *_single(tmp_path, _fail, "nope"),
        {"basename": "other", "name": "y", "actions": [(_log_run, [log, "other"])],
         "uptodate": [False]},
    ]
    result = run_tasks(tasks, ["op:x", "other:y"], tmp_path / "tasks.db", keep_going=True)
    assert result.code == 1
    assert _runs(log) == ["other"]


def test_unknown_selected_task_is_a_one_line_stack_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"^no task named op:nope$"):
        run_tasks(_single(tmp_path, _fail, "x"), ["op:nope"], tmp_path / "tasks.db")


def test_dependency_on_an_unknown_task_names_both_tasks(tmp_path: Path) -> None:
    tasks: list[TaskDict] = [
        {"basename": "deploy", "name": "app-x", "actions": [], "task_dep": ["deploy:cpython"]}
    ]
    expected = r"^task deploy:app-x needs deploy:cpython, which is not a known task$"
    with pytest.raises(StackError, match=expected):
        run_tasks(tasks, ["deploy:app-x"], tmp_path / "tasks.db")
    with pytest.raises(StackError, match=expected):
        task_states(tasks, tmp_path / "tasks.db")


def test_cyclic_tasks_are_a_one_line_stack_error(tmp_path: Path) -> None:
    tasks: list[TaskDict] = [
        {"basename": "op", "name": "a", "actions": [], "task_dep": ["op:b"]},
        {"basename": "op", "name": "b", "actions": [], "task_dep": ["op:a"]},
    ]
    expected = r"^tasks depend on each other in a cycle: op:a -> op:b -> op:a$"
    with pytest.raises(StackError, match=expected):
        run_tasks(tasks, ["op:a"], tmp_path / "tasks.db")


def test_two_tasks_writing_one_target_is_a_stack_error(tmp_path: Path) -> None:
    target = str(tmp_path / "out")
    tasks: list[TaskDict] = [
        {"basename": "op", "name": n, "actions": [], "targets": [target]} for n in ("a", "b")
    ]
    with pytest.raises(StackError, match=r"^tasks op:\w and op:\w both write .*out$"):
        run_tasks(tasks, ["op:a"], tmp_path / "tasks.db")


# ---------------------------------------------------------------------------------------------
# run_tasks: parallel jobs
# ---------------------------------------------------------------------------------------------


def _timed_sleep(record: Path) -> None:
    start = time.monotonic()
    time.sleep(0.4)
    record.write_text(f"{start} {time.monotonic()}")


def _interval(record: Path) -> tuple[float, float]:
    start, end = record.read_text().split()
    return float(start), float(end)


def _sleepers(tmp_path: Path) -> list[TaskDict]:
    return [
        {
            "basename": "sleep",
            "name": name,
            "actions": [(_timed_sleep, [tmp_path / f"{name}.time"])],
            "targets": [str(tmp_path / f"{name}.time")],
            "uptodate": [False],
        }
        for name in ("a", "b")
    ]


def test_two_jobs_run_independent_tasks_concurrently(tmp_path: Path) -> None:
    result = run_tasks(_sleepers(tmp_path), ["sleep:a", "sleep:b"], tmp_path / "db", jobs=2)
    assert result.code == 0
    assert sorted(result.executed) == ["sleep:a", "sleep:b"]
    a_start, a_end = _interval(tmp_path / "a.time")
    b_start, b_end = _interval(tmp_path / "b.time")
    assert a_start < b_end and b_start < a_end, "the two intervals should overlap"


def test_one_job_runs_tasks_one_after_the_other(tmp_path: Path) -> None:
    run_tasks(_sleepers(tmp_path), ["sleep:a", "sleep:b"], tmp_path / "db", jobs=1)
    a_start, a_end = _interval(tmp_path / "a.time")
    b_start, b_end = _interval(tmp_path / "b.time")
    assert a_end <= b_start or b_end <= a_start


# ---------------------------------------------------------------------------------------------
# task_states: doit's own up-to-date check, read-only
# ---------------------------------------------------------------------------------------------


def _state_map(tasks: list[TaskDict], db: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    return {s.name: (s.status, s.reasons) for s in task_states(tasks, db)}


def test_states_before_any_run(chain: tuple[list[TaskDict], Path, Path], tmp_path: Path) -> None:
    tasks, db, log = chain
    states = _state_map(tasks, db)
    assert states["copy:one"][0] == "run"
    assert states["copy:one"][1]["missing_target"] == [str(tmp_path / "mid.txt")]
    assert states["copy:one"][1]["changed_file_dep"] == [str(tmp_path / "in.txt")]
    # copy:two's file_dep does not exist yet: doit calls that an error, not "run".
    assert states["copy:two"][0] == "error"
    assert states["copy:two"][1]["missing_file_dep"] == [str(tmp_path / "mid.txt")]
    assert not db.exists(), "task_states must not create the DB"
    assert _runs(log) == []


def test_states_after_a_run_are_up_to_date(chain: tuple[list[TaskDict], Path, Path]) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    assert _state_map(tasks, db) == {
        "copy:one": ("up-to-date", {}),
        "copy:two": ("up-to-date", {}),
    }


def test_state_reasons_changed_file_dep_and_missing_target(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "in.txt").write_text("new")
    (tmp_path / "out.txt").unlink()
    states = _state_map(tasks, db)
    assert states["copy:one"] == ("run", {"changed_file_dep": [str(tmp_path / "in.txt")]})
    # Only the own inputs count here; taskview propagates "will run after copy:one".
    assert states["copy:two"] == ("run", {"missing_target": [str(tmp_path / "out.txt")]})


def test_state_reason_uptodate_false(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_text("x")
    tasks: list[TaskDict] = [
        {"basename": "u", "name": "x", "actions": [], "targets": [str(target)],
         "uptodate": [False]}
    ]
    [state] = task_states(tasks, tmp_path / "tasks.db")
    assert state.status == "run"
    assert list(state.reasons) == ["uptodate_false"]


def test_state_reason_config_changed(tmp_path: Path) -> None:
    from doit.tools import config_changed

    target = tmp_path / "t"

    def write() -> None:
        target.write_text("x")

    def make(digest: str) -> list[TaskDict]:
        return [
            {"basename": "c", "name": "x", "actions": [write],
             "targets": [str(target)], "uptodate": [config_changed(digest)]}
        ]

    db = tmp_path / "tasks.db"
    assert run_tasks(make("one"), ["c:x"], db).executed == ["c:x"]
    assert [s.status for s in task_states(make("one"), db)] == ["up-to-date"]
    [state] = task_states(make("two"), db)
    assert state.status == "run"
    assert "uptodate_false" in state.reasons
    assert run_tasks(make("two"), ["c:x"], db).executed == ["c:x"]


def test_task_states_does_not_modify_the_db(
    chain: tuple[list[TaskDict], Path, Path], tmp_path: Path
) -> None:
    tasks, db, log = chain
    run_tasks(tasks, ["copy:two"], db)
    (tmp_path / "in.txt").write_text("changed")
    before = db.read_bytes()
    mtime = db.stat().st_mtime_ns
    task_states(tasks, db)
    task_states(tasks, db)
    assert db.read_bytes() == before
    assert db.stat().st_mtime_ns == mtime
    assert _runs(log) == ["copy:one", "copy:two"]


# ---------------------------------------------------------------------------------------------
# A damaged task database is started afresh, with a warning, by every reader
# ---------------------------------------------------------------------------------------------

DAMAGED_DBS: dict[str, bytes] = {
    "list": b"[1, 2]",
    "number-entry": b'{"copy:one": 42}',
    "bad-deps": b'{"copy:one": {"deps:": 5}}',
    "bad-file-state": b'{"copy:one": {"/some/file": [1]}}',
    "bad-values": b'{"copy:one": {"_values_:": "x"}}',
    "truncated": b'{"copy:one": {"deps:": ["a"',
    "binary": bytes(range(256)) * 4,
    "empty": b"",
    "null": b"null",
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_DBS))
def test_damaged_db_is_started_afresh_by_a_run(
    damage: str, chain: tuple[list[TaskDict], Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    db.write_bytes(DAMAGED_DBS[damage])
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        result = run_tasks(tasks, ["copy:two"], db)
    assert result.code == 0
    assert result.executed == ["copy:one", "copy:two"]  # every task checked its inputs again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(db) in warnings[0] and "starting afresh" in warnings[0]
    assert isinstance(json.loads(db.read_text()), dict)
    assert run_tasks(tasks, ["copy:two"], db).up_to_date == ["copy:one", "copy:two"]


@pytest.mark.parametrize("damage", sorted(DAMAGED_DBS))
def test_damaged_db_is_read_as_empty_by_task_states(
    damage: str, chain: tuple[list[TaskDict], Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tasks, db, _log = chain
    run_tasks(tasks, ["copy:two"], db)
    db.write_bytes(DAMAGED_DBS[damage])
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        states = task_states(tasks, db)
    assert [s.status for s in states] == ["run", "run"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(db) in warnings[0]  # the real DB is named, not a copy
    assert db.read_bytes() == DAMAGED_DBS[damage]  # status writes nothing


def test_repair_task_db_empties_a_damaged_db_only(tmp_path: Path) -> None:
    from venvstacks.tasks.engine import repair_task_db

    db = tmp_path / "tasks.db"
    assert not repair_task_db(db)
    db.write_text('{"op:x": {"checker:": "MD5Checker"}}')
    assert not repair_task_db(db)
    assert json.loads(db.read_text()) == {"op:x": {"checker:": "MD5Checker"}}
    db.write_text('{"link:x": 42}')
    assert repair_task_db(db)
    assert json.loads(db.read_text()) == {}


def test_a_folder_in_place_of_the_db_is_a_stack_error(
    chain: tuple[list[TaskDict], Path, Path],
) -> None:
    tasks, db, _log = chain
    db.mkdir(parents=True)
    with pytest.raises(StackError, match="is a folder"):
        run_tasks(tasks, ["copy:two"], db)
    with pytest.raises(StackError, match="is a folder"):
        task_states(tasks, db)


def test_a_db_that_cannot_be_saved_warns_once_and_the_run_goes_on(
    chain: tuple[list[TaskDict], Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tasks, db, _log = chain
    db.parent.mkdir(parents=True)
    db.parent.chmod(0o500)  # (as root, writes still succeed: then there is nothing to warn about)
    try:
        with caplog.at_level(logging.WARNING, logger="venvstacks"):
            result = run_tasks(tasks, ["copy:two"], db)
    finally:
        db.parent.chmod(0o700)
    assert result.code == 0 and result.executed == ["copy:one", "copy:two"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1


# ---------------------------------------------------------------------------------------------
# build_dir_lock: one build per build dir, across processes
# ---------------------------------------------------------------------------------------------

_LOCKER = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from venvstacks.tasks.engine import build_dir_lock
    from venvstacks.errors import StackError

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    lock_path, wait, acquired = Path(sys.argv[1]), sys.argv[2] == "wait", Path(sys.argv[3])
    try:
        with build_dir_lock(lock_path, wait=wait):
            acquired.write_text(lock_path.read_text())
    except StackError as exc:
        print(exc)
        sys.exit(7)
    """
)


def _locker(lock_path: Path, wait: bool, acquired: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(lock_path), "wait" if wait else "nowait",
         str(acquired)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_lock_records_its_holder_and_clears_on_release(tmp_path: Path) -> None:
    import os

    lock_path = tmp_path / "_build" / ".venvstacks" / "build.lock"
    with build_dir_lock(lock_path):
        assert lock_path.read_text() == f"venvstacks (pid {os.getpid()})\n"
    assert lock_path.read_text() == ""
    with build_dir_lock(lock_path, wait=False):  # free again
        pass


def test_second_process_without_wait_fails_naming_the_holder(tmp_path: Path) -> None:
    import os

    lock_path = tmp_path / "_build" / ".venvstacks" / "build.lock"
    acquired = tmp_path / "acquired"
    with build_dir_lock(lock_path):
        proc = _locker(lock_path, False, acquired)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert out.strip() == (
        f"the build dir {tmp_path / '_build'} is in use by venvstacks (pid {os.getpid()})"
    )
    assert not acquired.exists()


def test_second_process_with_wait_blocks_until_release(tmp_path: Path) -> None:
    import os

    lock_path = tmp_path / "_build" / ".venvstacks" / "build.lock"
    acquired = tmp_path / "acquired"
    with build_dir_lock(lock_path):
        proc = _locker(lock_path, True, acquired)
        assert proc.stderr is not None
        waiting = proc.stderr.readline()  # blocks until the child reports that it waits
        assert waiting.startswith(f"waiting for venvstacks (pid {os.getpid()}) to finish")
        assert proc.poll() is None
        assert not acquired.exists()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # While the child held the lock, the file named the child, not us.
    assert acquired.read_text() == f"venvstacks (pid {proc.pid})\n"


_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from venvstacks.tasks.engine import build_dir_lock

    with build_dir_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    """
)


def test_waiting_for_another_process_is_counted(tmp_path: Path) -> None:
    """What a build read of its build dir before it waited may be stale (another build ran
    meanwhile): `lock_waits` tells, and `StackTasks.lock_valid` forgets its answers then."""
    from venvstacks.tasks.engine import lock_waits

    lock_path = tmp_path / "_build" / ".venvstacks" / "build.lock"
    before = lock_waits()
    with build_dir_lock(lock_path):
        pass
    assert lock_waits() == before  # free: no wait
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    timer = threading.Timer(0.5, holder.stdin.close)
    timer.start()
    with build_dir_lock(lock_path):
        assert lock_waits() == before + 1
    timer.join()
    assert holder.wait(timeout=60) == 0
    holder.stdout.close()
