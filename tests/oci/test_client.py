"""The distribution client against a real registry (Debian's docker-registry on loopback):
HEAD first, cross-repository mount, streamed upload, verified download, manifests, Basic auth,
TLS, and the failures (registry down, 401, 404, digest mismatch, registry killed mid-upload).
Request counts come from the registry's access log."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from fixtures_registry import Registry

from venvstacks.oci.auth import Credentials
from venvstacks.oci.client import MANIFEST_MEDIA_TYPE, BlobPush, Descriptor, RegistryClient
from venvstacks.oci.errors import (
    DigestMismatchError,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from venvstacks.oci.reference import parse_reference
from venvstacks.oci.transport import TransportOptions


def _blob(tmp_path: Path, size: int, seed: bytes = b"x") -> tuple[Path, Descriptor]:
    path = tmp_path / f"blob-{seed.hex()}-{size}"
    block = hashlib.sha256(seed).digest() * 32768  # 1 MiB, not all zeros
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[:left])
            left -= len(block)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path, Descriptor("application/octet-stream", f"sha256:{digest}", size)


def _client(registry: Registry, retries: int = 0, **credentials: str) -> RegistryClient:
    options = TransportOptions(
        plain_http=not registry.tls,
        ca_file=registry.ca_file if registry.tls else None,
        retries=retries,
        backoff=0.1,
    )
    creds = Credentials(**credentials, source="test") if credentials else None
    client = RegistryClient(parse_reference(registry.url("team/stack")), options, creds)
    client.transport.credentials = creds  # never the machine's own config.json
    return client


def _push(
    client: RegistryClient, repo: str, blob: tuple[Path, Descriptor], **kw: object
) -> BlobPush:
    path, desc = blob
    return client.push_blob(repo, path, desc.digest, desc.size, **kw)  # type: ignore[arg-type]


def test_push_heads_first_and_uploads_once(registry: Registry, tmp_path: Path) -> None:
    blob = _blob(tmp_path, 3 << 20)
    with _client(registry) as client:
        mark = registry.mark()
        assert _push(client, "team/stack", blob) is BlobPush.UPLOADED
        first = [(r.method, r.status) for r in registry.requests_since(mark)]
        assert first == [("HEAD", 404), ("POST", 202), ("PUT", 201)]
        mark = registry.mark()
        assert _push(client, "team/stack", blob) is BlobPush.PRESENT
        assert [(r.method, r.status) for r in registry.requests_since(mark)] == [("HEAD", 200)]


def test_blob_in_another_repository_is_mounted_not_uploaded(
    registry: Registry, tmp_path: Path
) -> None:
    blob = _blob(tmp_path, 2 << 20)
    with _client(registry) as client:
        _push(client, "team/one", blob)
        mark = registry.mark()
        assert _push(client, "team/two", blob, mount_from=["team/one"]) is BlobPush.MOUNTED
        seen = registry.requests_since(mark)
        assert [(r.method, r.status) for r in seen] == [("HEAD", 404), ("POST", 201)]
        assert "mount=" in seen[1].path and "from=team%2Fone" in seen[1].path
        assert client.blob_size("team/two", blob[1].digest) == blob[1].size


def test_a_failed_mount_falls_back_to_an_upload(registry: Registry, tmp_path: Path) -> None:
    blob = _blob(tmp_path, 1 << 20)
    with _client(registry) as client:
        mark = registry.mark()
        assert _push(client, "team/two", blob, mount_from=["team/never"]) is BlobPush.UPLOADED
        methods = [(r.method, r.status) for r in registry.requests_since(mark)]
        assert methods == [("HEAD", 404), ("POST", 202), ("PUT", 201)]


def test_download_is_verified_and_atomic(registry: Registry, tmp_path: Path) -> None:
    path, desc = _blob(tmp_path, 5 << 20)
    with _client(registry) as client:
        _push(client, "team/stack", (path, desc))
        dest = tmp_path / "out" / "layer.tar.xz"
        client.fetch_blob("team/stack", desc, dest, layer="app-a")
        assert dest.read_bytes() == path.read_bytes()
        # Flip one byte of the stored blob: the download fails and leaves nothing behind.
        hexdigest = desc.digest.split(":")[1]
        stored = (
            registry.storage / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
        )
        data = bytearray(stored.read_bytes())
        data[1000] ^= 0xFF
        stored.write_bytes(bytes(data))
        dest2 = tmp_path / "out2" / "layer.tar.xz"
        with pytest.raises(DigestMismatchError) as caught:
            client.fetch_blob("team/stack", desc, dest2, layer="app-a")
        message = str(caught.value)
        assert f"registry {registry.host}, repository team/stack, layer app-a:" in message
        assert "\n" not in message
        assert list((tmp_path / "out2").iterdir()) == []


def test_manifests_round_trip_and_unknown_tags_are_404(registry: Registry) -> None:
    with _client(registry) as client:
        config = client.push_bytes("team/stack", b'{"a": 1}', "application/vnd.test+json")
        document = (
            b'{"schemaVersion":2,"mediaType":"%s","artifactType":"application/vnd.test",'
            b'"config":{"mediaType":"application/vnd.test+json","digest":"%s","size":%d},"layers":[]}'
            % (MANIFEST_MEDIA_TYPE.encode(), config.digest.encode(), config.size)
        )
        pushed = client.put_manifest("team/stack", "v1", document, MANIFEST_MEDIA_TYPE)
        fetched, desc = client.get_manifest("team/stack", "v1")
        assert desc.digest == pushed.digest and fetched["artifactType"] == "application/vnd.test"
        assert client.fetch_bytes("team/stack", config) == b'{"a": 1}'
        with pytest.raises(
            RegistryNotFoundError, match=r"repository team/stack: GET tag nope answered 404"
        ):
            client.get_manifest("team/stack", "nope")
        with pytest.raises(RegistryNotFoundError, match="repository team/missing"):
            client.get_manifest("team/missing", "v1")


def test_registry_down_is_one_line_naming_host_and_port(tmp_path: Path) -> None:
    port = Registry(tmp_path).port  # a free port nobody listens on
    client = RegistryClient(
        parse_reference(f"oci://127.0.0.1:{port}/team/stack"),
        TransportOptions(plain_http=True, retries=2, backoff=0.05),
    )
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as caught:
        client.ping("team/stack")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"registry 127.0.0.1:{port}, repository team/stack:")
    assert "connection refused" in message and "\n" not in message


def test_basic_auth(auth_registry: Registry, tmp_path: Path) -> None:
    blob = _blob(tmp_path, 1 << 20)
    with _client(auth_registry, username="vs", password="secret") as client:
        assert _push(client, "team/stack", blob) is BlobPush.UPLOADED
    statuses = [(r.method, r.status) for r in auth_registry.requests()]
    assert statuses[0] == ("HEAD", 401)  # the challenge, once; then every request carries Basic
    assert all(status != 401 for _, status in statuses[1:])
    with (
        _client(auth_registry, username="vs", password="wrong") as client,
        pytest.raises(
            RegistryAuthError,
            match=r"authentication failed with the credentials of vs \(from test\)",
        ),
    ):
        client.ping("team/stack")
    with _client(auth_registry) as client, pytest.raises(RegistryAuthError, match="no credentials"):
        client.ping("team/stack")


def test_tls_with_a_ca_file_and_insecure(tls_registry: Registry, tmp_path: Path) -> None:
    blob = _blob(tmp_path, 1 << 20)
    with _client(tls_registry, username="vs", password="secret") as client:
        assert _push(client, "team/stack", blob) is BlobPush.UPLOADED
    reference = parse_reference(tls_registry.url("team/stack"))
    untrusted = RegistryClient(reference, TransportOptions(retries=0), Credentials("vs", "secret"))
    with untrusted, pytest.raises(RegistryError, match=r"TLS certificate not trusted .*--ca-file"):
        untrusted.ping("team/stack")
    insecure = RegistryClient(
        reference, TransportOptions(insecure=True, retries=0), Credentials("vs", "secret")
    )
    with insecure:
        assert insecure.blob_size("team/stack", blob[1].digest) == blob[1].size


def _kill_during_upload(registry: Registry, min_bytes: int) -> None:
    uploads = registry.storage / "docker/registry/v2/repositories"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(uploads.glob("*/*/_uploads/*/data")) if uploads.exists() else []
        if any(p.stat().st_size >= min_bytes for p in parts if p.exists()):
            registry.kill()
            return
        time.sleep(0.01)
    raise AssertionError("the upload never started")


def test_registry_killed_mid_upload_then_a_retry_completes(
    registry: Registry, tmp_path: Path
) -> None:
    path, desc = _blob(tmp_path, 200 << 20)
    with _client(registry) as client:
        killer = threading.Thread(target=_kill_during_upload, args=(registry, 20 << 20))
        killer.start()
        with pytest.raises(
            RegistryUnavailableError,
            match=f"registry {registry.host}, repository team/stack, layer big:",
        ):
            client.push_blob("team/stack", path, desc.digest, desc.size, layer="big")
        killer.join()
    registry.start()
    with _client(registry) as client:
        assert (
            client.blob_size("team/stack", desc.digest) is None
        )  # nothing half-written as if good
        assert client.push_blob("team/stack", path, desc.digest, desc.size) is BlobPush.UPLOADED
        client.fetch_blob("team/stack", desc, tmp_path / "back")
    assert (tmp_path / "back").stat().st_size == desc.size


def test_retries_ride_out_a_registry_restart(registry: Registry, tmp_path: Path) -> None:
    path, desc = _blob(tmp_path, 200 << 20)

    def kill_and_restart() -> None:
        _kill_during_upload(registry, 20 << 20)
        time.sleep(0.5)
        registry.start()

    with _client(registry, retries=6) as client:
        helper = threading.Thread(target=kill_and_restart)
        helper.start()
        assert client.push_blob("team/stack", path, desc.digest, desc.size) is BlobPush.UPLOADED
        helper.join()
        assert client.blob_size("team/stack", desc.digest) == desc.size
