"""Tests for venvstacks.hashing: the ``sha256:<hex>`` content hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from venvstacks.hashing import hash_bytes, hash_file, hash_strings


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("items", "data"),
    [
        ([], b""),
        (["abc"], b"abc"),
        (["ab", "c"], b"abc"),  # no separators: callers make items self-delimiting
        (["py_version=3.11", "linux_target=glibc@2.28"], b"py_version=3.11linux_target=glibc@2.28"),
        (["caf\u00e9", "\u2603"], "caf\u00e9\u2603".encode()),  # UTF-8
    ],
)
def test_hash_strings_is_sha256_of_utf8_concatenation(items: list[str], data: bytes) -> None:
    assert hash_strings(items) == _sha(data)


def test_hash_strings_accepts_any_iterable_and_is_order_sensitive() -> None:
    assert hash_strings(iter(["a", "b"])) == hash_strings(["a", "b"])
    assert hash_strings(["a", "b"]) != hash_strings(["b", "a"])


def test_hash_bytes_known_value() -> None:
    assert hash_bytes(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 17])
def test_hash_file_matches_hash_bytes(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert hash_file(path) == hash_bytes(data) == _sha(data)
    assert hash_file(str(path)) == hash_bytes(data)
