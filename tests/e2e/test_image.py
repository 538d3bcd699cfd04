"""End to end: `venvstacks image` through the installed CLI, checked with skopeo, umoci, runc, podman."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fixtures_images import Podman, add_whiteout_layer, runc_run
from fixtures_registry import Registry
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


def _files_changed_after(root: Path, when: float) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not p.is_symlink() and p.stat().st_mtime > when
    ]


def test_app_images_share_runtime_and_framework_layers_and_run(
    image_stack: StackProject, base_layout: Path, tmp_path: Path, podman: Podman
) -> None:
    dest = tmp_path / "images"
    base = f"oci-layout:{base_layout}:bookworm"
    built = _image(image_stack, "--all-apps", "--base", base, "--to", f"oci-layout:{dest}")
    assert len(built.stdout.strip().splitlines()) == 3, built.stdout
    a, b, c = (_inspect(dest, tag) for tag in "abc")
    base_layers = _inspect(base_layout, "bookworm")["Layers"]
    n = len(base_layers)  # type: ignore[arg-type]
    for image in (a, b, c):
        assert image["Layers"][:n] == base_layers  # type: ignore[index]
    # a and c: runtime, frame, frame2, app; b: runtime, app.
    assert len(a["Layers"]) == len(c["Layers"]) == n + 4  # type: ignore[arg-type]
    assert a["Layers"][n : n + 3] == c["Layers"][n : n + 3]  # type: ignore[index]
    assert a["Layers"][n + 3] != c["Layers"][n + 3]  # type: ignore[index]
    assert b["Layers"][n] == a["Layers"][n]  # type: ignore[index]
    labels = c["Labels"]
    assert labels["io.venvstacks.app"] == "app-c"  # type: ignore[index]
    assert labels["io.venvstacks.layers"] == "cpython-3.11,framework-frame,framework-frame2,app-c"  # type: ignore[index]
    # runc on an umoci bundle; the start writes nothing below the prefix (no post-install, no .pyc).
    bundle = tmp_path / "bundle-a"
    before = time.time()
    time.sleep(1.1)
    run = runc_run(dest, "a", bundle)
    assert run.returncode == 0, run.stderr
    assert "vs_app_a" in run.stdout and "/opt/venvstacks/framework-frame/" in run.stdout
    assert _files_changed_after(bundle / "rootfs" / "opt" / "venvstacks", before) == []
    # podman, from its own storage (skopeo keeps the digests).
    for tag in ("b", "c"):
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--preserve-digests",
                f"oci:{dest}:{tag}",
                f"{podman.storage}localhost/app-{tag}:test",
            ],
            check=True,
            capture_output=True,
        )
    run_b = podman.run("localhost/app-b:test")
    assert run_b.returncode == 0, run_b.stderr
    assert run_b.stdout.split()[0] == "app-b" and run_b.stdout.split()[-1] == "42"
    run_c = podman.run("localhost/app-c:test")
    assert run_c.returncode == 0, run_c.stderr
    assert "/opt/venvstacks/framework-frame2/" in run_c.stdout


def _digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    return next(
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )


def test_rebuilt_from_scratch_gives_the_same_digest_zstd_runs_and_platforms_index(
    image_stack: StackProject, base_layout: Path, tmp_path: Path, podman: Podman
) -> None:
    base = f"oci-layout:{base_layout}:bookworm"
    _image(image_stack, "b", "--base", base, "--to", f"oci-layout:{tmp_path / 'one'}:b")
    shutil.rmtree(image_stack.build_dir / ".venvstacks" / "images")
    rebuilt = _image(image_stack, "b", "--base", base, "--to", f"oci-layout:{tmp_path / 'two'}")
    assert "2 rebuilt" in rebuilt.stdout
    assert _digest(tmp_path / "one", "b") == _digest(tmp_path / "two", "latest")
    # zstd layers: the base's layers stay as they are; podman runs the image.
    zstd = tmp_path / "zstd"
    # (With --report -, stdout is that one JSON document; the image line goes to stderr.)
    reported = _image(
        image_stack, "b", "--layer-format", "zstd", "--report", "-",
        "--base", base, "--to", f"oci-layout:{zstd}",
    )  # fmt: skip
    assert "app-b" in json.loads(reported.stdout)["layers"]
    assert f"oci-layout:{zstd}:latest sha256:" in reported.stderr
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{zstd}:latest"],
        capture_output=True,
        text=True,
        check=True,
    )
    types = [layer["mediaType"] for layer in json.loads(raw.stdout)["layers"]]
    assert types[-2:] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 2
    assert all(t.endswith("+gzip") for t in types[:-2])
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--preserve-digests",
            f"oci:{zstd}:latest",
            f"{podman.storage}localhost/app-b-zstd:test",
        ],
        check=True,
        capture_output=True,
    )
    run = podman.run("localhost/app-b-zstd:test")
    assert run.returncode == 0 and run.stdout.split()[0] == "app-b", run.stderr
    # Several platforms: this machine's image is built and tagged b-linux-amd64; an image index
    # over it and the arm64 image (made on another machine: faked here) is written under b.
    multi = tmp_path / "multi"
    _image(
        image_stack,
        "b",
        "--platform",
        "linux/amd64",
        "--base",
        base,
        "--to",
        f"oci-layout:{multi}:b",
    )
    assert _digest(multi, "b") == _digest(multi, "b-linux-amd64")
    _fake_platform(multi, "b", "b-linux-arm64", "arm64")
    indexed = _image(
        image_stack,
        "b",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        "--base",
        base,
        "--to",
        f"oci-layout:{multi}:b",
    )
    assert "index: linux/amd64, linux/arm64" in indexed.stdout
    raw = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{multi}:b"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]
    arm = subprocess.run(
        ["skopeo", "inspect", "--override-arch", "arm64", f"oci:{multi}:b"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(arm.stdout)["Architecture"] == "arm64"
    missing = _image(
        image_stack,
        "b",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/s390x",
        "--base",
        base,
        "--to",
        f"oci-layout:{multi}:b",
        check=False,
    )
    assert missing.returncode == 1 and "b-linux-s390x" in missing.stderr


def _fake_platform(layout: Path, tag: str, new_tag: str, arch: str) -> None:
    """Tag a copy of an image whose config claims another architecture (a stand-in for an
    image built by a CI job on that platform)."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    manifest = json.loads((blobs / entry["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    config["architecture"] = arch

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifest["config"].update(put(json.dumps(config).encode()))
    new = {**entry, **put(json.dumps(manifest).encode())}
    new["annotations"] = {"org.opencontainers.image.ref.name": new_tag}
    index["manifests"].append(new)
    (layout / "index.json").write_text(json.dumps(index))


