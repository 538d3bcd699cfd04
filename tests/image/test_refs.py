"""Parsing BASE and DEST image references."""

from __future__ import annotations

import pytest

from venvstacks.image.layout import ImageError
from venvstacks.image.refs import ImageRef, parse_image_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci-layout:/tmp/x", ImageRef("oci-layout", "/tmp/x")),
        ("oci-layout:/tmp/x:v1.2", ImageRef("oci-layout", "/tmp/x", "", "v1.2")),
        ("oci-layout:rel/dir:latest", ImageRef("oci-layout", "rel/dir", "", "latest")),
        ("oci://127.0.0.1:5000/apps/web", ImageRef("oci", "127.0.0.1:5000", "apps/web")),
        ("oci://reg.example/web:2", ImageRef("oci", "reg.example", "web", "2")),
    ],
)
def test_valid_references(text: str, expected: ImageRef) -> None:
    ref = parse_image_ref(text)
    assert ref == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker://x/y", "expected oci-layout:DIR"),
        ("oci-layout:", "no folder"),
        ("oci://host", "expected oci://HOST"),
        ("oci://host/UPPER", "expected oci://HOST"),
        ("oci://host/repo@sha256:abc", "digests are not accepted"),
    ],
)
def test_invalid_references_name_the_option(text: str, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        parse_image_ref(text, "--base")
    assert str(info.value).startswith("--base")
