"""Parsing `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`."""

from __future__ import annotations

import pytest

from venvstacks.errors import StackError
from venvstacks.oci.artifacts import layer_tag, oci_platform
from venvstacks.oci.reference import Reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://127.0.0.1:5000/stack", Reference("127.0.0.1:5000", "stack")),
        ("oci://ghcr.io/org/team/stack:v1", Reference("ghcr.io", "org/team/stack", "v1")),
        ("oci://localhost:5000/a/b:latest", Reference("localhost:5000", "a/b", "latest")),
        (f"oci://reg.example/a@{DIGEST}", Reference("reg.example", "a", None, DIGEST)),
        ("oci://[::1]:5000/a", Reference("[::1]:5000", "a")),
    ],
)
def test_valid_references(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(expected) == text


def test_registry_names_host_and_port() -> None:
    assert parse_reference("oci://127.0.0.1:5000/a").registry() == "127.0.0.1:5000"
    assert parse_reference("oci://ghcr.io/a").registry(tls=True) == "ghcr.io:443"
    assert parse_reference("oci://example/a").registry(tls=False) == "example:80"
    assert parse_reference("oci://[::1]:5000/a").hostname == "::1"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("http://127.0.0.1/a", "starts with oci://"),
        ("oci://127.0.0.1:5000", "expected oci://HOST"),
        ("oci://127.0.0.1:5000/UPPER", "not a valid repository name"),
        ("oci://127.0.0.1:5000/a:bad@tag", "not a sha256 digest"),
        ("oci://127.0.0.1:5000/a:-x", "not a valid OCI tag"),
        ("oci://host/a//b", "not a valid repository name"),
    ],
)
def test_invalid_references(text: str, problem: str) -> None:
    with pytest.raises(StackError, match=problem):
        parse_reference(text)


def test_tag_refused_where_only_a_repository_is_wanted() -> None:
    with pytest.raises(StackError, match="without a tag"):
        parse_reference("oci://h:1/a:v1", allow_tag=False)


def test_layer_tags_are_valid_oci_tags() -> None:
    assert layer_tag("app-b@1") == "app-b-1"
    assert layer_tag("cpython-3.11", "-linux_x86_64") == "cpython-3.11-linux_x86_64"
    assert layer_tag(".hidden") == "_.hidden"
    assert len(layer_tag("x" * 300)) == 128


def test_platforms_use_oci_names() -> None:
    assert oci_platform("linux_x86_64") == {"os": "linux", "architecture": "amd64"}
    assert oci_platform("macosx_arm64") == {"os": "darwin", "architecture": "arm64"}
    assert oci_platform("win_amd64") == {"os": "windows", "architecture": "amd64"}