def test_a_base_lacking_what_the_interpreter_needs_is_refused_and_writes_nothing(
    image_stack: StackProject, base_layout: Path, tmp_path: Path, registry: Registry
) -> None:
    # Without the C maths library, which the interpreter links against: one line naming it.
    poor = tmp_path / "poor"
    add_whiteout_layer(base_layout, poor, ["/usr/lib/x86_64-linux-gnu/libm.so.6"], "nolibm")
    dest = tmp_path / "dest"
    refused = _image(
        image_stack, "b", "--base", f"oci-layout:{poor}:nolibm", "--to", f"oci-layout:{dest}",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    errors = [l for l in refused.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1, refused.stderr
    assert "libm.so.6" in errors[0] and "interpreter" in errors[0], errors
    assert "Traceback" not in refused.stderr
    assert not dest.exists()
    # The same to a registry: nothing is pushed (not even a HEAD).
    mark = registry.mark()
    refused = _image(
        image_stack, "b", "--base", f"oci-layout:{poor}:nolibm", "--to", registry.url("apps"),
        "--plain-http", check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "libm.so.6" in refused.stderr
    assert [r for r in registry.requests_since(mark) if r.path.startswith("/v2/apps/")] == []
    # Without the dynamic loader either: both are named.
    bare = tmp_path / "bare"
    add_whiteout_layer(
        base_layout, bare, ["/usr/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64"], "bare"
    )
    refused = _image(
        image_stack, "b", "--base", f"oci-layout:{bare}:bare", "--to", f"oci-layout:{dest}",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "ld-linux" in refused.stderr and "libm.so.6" in refused.stderr
    assert not dest.exists()


def test_an_extension_module_whose_library_the_base_lacks_is_a_warning(
    image_stack: StackProject, base_layout: Path, tmp_path: Path, podman: Podman
) -> None:
    """The image is written; the warning names the module and the library; the app runs (it
    never imports sqlite3) and importing the module in the container fails as warned."""
    nosqlite = tmp_path / "nosqlite"
    add_whiteout_layer(
        base_layout, nosqlite, ["/usr/lib/x86_64-linux-gnu/libsqlite3.so.0"], "nosqlite"
    )
    dest = tmp_path / "dest"
    built = _image(
        image_stack, "b", "--base", f"oci-layout:{nosqlite}:nosqlite", "--to",
        f"oci-layout:{dest}:b",
    )  # fmt: skip
    warnings = [l for l in built.stderr.splitlines() if "_sqlite3" in l]
    assert len(warnings) == 1 and "warning" in warnings[0], built.stderr
    assert "libsqlite3.so.0" in warnings[0] and "Traceback" not in built.stderr
    subprocess.run(
        ["skopeo", "copy", "--preserve-digests", f"oci:{dest}:b",
         f"{podman.storage}localhost/app-b-nosqlite:test"],
        check=True, capture_output=True,
    )  # fmt: skip
    run = podman.run("localhost/app-b-nosqlite:test")
    assert run.returncode == 0 and run.stdout.startswith("app-b "), run.stderr
    python = "/opt/venvstacks/cpython-3.11/bin/python3"
    imported = subprocess.run(
        podman.command(
            "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
            "--ulimit", "nproc=1024:1024", "--entrypoint", python,
            "localhost/app-b-nosqlite:test", "-c", "import sqlite3",
        ),
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert imported.returncode == 1 and "libsqlite3.so.0" in imported.stderr, imported.stderr
