"""OCI layouts and deterministic layer tarballs."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from venvstacks.image.layout import REF_NAME, ImageError, OciLayout
from venvstacks.image.media import CONFIG, MANIFEST
from venvstacks.image.tarlayer import open_layer_stream, write_layer


def _tree(root: Path, umask_noise: bool) -> None:
    layer = root / "opt" / "vs" / "rt"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "python").write_text("#!x\n")
    (layer / "bin" / "python").chmod(0o775 if umask_noise else 0o700)
    (layer / "bin" / "python3").symlink_to("python")
    (layer / "lib-b").mkdir()
    (layer / "lib-b" / "z.txt").write_text("z")
    (layer / "lib-b" / "z.txt").chmod(0o664 if umask_noise else 0o600)
    (layer / "lib").mkdir()
    (layer / "lib" / "a.txt").write_text("a")
    if umask_noise:
        os.utime(layer / "lib" / "a.txt", (5000, 5000))


@pytest.mark.parametrize("layer_format", ["gzip", "zstd"])
def test_same_tree_same_digests(tmp_path: Path, layer_format: str) -> None:
    blobs = []
    for noise in (False, True):
        root = tmp_path / f"root-{noise}"
        _tree(root, noise)
        blobs.append(
            write_layer(
                root,
                [PurePosixPath("opt"), PurePosixPath("opt/vs")],
                PurePosixPath("opt/vs/rt"),
                tmp_path / "out",
                layer_format=layer_format,
                clamp_mtime=1000,
            )
        )
    # Modes (umask noise) are normalised and later mtimes clamped: the same bytes.
    first, second = blobs
    assert first.descriptor == second.descriptor and first.diff_id == second.diff_id
    assert first.descriptor.size > 0
    with first.path.open("rb") as blob, open_layer_stream(blob, first.descriptor.media_type) as tar:
        members = [(m.name, m.mode, m.uid, m.uname, m.mtime) for m in tar]
    names = [m[0] for m in members]
    assert names == sorted(names, key=str.encode)
    assert names[:3] == ["opt", "opt/vs", "opt/vs/rt"]
    assert all(m[2] == 0 and m[3] == "" and m[4] <= 1000 for m in members)
    modes = {m[0]: m[1] for m in members}
    assert modes["opt/vs/rt/bin/python"] == 0o755 and modes["opt/vs/rt/lib-b/z.txt"] == 0o644


def test_gzip_header_has_no_name_and_no_time(tmp_path: Path) -> None:
    _tree(tmp_path / "r", False)
    blob = write_layer(
        tmp_path / "r",
        [],
        PurePosixPath("opt"),
        tmp_path / "o",
        layer_format="gzip",
        clamp_mtime=10,
    )
    head = blob.path.read_bytes()[:10]
    assert head[3] == 0 and head[4:8] == b"\0\0\0\0"  # no FNAME flag, mtime 0
    raw = gzip.decompress(blob.path.read_bytes())
    import hashlib

    assert "sha256:" + hashlib.sha256(raw).hexdigest() == blob.diff_id


def test_layout_tags_and_finds(tmp_path: Path) -> None:
    layout = OciLayout.create(tmp_path / "l")
    config = layout.write_blob(CONFIG, b"{}")
    first = layout.write_blob(MANIFEST, json.dumps({"config": config.to_json()}).encode())
    layout.tag(first, "one")
    second = layout.write_blob(MANIFEST, b'{"x": 1}')
    layout.tag(second, "two")
    layout.tag(second, "one")  # moves the tag
    assert layout.find("one").digest == second.digest
    assert [d.annotations[REF_NAME] for d in layout.index()] == ["two", "one"]
    with pytest.raises(ImageError, match="no image tagged 'three'"):
        layout.find("three")
    assert OciLayout.open(tmp_path / "l").read_blob(config) == b"{}"


def test_a_damaged_blob_is_refused(tmp_path: Path) -> None:
    layout = OciLayout.create(tmp_path / "l")
    descriptor = layout.write_blob(CONFIG, b'{"a": 1}')
    layout.blob_path(descriptor.digest).write_bytes(b'{"a": 2}')
    with pytest.raises(ImageError, match="damaged"):
        layout.read_blob(descriptor)


def test_a_folder_that_is_not_a_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("mine")
    with pytest.raises(ImageError, match="not an OCI image layout"):
        OciLayout.create(tmp_path)
    with pytest.raises(ImageError, match="not an OCI image layout"):
        OciLayout.open(tmp_path)


def test_layer_streams_of_plain_tar(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    buffer.seek(0)
    with open_layer_stream(buffer, "application/vnd.oci.image.layer.v1.tar") as tar:
        assert [m.name for m in tar] == ["x"]
