"""The publish output folder's building blocks: venvstacks.publish.output and .files."""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

from venvstacks.deploy.verify import LayerDifferences, compare, file_manifest
from venvstacks.publish.files import partial_file, sweep_partials
from venvstacks.publish.output import archive_intact, stat_key, transitional_name, write_json


def test_transitional_names_keep_the_suffix() -> None:
    sha = "0123456789abcdef" + "0" * 48
    assert transitional_name("app-x@2.tar.xz", ".tar.xz", sha) == "app-x@2~0123456789abcdef.tar.xz"


def test_archive_intact_checks_size_and_hash_and_trusts_an_unchanged_stat(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.xz"
    path.write_bytes(b"content")
    sha = hashlib.sha256(b"content").hexdigest()
    key = archive_intact(path, 7, sha)
    assert key == stat_key(path)
    assert archive_intact(path, 6, sha) is None
    assert archive_intact(path, 7, "0" * 64) is None
    # A remembered key with its hash avoids reading; a rewrite changes the key (ctime), so the
    # same-size flip is found.
    assert archive_intact(path, 7, "0" * 64, [*stat_key(path), "0" * 64]) is not None
    path.write_bytes(b"contenT")
    assert archive_intact(path, 7, sha, [*key, sha]) is None
    assert archive_intact(tmp_path / "missing", 7, sha) is None


def test_partials_are_swept_only_when_no_writer_holds_them(tmp_path: Path) -> None:
    dead = tmp_path / ".x.tar.xz.dead.partial"
    dead.write_bytes(b"x")
    with partial_file(tmp_path / "y.tar.xz") as (live, sink):
        sink.write(b"y")
        assert sweep_partials(tmp_path) == [dead]
        assert live.exists()
    assert not live.exists()
    held = tmp_path / ".z.partial"
    with held.open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert sweep_partials(tmp_path) == []
    assert sweep_partials(tmp_path) == [held]


def test_json_is_written_whole_with_no_temporary_left(tmp_path: Path) -> None:
    path = tmp_path / "m" / "venvstacks.json"
    write_json(path, {"b": 1, "a": [2]})
    assert path.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["venvstacks.json"]


def test_verify_compares_modes_and_symlink_targets(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "python3.11").write_text("elf")
    (layer / "bin" / "python3.11").chmod(0o755)
    (layer / "bin" / "python").symlink_to("python3.11")
    recorded = file_manifest(layer, None)
    assert compare("layer", recorded, layer) == LayerDifferences("layer", (), (), ())
    (layer / "bin" / "python3.11").chmod(0o644)
    (layer / "bin" / "python").unlink()
    (layer / "bin" / "python").symlink_to("/usr/bin/python3")
    found = compare("layer", recorded, layer)
    assert found.changed == ("bin/python", "bin/python3.11")
    assert found.details == {
        "bin/python": "symlink to /usr/bin/python3, published python3.11",
        "bin/python3.11": "mode 0644, published 0755",
    }
    # Records written before modes were kept compare the content only.
    old = {k: v.split()[0] for k, v in recorded.items()}
    assert compare("layer", old, layer).changed == ("bin/python",)
