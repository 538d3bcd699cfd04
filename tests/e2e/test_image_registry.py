"""End to end: `venvstacks image` to and from a real registry through the installed CLI, with
what each push moved counted by the registry's access log (HEAD first, mount, upload)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fixtures_images import Podman
from fixtures_registry import AccessLogLine, Registry
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


def _image(
    project: StackProject, registry: Registry, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return project.run(
        "image",
        str(project.spec),
        *args,
        *registry.transport_options(),
        "--lock-if-needed",
        *project.source_options(),
        check=check,
    )


_ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


def _manifest(registry: Registry, repo: str, tag: str) -> dict[str, Any]:
    """The manifest (or index) at `tag`, in whichever of the OCI and Docker formats it is."""
    request = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{tag}")
    request.add_header("Accept", _ACCEPT)
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    assert isinstance(data, dict)
    return data


def _blob_traffic(requests: list[AccessLogLine], repo: str) -> dict[str, list[AccessLogLine]]:
    """The blob requests made to `repo`, by kind: HEAD, mount, upload (POST then PUT)."""
    blobs = [r for r in requests if r.path.startswith(f"/v2/{repo}/blobs/")]
    return {
        "head": [r for r in blobs if r.method == "HEAD"],
        "mount": [r for r in blobs if r.method == "POST" and "mount=" in r.path],
        "start": [r for r in blobs if r.method == "POST" and "mount=" not in r.path],
        "put": [r for r in blobs if r.method == "PUT"],
        "get": [r for r in blobs if r.method == "GET"],
    }


def _mounted_digests(lines: list[AccessLogLine]) -> set[str]:
    return {
        line.path.split("mount=")[1].split("&")[0].replace("%3A", ":")
        for line in lines
        if line.status == 201
    }


def _push_base(base_layout: Path, registry: Registry, dest: str, *options: str) -> None:
    subprocess.run(
        ["skopeo", "copy", *options, "--dest-tls-verify=false", f"oci:{base_layout}:bookworm",
         f"docker://{registry.host}/{dest}"],
        check=True, capture_output=True,
    )  # fmt: skip


def _uploaded_bytes(output: str) -> int:
    return int(output.split(" bytes uploaded")[0].rsplit(" ", 1)[1])


def test_the_second_app_image_uploads_only_its_own_layer(
    image_stack: StackProject, base_layout: Path, registry: Registry, podman: Podman
) -> None:
    """Two apps of one stack pushed to one repository: the second push HEADs the base, runtime
    and framework blobs (present), uploads its app layer and config, and PUTs its manifest."""
    base = f"oci-layout:{base_layout}:bookworm"
    first = _image(image_stack, registry, "a", "--base", base, "--to", registry.url("apps", "a"))
    a = _manifest(registry, "apps", "a")
    assert (
        _uploaded_bytes(first.stdout) == sum(l["size"] for l in a["layers"]) + a["config"]["size"]
    )

    mark = registry.mark()
    second = _image(image_stack, registry, "c", "--base", base, "--to", registry.url("apps", "c"))
    pushed = registry.requests_since(mark)
    c = _manifest(registry, "apps", "c")
    shared, own = c["layers"][:-1], c["layers"][-1]
    assert shared == a["layers"][:-1] and own != a["layers"][-1]
    traffic = _blob_traffic(pushed, "apps")
    # One HEAD per blob: the shared ones answer 200, the app layer and the config 404.
    assert sorted(r.path.rsplit("/", 1)[1] for r in traffic["head"] if r.status == 200) == sorted(
        l["digest"] for l in shared
    )
    assert sorted(r.path.rsplit("/", 1)[1] for r in traffic["head"] if r.status == 404) == sorted(
        [own["digest"], c["config"]["digest"]]
    )
    assert [r.status for r in traffic["start"]] == [202, 202]
    assert [r.status for r in traffic["put"]] == [201, 201]
    assert {r.path.split("digest=")[1].replace("%3A", ":") for r in traffic["put"]} == {
        own["digest"],
        c["config"]["digest"],
    }
    assert traffic["mount"] == [] and traffic["get"] == []
    manifests = [r for r in pushed if "/manifests/" in r.path]
    assert [(r.method, r.status) for r in manifests] == [("PUT", 201)]
    assert _uploaded_bytes(second.stdout) == own["size"] + c["config"]["size"]
    assert "0 mounted" in second.stdout and f"{len(shared)} already there" in second.stdout

    # The pushed image runs under podman, pulled from the registry over plain HTTP.
    run = podman.run(f"{registry.host}/apps:c")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("app-c ") and "/opt/venvstacks/framework-frame2/" in run.stdout


def test_a_new_repository_mounts_what_the_registry_already_holds(
    image_stack: StackProject, base_layout: Path, registry: Registry, tmp_path: Path
) -> None:
    """A registry base in Docker's manifest format (as `docker push` stores it): its layers are
    mounted from the base's repository. A second app pushed to another repository mounts the
    runtime and framework layers from the first app's repository (recorded by the first push)
    and uploads only its app layer and config."""
    _push_base(base_layout, registry, "library/debian:bookworm", "--format", "v2s2")
    assert _manifest(registry, "library/debian", "bookworm")["mediaType"] == (
        "application/vnd.docker.distribution.manifest.v2+json"
    )
    base = registry.url("library/debian", "bookworm")
    mark = registry.mark()
    _image(image_stack, registry, "a", "--base", base, "--to", registry.url("team/a"))
    first = registry.requests_since(mark)
    a = _manifest(registry, "team/a", "latest")
    base_layers = _manifest(registry, "library/debian", "bookworm")["layers"]
    n = len(base_layers)
    assert [l["digest"] for l in a["layers"][:n]] == [l["digest"] for l in base_layers]
    traffic = _blob_traffic(first, "team/a")
    assert _mounted_digests(traffic["mount"]) == {l["digest"] for l in base_layers}
    assert all("from=library%2Fdebian" in r.path for r in traffic["mount"])
    assert len(traffic["put"]) == len(a["layers"]) - n + 1  # our layers and the config
    base_config = _manifest(registry, "library/debian", "bookworm")["config"]["digest"]
    gets = [r.path for r in first if r.method == "GET" and "/blobs/" in r.path]
    assert sorted(gets) == sorted(
        f"/v2/library/debian/blobs/{d}" for d in [base_config, *(l["digest"] for l in base_layers)]
    )

    mark = registry.mark()
    second = _image(image_stack, registry, "c", "--base", base, "--to", registry.url("team/c"))
    pushed = registry.requests_since(mark)
    c = _manifest(registry, "team/c", "latest")
    assert c["layers"][:-1] == a["layers"][:-1]
    traffic = _blob_traffic(pushed, "team/c")
    assert _mounted_digests(traffic["mount"]) == {l["digest"] for l in c["layers"][:-1]}
    assert {r.path.split("digest=")[1].replace("%3A", ":") for r in traffic["put"]} == {
        c["layers"][-1]["digest"],
        c["config"]["digest"],
    }
    assert _uploaded_bytes(second.stdout) == c["layers"][-1]["size"] + c["config"]["size"]
    assert f"{len(c['layers']) - 1} mounted" in second.stdout
    # The base's layers were downloaded once, by the first image; the second read them from the
    # image layer store in the build dir (only the small config blob is fetched again).
    gets = {r.path for r in pushed if r.method == "GET" and "/blobs/" in r.path}
    assert gets == {f"/v2/library/debian/blobs/{base_config}"}


def test_multi_platform_index_in_a_registry(
    image_stack: StackProject, base_layout: Path, registry: Registry, tmp_path: Path
) -> None:
    """Each platform's image goes to TAG-OS-ARCH (one CI job per platform); listing the
    platforms writes the index under TAG; a platform not built yet is named. The base is an OCI
    image in the registry."""
    _push_base(base_layout, registry, "library/debian:bookworm", "--preserve-digests")
    base = registry.url("library/debian", "bookworm")
    dest = registry.url("multi", "b")
    _image(image_stack, registry, "b", "--platform", "linux/amd64", "--base", base, "--to", dest)
    amd64 = registry.get("/v2/multi/manifests/b-linux-amd64")
    assert registry.get("/v2/multi/manifests/b") == amd64
    missing = _image(
        image_stack,
        registry,
        "b",
        *("--platform", "linux/amd64", "--platform", "linux/arm64"),
        *("--base", base, "--to", dest),
        check=False,
    )
    assert missing.returncode == 1 and "b-linux-arm64" in missing.stderr
    assert "Traceback" not in missing.stderr
    _push_as_arm64(registry, "multi", "b-linux-amd64", "b-linux-arm64")
    indexed = _image(
        image_stack,
        registry,
        "b",
        *("--platform", "linux/amd64", "--platform", "linux/arm64"),
        *("--base", base, "--to", dest),
    )
    assert "index: linux/amd64, linux/arm64" in indexed.stdout
    index = _manifest(registry, "multi", "b")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    arm = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--override-arch", "arm64",
         f"docker://{registry.host}/multi:b"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(arm.stdout)["Architecture"] == "arm64"


def _push_as_arm64(registry: Registry, repo: str, tag: str, new_tag: str) -> None:
    """Stand in for the arm64 CI job: the amd64 image with a config claiming arm64, pushed with
    plain HTTP requests (the layers are already in the repository)."""
    manifest = json.loads(registry.get(f"/v2/{repo}/manifests/{tag}"))
    config = json.loads(registry.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}"))
    config["architecture"] = "arm64"
    data = json.dumps(config).encode()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    base = f"http://{registry.host}"
    start = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start) as response:
        location = response.headers["Location"]
    location = location if location.startswith("http") else base + location
    put = urllib.request.Request(f"{location}&digest={digest}", data=data, method="PUT")
    put.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(put).close()
    manifest["config"].update({"digest": digest, "size": len(data)})
    body = json.dumps(manifest).encode()
    put = urllib.request.Request(f"{base}/v2/{repo}/manifests/{new_tag}", data=body, method="PUT")
    put.add_header("Content-Type", manifest["mediaType"])
    urllib.request.urlopen(put).close()
