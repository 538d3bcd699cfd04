"""Image pushes against a real registry: HEAD first, cross-repository mounts from the recorded
repositories, an upload when the registry refuses a mount, and platform images found by tag."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures_registry import Registry

from venvstacks.image.layout import OciLayout
from venvstacks.image.media import CONFIG, MANIFEST, Descriptor, canonical_json, manifest_document
from venvstacks.image.platforms import write_index
from venvstacks.image.refs import parse_image_ref
from venvstacks.image.registry import RegistrySink, connect
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.transport import TransportOptions

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _image(
    layout: OciLayout, *contents: bytes, arch: str = "amd64", name: str = "app"
) -> tuple[list[Descriptor], bytes]:
    """An image's blobs in `layout` (stand-in layer blobs, then the config); the manifest."""
    layers = [layout.write_blob(LAYER, content) for content in contents]
    config = layout.write_blob(
        CONFIG,
        canonical_json({"architecture": arch, "os": "linux", "config": {"Labels": {"name": name}}}),
    )
    manifest = canonical_json(manifest_document(config, layers, {}))
    return [*layers, config], manifest


Sinks = Callable[[str, MountRecord], RegistrySink]


@pytest.fixture
def sink_for(registry: Registry) -> Iterator[Sinks]:
    """Sinks on repositories of `registry`, their connections closed afterwards."""
    made: list[RegistrySink] = []

    def make(repo: str, record: MountRecord) -> RegistrySink:
        ref = parse_image_ref(registry.url(repo), "--to")
        made.append(
            RegistrySink(connect(ref, TransportOptions(plain_http=True, retries=0)), ref, record)
        )
        return made[-1]

    yield make
    for sink in made:
        sink.client.close()


def _push(sink: RegistrySink, layout: OciLayout, blobs: list[Descriptor], manifest: bytes) -> None:
    for blob in blobs:
        sink.put_blob(blob, layout)
    sink.put_manifest(MANIFEST, manifest, "latest")


def test_a_new_repository_mounts_the_recorded_blobs(
    registry: Registry, sink_for: Sinks, tmp_path: Path
) -> None:
    layout = OciLayout.create(tmp_path / "layout")
    record = MountRecord(tmp_path / "blobs.json")
    shared = [b"runtime " * 5000, b"framework " * 9000]
    first_blobs, first = _image(layout, *shared, b"app one")
    second_blobs, second = _image(layout, *shared, b"app two", name="two")

    _push(sink_for("team/one", record), layout, first_blobs, first)
    mark = registry.mark()
    sink = sink_for("team/two", record)
    _push(sink, layout, second_blobs, second)

    assert (sink.count.mounted, sink.count.uploaded, sink.count.present) == (2, 2, 0)
    assert sink.count.uploaded_bytes == second_blobs[2].size + second_blobs[3].size
    requests = registry.requests_since(mark)
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.path]
    assert {(r.path.split("mount=")[1].split("&")[0], r.status) for r in mounts} == {
        (b.digest.replace(":", "%3A"), 201) for b in second_blobs[:2]
    }
    assert all("from=team%2Fone" in r.path for r in mounts)
    puts = [r for r in requests if r.method == "PUT" and "/blobs/uploads/" in r.path]
    assert len(puts) == 2  # the app layer and the config
    # The record now names both repositories for the shared blobs, the newest first.
    assert record.candidates(sink.client.registry, second_blobs[0].digest, "team/three") == [
        "team/two",
        "team/one",
    ]


def test_a_refused_mount_falls_back_to_an_upload(
    registry: Registry, sink_for: Sinks, tmp_path: Path
) -> None:
    """A stale record (the repository it names lacks the blob): the registry answers 202 to the
    mount and the blob is uploaded in that same upload session."""
    layout = OciLayout.create(tmp_path / "layout")
    record = MountRecord(tmp_path / "blobs.json")
    blobs, manifest = _image(layout, b"layer " * 1000)
    sink = sink_for("team/new", record)
    record.add(sink.client.registry, "team/gone", [blobs[0].digest])
    mark = registry.mark()
    _push(sink, layout, blobs, manifest)
    assert (sink.count.mounted, sink.count.uploaded) == (0, 2)
    requests = registry.requests_since(mark)
    refused = [r for r in requests if r.method == "POST" and "mount=" in r.path]
    assert [r.status for r in refused] == [202]
    assert "from=team%2Fgone" in refused[0].path
    uploaded = registry.get(f"/v2/team/new/blobs/{blobs[0].digest}")
    assert uploaded == b"layer " * 1000


def test_pushing_again_only_heads(registry: Registry, sink_for: Sinks, tmp_path: Path) -> None:
    layout = OciLayout.create(tmp_path / "layout")
    record = MountRecord(tmp_path / "blobs.json")
    blobs, manifest = _image(layout, b"a" * 100, b"b" * 100)
    _push(sink_for("solo", record), layout, blobs, manifest)
    mark = registry.mark()
    again = sink_for("solo", record)
    _push(again, layout, blobs, manifest)
    assert (again.count.present, again.count.uploaded, again.count.mounted) == (3, 0, 0)
    methods = [r.method for r in registry.requests_since(mark) if "/v2/solo/" in r.path]
    assert methods.count("POST") == 0 and methods.count("HEAD") == 3


def test_an_index_over_platform_images_in_a_registry(
    registry: Registry, sink_for: Sinks, tmp_path: Path
) -> None:
    layout = OciLayout.create(tmp_path / "layout")
    record = MountRecord(tmp_path / "blobs.json")
    sink = sink_for("multi", record)
    for arch in ("amd64", "arm64"):
        blobs, manifest = _image(layout, b"common", arch=arch)
        for blob in blobs:
            sink.put_blob(blob, layout)
        sink.put_manifest(MANIFEST, manifest, f"v1-linux-{arch}")
    assert sink.find_image("v1-linux-s390x") is None
    index, entries = write_index(sink, "oci://multi", "v1", ["linux/amd64", "linux/arm64"])
    stored = json.loads(registry.get("/v2/multi/manifests/v1"))
    assert [m["platform"]["architecture"] for m in stored["manifests"]] == ["amd64", "arm64"]
    assert [m["digest"] for m in stored["manifests"]] == [e.digest for e in entries]
    assert index.digest.startswith("sha256:")
