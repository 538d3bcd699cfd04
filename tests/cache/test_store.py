"""The cache store on a real filesystem: insert, checked look-up, damage, races and pruning.

Damage is done for real (bytes flipped in place, files truncated or deleted, manifests cut short)
and concurrency with real processes (several inserting the same digest, prune during restores).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from venvstacks.cache.manifest import Relocation
from venvstacks.cache.restore import restore_tree
from venvstacks.cache.store import (
    CacheError,
    LayerCache,
    _choose_victims,
    default_cache_dir,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64


def make_tree(root: Path, size: int = 1000) -> Path:
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "lib" / "pkg" / "data.bin").write_bytes(os.urandom(size))
    (root / "lib" / "pkg" / "__pycache__").mkdir()
    (root / "lib" / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "link").symlink_to("tool")
    return root


def test_location_follows_the_environment(tmp_path: Path) -> None:
    assert default_cache_dir({"VENVSTACKS_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/venvstacks")
    assert default_cache_dir({"XDG_CACHE_HOME": "relative"}) == (
        Path.home() / ".cache" / "venvstacks"
    )
    assert default_cache_dir({}) == Path.home() / ".cache" / "venvstacks"


def test_insert_then_lookup_and_restore(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    source = make_tree(tmp_path / "src")
    assert cache.lookup("env", DIGEST_A) is None
    entry = cache.insert("env", DIGEST_A, source, layer="frame", inputs={"x": 1})
    assert entry is not None
    assert entry.layer == "frame" and entry.manifest["inputs"] == {"x": 1}
    assert entry.size == 1000 + len("VALUE = 1\n") + len("#!/bin/sh\n")
    found = cache.lookup("env", DIGEST_A)
    assert found is not None and found.digest == DIGEST_A
    dest = tmp_path / "dest"
    restore_tree(found.tree, found.entries, dest, Relocation(()))
    assert (dest / "lib/pkg/data.bin").read_bytes() == (source / "lib/pkg/data.bin").read_bytes()
    assert (dest / "bin/link").readlink() == Path("tool")
    assert os.access(dest / "bin/tool", os.X_OK)
    assert not (dest / "lib/pkg/__pycache__").exists()  # bytecode is never cached
    # Other kinds and digests are misses.
    assert cache.lookup("lock", DIGEST_A) is None
    assert cache.lookup("env", DIGEST_B) is None


def test_bad_digests_are_refused(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    with pytest.raises(CacheError, match="not a sha256 digest"):
        cache.lookup("env", "sha256:../../etc")
    with pytest.raises(CacheError, match="unknown cache entry kind"):
        cache.lookup("wheel", DIGEST_A)


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "delete", "replace-symlink", "manifest-cut", "manifest-gone"],
)
def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path: Path, damage: str) -> None:
    cache = LayerCache(tmp_path / "cache")
    entry = cache.insert("env", DIGEST_A, make_tree(tmp_path / "src"), layer="x", inputs={})
    assert entry is not None
    data = entry.tree / "lib/pkg/data.bin"
    if damage == "flip":
        with data.open("r+b") as stream:  # in place, as a write through a shared hard link
            first = stream.read(1)
            stream.seek(0)
            stream.write(bytes([first[0] ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(data, 10)
    elif damage == "delete":
        data.unlink()
    elif damage == "replace-symlink":
        (entry.tree / "bin/link").unlink()
        (entry.tree / "bin/link").symlink_to("/etc/passwd")
    elif damage == "manifest-cut":
        manifest = entry.folder / "manifest.json"
        manifest.write_bytes(manifest.read_bytes()[:100])
    else:
        (entry.folder / "manifest.json").unlink()
    assert cache.lookup("env", DIGEST_A) is None
    assert not entry.folder.exists()
    # The next build stores it again.
    assert cache.insert("env", DIGEST_A, make_tree(tmp_path / "src2"), layer="x", inputs={})


def test_a_flip_that_keeps_size_and_time_is_caught_when_copying(tmp_path: Path) -> None:
    """Copies are hash-checked; only hard links rely on the cheap size+time check."""
    from venvstacks.cache.restore import RestoreFailed

    cache = LayerCache(tmp_path / "cache")
    entry = cache.insert("env", DIGEST_A, make_tree(tmp_path / "src"), layer="x", inputs={})
    assert entry is not None
    init = entry.tree / "lib/pkg/__init__.py"
    info = init.stat()
    init.write_text("VALUE = 2\n")
    os.utime(init, ns=(info.st_atime_ns, info.st_mtime_ns))
    found = cache.lookup("env", DIGEST_A)
    assert found is not None
    with pytest.raises(RestoreFailed, match="recorded hash"):
        restore_tree(
            found.tree, found.entries, tmp_path / "d", Relocation(()), lambda p: p.endswith(".py")
        )


def _insert_worker(root: str, source: str, digest: str, queue: multiprocessing.Queue[str]) -> None:
    cache = LayerCache(Path(root))
    entry = cache.insert("env", digest, Path(source), layer="race", inputs={"pid": os.getpid()})
    queue.put("ok" if entry is not None else "none")


def test_concurrent_inserts_of_one_digest_leave_one_whole_entry(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", size=2_000_000)
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    workers = [
        ctx.Process(target=_insert_worker, args=(str(tmp_path / "c"), str(source), DIGEST_A, queue))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(queue.get(timeout=5) for _ in workers) == ["ok"] * 4
    cache = LayerCache(tmp_path / "c")
    assert [e.digest for e in cache.entries()] == [DIGEST_A]
    assert cache.lookup("env", DIGEST_A) is not None
    assert list((tmp_path / "c" / "v1" / "tmp").iterdir()) == []


def _entries_with_ages(tmp_path: Path) -> LayerCache:
    cache = LayerCache(tmp_path / "cache")
    now = time.time()
    for digest, size, age_days in ((DIGEST_A, 3000, 10), (DIGEST_B, 2000, 5), (DIGEST_C, 1000, 1)):
        entry = cache.insert(
            "env", digest, make_tree(tmp_path / digest[-1], size), layer=digest[-1], inputs={}
        )
        assert entry is not None
        stamp = now - age_days * 86400
        os.utime(entry.folder / "used", (stamp, stamp))
    return cache


def _layers(cache: LayerCache) -> list[str]:
    return [e.layer for e in cache.entries()]


def test_prune_by_size_removes_least_recently_used_first(tmp_path: Path) -> None:
    cache = _entries_with_ages(tmp_path)
    assert _layers(cache) == ["a", "b", "c"]
    cache.lookup("env", DIGEST_A)  # a hit makes `a` the most recently used
    assert _layers(cache) == ["b", "c", "a"]
    sizes = {e.layer: e.size for e in cache.entries()}
    result = cache.prune(max_size=sizes["a"] + sizes["c"])
    assert [e.layer for e in result.removed] == ["b"]
    assert _layers(cache) == ["c", "a"]
    result = cache.prune(max_size=0)
    assert len(result.removed) == 2 and result.kept == 0 and result.remaining == 0
    assert cache.usage() == (0, 0)


def test_prune_by_age(tmp_path: Path) -> None:
    cache = _entries_with_ages(tmp_path)
    result = cache.prune(older_than_days=4)
    assert sorted(e.layer for e in result.removed) == ["a", "b"]
    assert _layers(cache) == ["c"]


def test_prune_needs_a_limit(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="--max-size"):
        LayerCache(tmp_path).prune()


def test_choose_victims_is_pure_lru() -> None:
    class Fake:
        def __init__(self, size: int, used: float) -> None:
            self.size, self.last_used = size, used

    entries = [Fake(5, 1.0), Fake(5, 2.0), Fake(5, 3.0)]
    doomed, kept = _choose_victims(entries, 10, None, now=100.0)  # type: ignore[arg-type]
    assert doomed == entries[:1] and kept == entries[1:]
    doomed, kept = _choose_victims(entries, None, 1 / 86400 * 98.5, now=100.0)  # type: ignore[arg-type]
    assert doomed == entries[:1]


def test_prune_sweeps_killed_inserts_but_not_running_ones(tmp_path: Path) -> None:
    import fcntl

    cache = LayerCache(tmp_path / "c")
    tmp_root = cache.base / "tmp"
    tmp_root.mkdir(parents=True)
    (tmp_root / "env-dead").mkdir()
    (tmp_root / "env-dead.lock").touch()
    (tmp_root / "env-live").mkdir()
    with (tmp_root / "env-live.lock").open("w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        cache.prune(max_size=0)
        assert not (tmp_root / "env-dead").exists()
        assert (tmp_root / "env-live").exists()


def _restore_loop(root: str, dest: str, queue: multiprocessing.Queue[str]) -> None:
    from venvstacks.cache.restore import RestoreFailed

    cache = LayerCache(Path(root))
    outcomes = {"restored": 0, "miss": 0, "failed": 0}
    for n in range(40):
        entry = cache.lookup("env", DIGEST_A)
        if entry is None:
            outcomes["miss"] += 1
            continue
        try:
            restore_tree(entry.tree, entry.entries, Path(dest) / str(n), Relocation(()))
        except RestoreFailed:
            outcomes["failed"] += 1
        else:
            outcomes["restored"] += 1
            data = (Path(dest) / str(n) / "lib/pkg/data.bin").read_bytes()
            assert len(data) == 200_000
    queue.put(repr(outcomes))


def test_prune_while_restoring_never_gives_a_partial_tree(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "c")
    source = make_tree(tmp_path / "src", size=200_000)
    for n in range(30):
        (source / "lib" / f"mod{n}.py").write_text(f"N = {n}\n")
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    reader = ctx.Process(
        target=_restore_loop, args=(str(tmp_path / "c"), str(tmp_path / "out"), queue)
    )
    reader.start()
    deadline = time.time() + 30
    while reader.is_alive() and time.time() < deadline:
        cache.insert("env", DIGEST_A, source, layer="x", inputs={})
        cache.prune(max_size=0)
    reader.join(30)
    assert reader.exitcode == 0
    outcomes = eval(queue.get(timeout=5))
    assert sum(outcomes.values()) == 40
