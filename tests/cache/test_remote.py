"""The remote cache against a real registry (Debian's docker-registry on loopback): push, fetch
into another local cache, what the access log shows, and failures that must not fail a build
(a flipped byte in the registry's storage, a registry that is down, missing credentials).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_registry import Registry
from fixtures_tmpfs import small_tmpfs

from venvstacks.cache.manifest import verify_tree
from venvstacks.cache.remote import ARTIFACT_TYPE, RemoteCache, artifact_parts, cache_tag
from venvstacks.cache.store import LayerCache
from venvstacks.oci.artifacts import layer_tag
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.reference import parse_reference
from venvstacks.oci.transport import TransportOptions

DIGEST = "sha256:" + "d" * 64
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


def make_tree(root: Path, size: int = 50_000) -> Path:
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "lib" / "pkg" / "data.bin").write_bytes(os.urandom(size))
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "link").symlink_to("tool")
    return root


_OPEN: list[RemoteCache] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def remote(registry: Registry, tmp_path: Path, repo: str = "team/cache", **kw: bool) -> RemoteCache:
    options = TransportOptions(plain_http=True, retries=0)
    record = MountRecord(tmp_path / "blobs.json")
    made = RemoteCache(parse_reference(registry.url(repo)), options, record=record, **kw)
    _OPEN.append(made)
    return made


def stored(tmp_path: Path, name: str = "a") -> LayerCache:
    cache = LayerCache(tmp_path / f"cache-{name}")
    source = make_tree(tmp_path / f"src-{name}")
    assert cache.insert("env", DIGEST, source, layer="frame", inputs={"x": 1}) is not None
    return cache


def test_tags_never_collide_with_install_target_tags() -> None:
    tag = cache_tag("env", DIGEST)
    assert tag == "_vscache-v1-env-" + "d" * 64 and len(tag) <= 128
    # Layer names start with a letter or a digit, so their tags never start with "_".
    assert not layer_tag("framework-x").startswith("_")
    assert not layer_tag("app-b@1", "-linux_x86_64").startswith("_")


def test_push_then_fetch_into_another_cache(registry: Registry, tmp_path: Path) -> None:
    cache = stored(tmp_path)
    pusher = remote(registry, tmp_path)
    mark = registry.mark()
    assert pusher.push(cache, "env", DIGEST, "frame") == "uploaded"
    pushed = registry.requests_since(mark)
    # The tag is looked up first; the blob is HEADed before it is uploaded.
    assert pushed[0].method == "GET" and cache_tag("env", DIGEST) in pushed[0].path
    blob_heads = [r for r in pushed if r.method == "HEAD" and "/blobs/" in r.path]
    assert blob_heads and pushed.index(blob_heads[0]) < [r.method for r in pushed].index("PUT")
    document = json.loads(registry.get(f"/v2/team/cache/manifests/{cache_tag('env', DIGEST)}"))
    assert document["artifactType"] == ARTIFACT_TYPE
    artifact_parts(document)

    # Pushing again sends nothing: the tag is there.
    mark = registry.mark()
    assert pusher.push(cache, "env", DIGEST, "frame") == "present"
    assert not {r.method for r in registry.requests_since(mark)} & WRITES
    pusher.close()

    other = LayerCache(tmp_path / "cache-b")
    reader = remote(registry, tmp_path / "b", read_only=True)
    mark = registry.mark()
    entry = reader.fetch(other, "env", DIGEST, "frame")
    assert entry is not None and other.lookup("env", DIGEST) is not None
    assert verify_tree(entry.tree, entry.entries) is None
    assert (entry.tree / "lib" / "pkg" / "data.bin").read_bytes() == (
        tmp_path / "src-a" / "lib" / "pkg" / "data.bin"
    ).read_bytes()
    assert not {r.method for r in registry.requests_since(mark)} & WRITES
    assert reader.fetch(other, "env", "sha256:" + "e" * 64, "frame") is None  # a plain miss
    assert reader.stats.misses == 1 and reader.stats.failures == 0
    # Read-only: no push at all.
    mark = registry.mark()
    assert reader.push(other, "env", DIGEST, "frame") is None
    assert registry.requests_since(mark) == []
    reader.close()


def test_another_repository_mounts_the_blob(registry: Registry, tmp_path: Path) -> None:
    cache = stored(tmp_path)
    first = remote(registry, tmp_path, "team/cache")
    assert first.push(cache, "env", DIGEST, "frame") == "uploaded"
    second = remote(registry, tmp_path, "other/cache")  # same local mount record
    mark = registry.mark()
    assert second.push(cache, "env", DIGEST, "frame") == "mounted"
    document = json.loads(registry.get(f"/v2/other/cache/manifests/{cache_tag('env', DIGEST)}"))
    _, tree = artifact_parts(document)
    quoted = tree.digest.replace(":", "%3A")
    sent = registry.requests_since(mark)
    assert [(r.method, r.status) for r in sent if "mount=" in r.path] == [("POST", 201)]
    assert not any(r.method == "PUT" and quoted in r.path for r in sent)  # the tree: no upload


def _blob_file(registry: Registry, digest: str) -> Path:
    hexa = digest.removeprefix("sha256:")
    return registry.storage / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


def test_a_damaged_blob_is_one_warning_and_a_miss(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = stored(tmp_path)
    remote(registry, tmp_path).push(cache, "env", DIGEST, "frame")
    document = json.loads(registry.get(f"/v2/team/cache/manifests/{cache_tag('env', DIGEST)}"))
    _, tree = artifact_parts(document)
    data = _blob_file(registry, tree.digest)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))

    other = LayerCache(tmp_path / "cache-b")
    reader = remote(registry, tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        assert reader.fetch(other, "env", DIGEST, "frame") is None
    lines = [r.getMessage() for r in caplog.records if "remote cache" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"registry {registry.host}, repository team/cache, layer frame" in lines[0]
    assert "building it locally" in lines[0]
    assert other.entries() == []  # nothing half-stored
    assert not any((other.base / "tmp").glob("env-*"))
    assert not reader.off  # one bad entry does not turn the remote cache off


def test_a_registry_that_is_down_is_one_warning_for_the_whole_build(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = stored(tmp_path)
    registry.stop()
    cache_b = LayerCache(tmp_path / "cache-b")
    client = remote(registry, tmp_path)
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        assert client.fetch(cache_b, "env", DIGEST, "frame") is None
        assert client.fetch(cache_b, "lock", DIGEST, "app") is None
        assert client.push(cache, "env", DIGEST, "frame") is None
    lines = [r.getMessage() for r in caplog.records if "remote cache" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"warning: remote cache: registry {registry.host}, repository team/cache, layer frame:"
    )
    assert "off for the rest of this build" in lines[0]
    assert client.off


def test_missing_credentials_are_one_warning(
    auth_registry: Registry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    for name in ("VENVSTACKS_REGISTRY_USERNAME", "VENVSTACKS_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    cache = stored(tmp_path)
    client = remote(auth_registry, tmp_path)
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        assert client.push(cache, "env", DIGEST, "frame") is None
    lines = [r.getMessage() for r in caplog.records if "remote cache" in r.getMessage()]
    assert len(lines) == 1 and "authentication required" in lines[0], lines
    for name, value in auth_registry.credentials_env().items():
        monkeypatch.setenv(name, value)
    assert remote(auth_registry, tmp_path).push(cache, "env", DIGEST, "frame") == "uploaded"


def _fetch_in_child(host: str, cache_root: str, record: str, digest: str) -> None:
    child = RemoteCache(
        parse_reference(f"oci://{host}/team/cache"),
        TransportOptions(plain_http=True, retries=0),
        record=MountRecord(Path(record)),
    )
    entry = child.fetch(LayerCache(Path(cache_root)), "env", digest, "frame")
    child.close()
    raise SystemExit(0 if entry is not None else 3)


def _big_entry(tmp_path: Path, registry: Registry) -> None:
    cache = LayerCache(tmp_path / "cache-a")
    source = make_tree(tmp_path / "src-big", size=40_000_000)
    assert cache.insert("env", DIGEST, source, layer="frame", inputs={}) is not None
    assert remote(registry, tmp_path).push(cache, "env", DIGEST, "frame") == "uploaded"


def test_a_fetch_killed_midway_leaves_no_entry(registry: Registry, tmp_path: Path) -> None:
    import multiprocessing
    import signal
    import time

    _big_entry(tmp_path, registry)
    target = LayerCache(tmp_path / "cache-b")
    args = (registry.host, str(target.root), str(tmp_path / "b.json"), DIGEST)
    process = multiprocessing.get_context("spawn").Process(target=_fetch_in_child, args=args)
    process.start()
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while time.monotonic() < deadline and not partial:  # wait until the download has begun
        partial = [p for p in (target.base / "tmp").glob("env-*/*") if p.stat().st_size > 0]
        time.sleep(0.005)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert partial, "the download was never seen"
    assert target.entries() == [] and target.lookup("env", DIGEST) is None
    # The next fetch completes, and a prune sweeps what the killed one left.
    assert remote(registry, tmp_path / "b").fetch(target, "env", DIGEST, "frame") is not None
    target.prune(older_than_days=365)
    assert [p.name for p in (target.base / "tmp").iterdir()] == []


def test_two_processes_fetching_at_once_store_one_entry(registry: Registry, tmp_path: Path) -> None:
    import multiprocessing

    _big_entry(tmp_path, registry)
    target = LayerCache(tmp_path / "cache-b")
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_fetch_in_child,
            args=(registry.host, str(target.root), str(tmp_path / f"{n}.json"), DIGEST),
        )
        for n in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [child.exitcode for child in children] == [0, 0]
    entries = target.entries()
    assert len(entries) == 1 and verify_tree(entries[0].tree, entries[0].entries) is None


def test_a_second_push_of_a_build_is_one_tag_listing(registry: Registry, tmp_path: Path) -> None:
    cache = stored(tmp_path)
    client = remote(registry, tmp_path)
    assert client.existing_tags() == set()  # no repository yet
    client.push_all(cache, [("env", DIGEST, "frame"), ("lock", DIGEST, "frame")])
    assert client.stats.pushed == {"uploaded": ["env frame"]}  # no lock entry stored locally
    assert client.existing_tags() == {cache_tag("env", DIGEST)}
    again = remote(registry, tmp_path)
    mark = registry.mark()
    again.push_all(cache, [("env", DIGEST, "frame")])
    sent = registry.requests_since(mark)
    assert [(r.method, r.path.split("?")[0]) for r in sent] == [("GET", "/v2/team/cache/tags/list")]
    assert again.stats.pushed == {"present": ["env frame"]}


def test_next_link_follows_tag_list_pages() -> None:
    from venvstacks.cache.remote import _next_link

    link = '</v2/team/cache/tags/list?last=b&n=2>; rel="next"'
    assert _next_link(link) == "/v2/team/cache/tags/list?last=b&n=2"
    assert _next_link(None) is None
    assert _next_link('</x>; rel="prev"') is None


def test_a_full_disk_while_restoring_is_one_warning_and_nothing_kept(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = LayerCache(tmp_path / "cache-a")
    source = make_tree(tmp_path / "src-big", size=8_000_000)
    assert cache.insert("env", DIGEST, source, layer="frame", inputs={}) is not None
    assert remote(registry, tmp_path).push(cache, "env", DIGEST, "frame") == "uploaded"
    with small_tmpfs(tmp_path / "small", "4m") as small:
        target = LayerCache(small / "cache")
        with caplog.at_level(logging.WARNING, logger="venvstacks"):
            assert remote(registry, tmp_path / "b").fetch(target, "env", DIGEST, "frame") is None
        lines = [r.getMessage() for r in caplog.records if "remote cache" in r.getMessage()]
        assert len(lines) == 1 and "layer frame" in lines[0], lines
        assert "no space left" in lines[0].lower() and "building it locally" in lines[0]
        assert target.entries() == []
        assert [p.name for p in (target.base / "tmp").iterdir()] == []


def test_a_registry_killed_during_a_push_then_the_next_push_completes(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading
    import time

    cache = LayerCache(tmp_path / "cache-a")
    source = make_tree(tmp_path / "src-big", size=20_000_000)
    assert cache.insert("env", DIGEST, source, layer="frame", inputs={}) is not None
    pusher = remote(registry, tmp_path)
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(pusher.push(cache, "env", DIGEST, "frame"))
    )
    with caplog.at_level(logging.WARNING, logger="venvstacks"):
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((cache.base / "tmp").glob("push-*/*")):
            time.sleep(0.002)  # the entry is being packed: the upload comes next
        registry.kill()
        worker.join()
    assert outcome == [None]
    lines = [r.getMessage() for r in caplog.records if "remote cache" in r.getMessage()]
    assert len(lines) == 1 and "not pushed" in lines[0], lines
    assert not list((cache.base / "tmp").glob("push-*"))  # the packed blob is gone

    registry.start()
    assert remote(registry, tmp_path).push(cache, "env", DIGEST, "frame") in ("uploaded", "present")
    fetched = remote(registry, tmp_path / "b").fetch(LayerCache(tmp_path / "b"), "env", DIGEST, "x")
    assert fetched is not None and verify_tree(fetched.tree, fetched.entries) is None
