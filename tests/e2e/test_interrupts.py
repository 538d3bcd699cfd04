"""Ctrl-C and SIGKILL in the middle of a real build: prompt exit, no process left, next build repairs.

The stack has a slow step at each stage: a package index that accepts connections and never
answers (uv's lock waits on it), a 48 MB wheel (uv's install copies it), a launch module with a
48 MB data file (the link step copies it) and the archives of all that (compression). Builds run
in a session of their own, so every process they start can be found in /proc by session id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from fixtures_stacks import VENVSTACKS, StackProject
from fixtures_wheels import make_wheel

pytestmark = pytest.mark.slow

BIG_MB = 48
SITE = "lib/python3.11/site-packages"

SPEC = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64"]

[[frameworks]]
name = "frame"
runtime = "cpython-3.11"
requirements = ["vs-frame"]

[[applications]]
name = "big"
frameworks = ["frame"]
launch_module = "launch_big"
requirements = ["vs-big"]
"""

HANGING_INDEX = """
[[tool.uv.index]]
url = "http://127.0.0.1:{port}/simple"
default = true
"""

MAIN = """\
import os, vs_big, vs_frame
blob = os.path.join(os.path.dirname(vs_big.__file__), "blob.bin")
data = os.path.join(os.path.dirname(__file__), "data.bin")
print("big", vs_big.__version__, os.path.getsize(blob), os.path.getsize(data), vs_frame.__version__)
"""
EXPECTED = f"big 1.0 {BIG_MB << 20} {BIG_MB << 20} 1.0"


# ---------------------------------------------------------------------------------------------
# Fixtures: the slow stack, a package index that never answers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def big_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("big-wheels")
    make_wheel(folder, "vs-big", "1.0", files={"vs_big/blob.bin": os.urandom(BIG_MB << 20)})
    return folder


@pytest.fixture
def slow_stack(
    stack_project: StackProject, runtime_versions: Mapping[str, str], big_wheels: Path
) -> StackProject:
    stack_project.write("venvstacks.toml", SPEC.format(py311=runtime_versions["3.11"]))
    stack_project.write("launch_big/__init__.py", "")
    stack_project.write("launch_big/__main__.py", MAIN)
    (stack_project.root / "launch_big" / "data.bin").write_bytes(os.urandom(BIG_MB << 20))
    return stack_project


@pytest.fixture
def silent_index() -> Iterator[int]:
    """A port where connections are accepted and never answered (uv waits for its timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _wheel_options(stack: StackProject, big_wheels: Path) -> list[str]:
    return ["--local-wheels", str(big_wheels)]


# ---------------------------------------------------------------------------------------------
# Running, watching and stopping a build
# ---------------------------------------------------------------------------------------------


def start_build(stack: StackProject, *args: str, index: bool = False) -> subprocess.Popen[bytes]:
    """`venvstacks -v build ...` in a new session; its stderr goes to stderr.txt in the stack."""
    sources = [
        "--runtime-archives", str(stack.runtime_archives), "--local-wheels", str(stack.wheelhouse),
    ]
    argv = [*VENVSTACKS, "-v", "build", str(stack.spec), "--lock-if-needed", *sources, *args]
    if not index:
        argv.append("--no-index")
    env = {**os.environ, **stack.env}
    env.pop("VENVSTACKS_RUNTIME_ARCHIVES", None)
    with open(stack.root / "stderr.txt", "wb") as stderr:
        return subprocess.Popen(
            argv, cwd=stack.root, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True,
        )


def session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of a session: pid -> command line."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":
            found[int(entry.name)] = cmdline
    return found


def wait_for(
    what: str, check: Callable[[], bool], build: subprocess.Popen[bytes], timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert build.poll() is None, f"the build ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.002)


def running(build: subprocess.Popen[bytes], program: str, *args: str) -> Callable[[], bool]:
    """A check: a process of the build's session runs `program` with all of `args`."""

    def check() -> bool:
        for cmdline in session_processes(build.pid).values():
            argv = cmdline.split()
            if argv and Path(argv[0]).name == program and all(a in argv for a in args):
                return True
        return False

    return check


def interrupt(build: subprocess.Popen[bytes], *, twice: bool = False, group: bool = False) -> float:
    """Ctrl-C (to the process, or to its group as a terminal does); seconds until it exited."""
    start = time.monotonic()
    send = (lambda: os.killpg(build.pid, signal.SIGINT)) if group else (
        lambda: os.kill(build.pid, signal.SIGINT)
    )
    send()
    if twice:
        time.sleep(0.05)
        if build.poll() is None:
            send()
    build.wait(timeout=60)
    return time.monotonic() - start


def kill(build: subprocess.Popen[bytes], *, session: bool) -> None:
    """SIGKILL the build alone, or every process of its session (as a power cut would)."""
    if session:
        for pid in session_processes(build.pid):
            os.kill(pid, signal.SIGKILL)
    else:
        os.kill(build.pid, signal.SIGKILL)
    build.wait(timeout=60)
    assert build.returncode == -signal.SIGKILL


