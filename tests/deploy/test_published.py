"""Reading and checking published metadata before deploying: venvstacks.deploy.published."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from venvstacks.deploy.published import (
    PublishedLayer,
    check_entry,
    load_published,
    select_published,
)
from venvstacks.errors import DeployError, SelectionError

SHA = "ab" * 32


def _meta(
    target: str, runtime: str = "cpython-3.11", required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "layer_name": target.split("@")[0],
        "install_target": target,
        "runtime_layer": runtime,
        "archive_name": f"{target}.tar.xz",
        "archive_size": 10,
        "archive_hashes": {"sha256": SHA},
    }
    if required is not None:
        meta["required_layers"] = required
    meta.update(extra)
    return meta


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("archive_name", "../x.tar.xz"),
        ("archive_name", "/etc/passwd"),
        ("archive_name", "a/../../x.tar.xz"),
        ("archive_name", "C:\\x.tar.xz"),
        ("archive_name", ""),
        ("install_target", "../evil"),
        ("install_target", "a/b"),
        ("runtime_layer", ".."),
        ("required_layers", ["ok", "../no"]),
        ("archive_size", -1),
        ("archive_size", "10"),
        ("archive_hashes", {"sha256": "xyz"}),
    ],
)
def test_unusable_entries_are_refused_by_layer_and_key(key: str, value: object) -> None:
    with pytest.raises(DeployError) as caught:
        check_entry(_meta("app-x", required=[], **{key: value}), Path("m.json"))
    assert "layer app-x" in str(caught.value) and key.split(".")[0] in str(caught.value)


def test_plain_relative_archive_names_are_accepted() -> None:
    check_entry(_meta("app-x", required=[], archive_name="sub/app-x.tar.xz"), Path("m.json"))
    check_entry(_meta("app-x@2", required=["framework-y@3"]), Path("m.json"))


def _layers() -> list[PublishedLayer]:
    return [
        PublishedLayer("runtimes", _meta("cpython-3.11")),
        PublishedLayer("frameworks", _meta("framework-y", required=[])),
        PublishedLayer("applications", _meta("app-x", required=["framework-y"])),
    ]


def test_selection_adds_needed_layers_and_names_a_missing_one(tmp_path: Path) -> None:
    runtime, framework, app = _layers()
    assert select_published([runtime, framework, app], ["app-x"]) == [runtime, framework, app]
    assert select_published([app], [], [runtime, framework]) == [runtime, framework, app]
    with pytest.raises(DeployError, match="layer app-x needs framework-y"):
        select_published([runtime, app], [])
    with pytest.raises(SelectionError) as caught:
        select_published([runtime, app], ["app-xx"], source="oci://h/r:t")
    assert str(caught.value) == (
        "oci://h/r:t: --include 'app-xx' matches no published layer (did you mean 'app-x'?); "
        "published layers: cpython-3.11, x"
    )
    with pytest.raises(SelectionError, match=f"^{re.escape(str(tmp_path))}: --include 'nope' "):
        select_published([runtime, app], ["nope"], where=tmp_path)
    (tmp_path / "__venvstacks__").mkdir()
    (tmp_path / "__venvstacks__" / "venvstacks.json").write_text("{}")
    with pytest.raises(SelectionError, match=f"^{re.escape(str(tmp_path))}/__venvstacks__/"):
        select_published([runtime, app], ["nope"], where=tmp_path)


def test_partial_manifest_is_completed_from_layer_files(tmp_path: Path) -> None:
    meta_dir = tmp_path / "__venvstacks__"
    (meta_dir / "env_metadata").mkdir(parents=True)
    runtime, framework, app = _layers()
    for layer in (runtime, framework, app):
        data = dict(layer.meta)
        if layer.category == "runtimes":
            data["bound_to_implementation"] = True
        if layer.category == "applications":
            data["app_launch_module"] = "x"
        (meta_dir / "env_metadata" / f"{layer.target}.json").write_text(json.dumps(data))
    manifest = {"layers": {"runtimes": [], "frameworks": [], "applications": [dict(app.meta)]}}
    (meta_dir / "venvstacks.json").write_text(json.dumps(manifest))
    listed, extra = load_published(tmp_path)
    assert [l.target for l in listed] == ["app-x"]
    assert sorted((l.category, l.target) for l in extra) == [
        ("frameworks", "framework-y"),
        ("runtimes", "cpython-3.11"),
    ]
    chosen = select_published(listed, [], extra)
    assert [l.target for l in chosen] == ["cpython-3.11", "framework-y", "app-x"]


def test_a_manifest_of_the_wrong_shape_is_one_error(tmp_path: Path) -> None:
    meta_dir = tmp_path / "__venvstacks__"
    meta_dir.mkdir()
    for text in ("[1, 2]", '{"layers": 3}', '{"layers": {"runtimes": 4}}', "{"):
        (meta_dir / "venvstacks.json").write_text(text)
        with pytest.raises(DeployError, match=r"venvstacks\.json"):
            load_published(tmp_path)
