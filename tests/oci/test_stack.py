"""Pushing a publish output folder to a real registry and fetching it back: layer artifacts,
the stack index, tags, only-missing blobs, and downloads limited to what is needed."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fixtures_registry import Registry

from venvstacks.oci.artifacts import LAYER_ARTIFACT_TYPE, STACK_ARTIFACT_TYPE
from venvstacks.oci.client import BlobPush, RegistryClient
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.reference import parse_reference
from venvstacks.oci.stack import fetch_published, push_published, read_published
from venvstacks.oci.transport import TransportOptions


def _archive(folder: Path, target: str, payload: bytes) -> dict[str, Any]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        info = tarfile.TarInfo(f"{target}/data.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = buffer.getvalue()
    name = f"{target}.tar.xz"
    (folder / name).write_bytes(data)
    return {
        "layer_name": target.split("@")[0],
        "install_target": target,
        "lock_version": 1,
        "requirements_hash": "sha256:00",
        "archive_name": name,
        "archive_size": len(data),
        "archive_hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "archive_build": 1,
    }


def _publish_folder(folder: Path, app_payload: bytes = b"app v1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    layers = {
        "runtimes": [_archive(folder, "cpython-3.11", b"runtime")],
        "frameworks": [_archive(folder, "framework-f", b"framework")],
        "applications": [_archive(folder, "app-a@1", app_payload)],
    }
    meta = folder / "__venvstacks__"
    meta.mkdir(exist_ok=True)
    (meta / "venvstacks.json").write_text(json.dumps({"layers": layers}, indent=2))
    return folder


def _client(registry: Registry) -> RegistryClient:
    client = RegistryClient(
        parse_reference(registry.url("team/stack")), TransportOptions(plain_http=True, retries=0)
    )
    client.transport.credentials = None
    return client


def test_push_then_fetch_only_what_is_needed(registry: Registry, tmp_path: Path) -> None:
    folder = _publish_folder(tmp_path / "published")
    record = MountRecord(tmp_path / "blobs.json")
    reference = parse_reference(registry.url("team/stack"))
    with _client(registry) as client:
        report = push_published(
            client, reference, read_published(folder, "linux_x86_64"),
            tag="v1", platform="linux_x86_64", record=record,
        )  # fmt: skip
        assert [(l.layer, l.tag, l.blob) for l in report.layers] == [
            ("cpython-3.11", "cpython-3.11", BlobPush.UPLOADED),
            ("framework-f", "framework-f", BlobPush.UPLOADED),
            ("app-a", "app-a-1", BlobPush.UPLOADED),
        ]
        index, _ = client.get_manifest("team/stack", "v1")
        assert [m["artifactType"] for m in index["manifests"]] == [STACK_ARTIFACT_TYPE] + [
            LAYER_ARTIFACT_TYPE
        ] * 3
        assert index["manifests"][1]["platform"] == {"os": "linux", "architecture": "amd64"}
        layer, _ = client.get_manifest("team/stack", "app-a-1")
        assert layer["annotations"]["dev.venvstacks.layer.install-target"] == "app-a@1"
        assert (
            layer["layers"][0]["annotations"]["org.opencontainers.image.title"] == "app-a@1.tar.xz"
        )

        def needed(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
            return [m for _, m in layers if m["install_target"] != "cpython-3.11"]

        dest = tmp_path / "fetched"
        _, fetched = fetch_published(client, reference.with_tag("v1"), dest, needed)
        assert fetched == ["framework-f", "app-a"]
        assert sorted(p.name for p in dest.iterdir()) == [
            "__venvstacks__", "app-a@1.tar.xz", "framework-f.tar.xz",
        ]  # fmt: skip
        assert (dest / "app-a@1.tar.xz").read_bytes() == (folder / "app-a@1.tar.xz").read_bytes()

        # Republish after an app change: only the app's archive is uploaded.
        _publish_folder(folder, b"app v2")
        again = push_published(
            client, reference, read_published(folder, "linux_x86_64"),
            tag="v1", platform="linux_x86_64", record=record,
        )  # fmt: skip
        assert [l.blob for l in again.layers] == [
            BlobPush.PRESENT, BlobPush.PRESENT, BlobPush.UPLOADED,
        ]  # fmt: skip

        # Another repository of the same registry mounts instead of uploading.
        other = parse_reference(registry.url("team/other"))
        mark = registry.mark()
        third = push_published(
            client, other, read_published(folder, "linux_x86_64"),
            tag="latest", platform="linux_x86_64", record=record,
        )  # fmt: skip
        assert {l.blob for l in third.layers} == {BlobPush.MOUNTED}
        mounts = [
            r for r in registry.requests_since(mark)
            if r.method == "POST" and "team/other" in r.path and "mount=" in r.path
        ]  # fmt: skip
        assert len(mounts) == 3
