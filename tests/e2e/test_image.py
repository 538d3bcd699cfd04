"""End to end: `venvstacks image` through the installed CLI, checked with skopeo, umoci, runc, podman."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures_images import Podman, add_whiteout_layer, runc_run
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


def _inspect(layout: Path, tag: str) -> dict[str, object]:
    out = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:{tag}"], capture_output=True, text=True, check=True
    )
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def _image(
    project: StackProject, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return project.run(
        "image",
        str(project.spec),
        *args,
        "--lock-if-needed",
        *project.source_options(),
        check=check,
    )


@pytest.fixture
def image_stack(basic_stack: StackProject, base_layout: Path) -> StackProject:
    return basic_stack


def test_two_app_images_share_layers_and_run(
    image_stack: StackProject, base_layout: Path, tmp_path: Path, podman: Podman
) -> None:
    dest = tmp_path / "images"
    base = f"oci-layout:{base_layout}:bookworm"
    first = _image(image_stack, "a", "--base", base, "--to", f"oci-layout:{dest}:a")
    second = _image(image_stack, "b", "--base", base, "--to", f"oci-layout:{dest}:b")
    a, b = _inspect(dest, "a"), _inspect(dest, "b")
    base_layers = _inspect(base_layout, "bookworm")["Layers"]
    assert a["Layers"][: len(base_layers)] == base_layers  # type: ignore[index]
    assert b["Layers"][: len(base_layers)] == base_layers  # type: ignore[index]
    # a: runtime, frame, frame2, app; b: runtime, app. The runtime layer is shared byte for byte.
    assert len(a["Layers"]) == len(base_layers) + 4  # type: ignore[arg-type]
    assert a["Layers"][len(base_layers)] == b["Layers"][len(base_layers)]  # type: ignore[index]
    labels = a["Labels"]
    assert labels["io.venvstacks.app"] == "app-a"  # type: ignore[index]
    bundle = tmp_path / "bundle-a"
    run = runc_run(dest, "a", bundle)
    assert run.returncode == 0, run.stderr
    assert "vs_app_a" in run.stdout and "/opt/venvstacks/framework-frame/" in run.stdout
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--preserve-digests",
            f"oci:{dest}:b",
            f"{podman.storage}localhost/app-b:test",
        ],
        check=True,
        capture_output=True,
    )
    run_b = podman.run("localhost/app-b:test")
    assert run_b.returncode == 0, run_b.stderr
    assert "app-b" in run_b.stdout and "42" in run_b.stdout
    print(first.stdout, second.stdout)


def _digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    return next(
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )


def test_rebuilt_from_scratch_gives_the_same_digest_and_a_poor_base_is_refused(
    image_stack: StackProject, base_layout: Path, tmp_path: Path
) -> None:
    base = f"oci-layout:{base_layout}:bookworm"
    _image(image_stack, "b", "--base", base, "--to", f"oci-layout:{tmp_path / 'one'}:b")
    shutil.rmtree(image_stack.build_dir / ".venvstacks" / "images")
    rebuilt = _image(image_stack, "b", "--base", base, "--to", f"oci-layout:{tmp_path / 'two'}")
    assert "2 rebuilt" in rebuilt.stdout
    assert _digest(tmp_path / "one", "b") == _digest(tmp_path / "two", "latest")
    # A base without the C maths library, which the interpreter links against: refused.
    poor = tmp_path / "poor"
    add_whiteout_layer(base_layout, poor, ["/usr/lib/x86_64-linux-gnu/libm.so.6"], "nolibm")
    refused = _image(
        image_stack,
        "b",
        "--base",
        f"oci-layout:{poor}:nolibm",
        "--to",
        f"oci-layout:{tmp_path / 'three'}",
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert "libm.so.6" in last and "interpreter" in last and "Traceback" not in refused.stderr
    assert not (tmp_path / "three" / "index.json").exists()
    # Without the dynamic loader either: both are named.
    bare = tmp_path / "bare"
    add_whiteout_layer(
        base_layout, bare, ["/usr/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64"], "bare"
    )
    refused = _image(
        image_stack,
        "b",
        "--base",
        f"oci-layout:{bare}:bare",
        "--to",
        f"oci-layout:{tmp_path / 'three'}",
        check=False,
    )
    assert refused.returncode == 1
    assert "ld-linux" in refused.stderr and "libm.so.6" in refused.stderr