def assert_stopped_cleanly(stack: StackProject, build: subprocess.Popen[bytes], took: float) -> None:
    stderr = (stack.root / "stderr.txt").read_text()
    assert build.returncode == 130, stderr
    assert took < 2.0, f"exit took {took:.1f} s"
    assert stderr.rstrip().splitlines()[-1] == "interrupted", stderr
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr
    deadline = time.monotonic() + 2
    while session_processes(build.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(build.pid) == {}, "processes of the build are left"


def assert_repaired(stack: StackProject, big_wheels: Path, *args: str) -> None:
    """The next build succeeds, the app runs, and the one after that has nothing to do."""
    stack.build(*_wheel_options(stack, big_wheels), *args)
    assert stack.run_app("app-big", "launch_big").strip() == EXPECTED
    assert stack.ran_tasks(stack.build(*_wheel_options(stack, big_wheels), *args)) == []
    leftovers = [p.name for p in stack.build_dir.iterdir() if p.name.endswith((".new", ".old"))]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------------


def test_ctrl_c_while_uv_locks(
    slow_stack: StackProject, big_wheels: Path, silent_index: int
) -> None:
    spec_text = slow_stack.spec.read_text()
    slow_stack.spec.write_text(spec_text + HANGING_INDEX.format(port=silent_index))
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels), index=True)
    wait_for("uv lock", running(build, "uv", "lock"), build)
    assert_stopped_cleanly(slow_stack, build, interrupt(build))

    slow_stack.spec.write_text(spec_text)
    assert_repaired(slow_stack, big_wheels)


def test_ctrl_c_twice_from_a_terminal_while_installing_in_parallel(
    slow_stack: StackProject, big_wheels: Path
) -> None:
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels), "-j", "2")
    staging = slow_stack.build_dir / ".app-big.new"
    wait_for("the install of app-big", lambda: staging.exists(), build)
    wait_for("uv pip", running(build, "uv", "pip", "sync"), build)
    assert_stopped_cleanly(slow_stack, build, interrupt(build, twice=True, group=True))
    assert_repaired(slow_stack, big_wheels)


def test_ctrl_c_while_compressing_archives(slow_stack: StackProject, big_wheels: Path) -> None:
    slow_stack.build(*_wheel_options(slow_stack, big_wheels))
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels), "--publish")
    artifacts = slow_stack.root / "_artifacts"
    wait_for(
        "an archive being written",
        lambda: artifacts.is_dir() and any(artifacts.glob(".*.partial")),
        build,
    )
    assert_stopped_cleanly(slow_stack, build, interrupt(build))
    assert_repaired(slow_stack, big_wheels, "--publish")
    assert (artifacts / "app-big.tar.xz").is_file()


# ---------------------------------------------------------------------------------------------
# SIGKILL at several points
# ---------------------------------------------------------------------------------------------


def test_sigkill_of_everything_while_uv_locks(
    slow_stack: StackProject, big_wheels: Path, silent_index: int
) -> None:
    spec_text = slow_stack.spec.read_text()
    slow_stack.spec.write_text(spec_text + HANGING_INDEX.format(port=silent_index))
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels), index=True)
    wait_for("uv lock", running(build, "uv", "lock"), build)
    kill(build, session=True)
    slow_stack.spec.write_text(spec_text)
    assert_repaired(slow_stack, big_wheels)


def test_sigkill_of_venvstacks_alone_while_installing(
    slow_stack: StackProject, big_wheels: Path
) -> None:
    """uv lives on, still writing the staging folder: the next build waits for it, then repairs."""
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels))
    staging = slow_stack.build_dir / ".app-big.new"
    wait_for("the install of app-big", lambda: staging.exists(), build)
    wait_for("uv pip", running(build, "uv", "pip", "sync"), build)
    kill(build, session=False)
    assert_repaired(slow_stack, big_wheels)


@pytest.mark.parametrize("session", [True, False], ids=["everything", "venvstacks-alone"])
def test_sigkill_while_linking(slow_stack: StackProject, big_wheels: Path, session: bool) -> None:
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels))
    copied = slow_stack.build_dir / "app-big" / SITE / "launch_big"
    wait_for("the link of app-big", lambda: copied.exists(), build)
    kill(build, session=session)
    link_stamp = slow_stack.build_dir / ".venvstacks" / "stamps" / "link.app-big.json"
    assert not link_stamp.exists(), "killed too late: the link had finished"
    assert_repaired(slow_stack, big_wheels)


def test_sigkill_after_a_relink_was_started_repairs_the_app(
    slow_stack: StackProject, big_wheels: Path
) -> None:
    slow_stack.build(*_wheel_options(slow_stack, big_wheels))
    (slow_stack.root / "launch_big" / "data.bin").write_bytes(os.urandom(BIG_MB << 20))
    build = start_build(slow_stack, *_wheel_options(slow_stack, big_wheels))
    data = slow_stack.build_dir / "app-big" / SITE / "launch_big" / "data.bin"
    wait_for("the relink of app-big", lambda: not data.exists(), build)
    kill(build, session=True)
    assert_repaired(slow_stack, big_wheels)
    copied = (slow_stack.build_dir / "app-big" / SITE / "launch_big" / "data.bin").read_bytes()
    assert copied == (slow_stack.root / "launch_big" / "data.bin").read_bytes()
