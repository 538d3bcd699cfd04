"""End to end: publish to a real OCI registry and deploy from it, through the installed CLI.

One module-scoped stack (the basic stack) is built once; each test gets its own registry
(Debian's docker-registry on loopback, see fixtures_registry.py) and counts what the CLI sent by
the registry's access log: HEAD before any upload, one PUT per missing archive, no download of
a layer the deployment already has.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_registry import AccessLogLine, Registry
from fixtures_stacks import StackProject, write_basic_stack

pytestmark = pytest.mark.slow

FMT = "tar.zst"
TARGETS = ["cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b@1"]
NO_RETRIES = {"VENVSTACKS_REGISTRY_RETRIES": "0"}


@dataclass
class Stack:
    project: StackProject
    base: Path

    def vs(
        self, *args: str, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = {"VENVSTACKS_CACHE_DIR": str(self.base / "cache"), **(env or {})}
        return self.project.run(*args, check=check, env=full)

    def publish(self, registry: Registry, repo: str, *args: str, check: bool = True,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.vs(
            "publish", str(self.project.spec), "--format", FMT,
            "--output-dir", str(self.base / f"out-{registry.port}-{repo.replace('/', '-')}"),
            "--to", registry.url(repo), *registry.transport_options(), *args,
            check=check, env={**registry.credentials_env(), **(env or {})},
        )  # fmt: skip

    def deploy(self, registry: Registry, ref: str, target: Path, *args: str, check: bool = True,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.vs(
            "deploy", registry.url(ref), str(target), *registry.transport_options(), *args,
            check=check, env={**registry.credentials_env(), **(env or {})},
        )  # fmt: skip

    def published_meta(self, registry: Registry, repo: str) -> dict[str, dict[str, object]]:
        out = self.base / f"out-{registry.port}-{repo.replace('/', '-')}"
        data = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
        return {m["install_target"]: m for kind in data["layers"].values() for m in kind}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> Stack:
    base = tmp_path_factory.mktemp("registry-e2e")
    project = StackProject(base / "stack", runtime_archive_dir, wheelhouse)
    project.root.mkdir()
    write_basic_stack(project, runtime_versions)
    project.run("build", str(project.spec), "--lock-if-needed", *project.source_options())
    return Stack(project, base)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def _digest(line: AccessLogLine) -> str | None:
    """The digest a blob request is about (HEAD/GET path, or an upload PUT's query)."""
    if "/blobs/sha256:" in line.path:
        return line.path.rsplit("/", 1)[1].split("?")[0]
    if "digest=sha256" in line.path:
        return "sha256:" + line.path.split("digest=sha256%3A")[-1].split("digest=sha256:")[-1][:64]
    return None


def _archive_digests(meta: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    return {
        target: "sha256:" + str(m["archive_hashes"]["sha256"])  # type: ignore[index]
        for target, m in meta.items()
    }


def _run_app(stack: Stack, target: Path, app: str) -> str:
    return stack.vs("run", str(target), app).stdout


def test_publish_deploy_and_republish_only_the_changed_app(
    stack: Stack, registry: Registry, tmp_path: Path
) -> None:
    published = stack.publish(registry, "team/stack", "--tag", "v1")
    assert "5 uploaded" in published.stdout, published.stdout
    archives = _archive_digests(stack.published_meta(registry, "team/stack"))
    assert sorted(archives) == sorted(TARGETS)
    index = json.loads(registry.get("/v2/team/stack/manifests/v1"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert len(index["manifests"]) == 1 + len(TARGETS)
    for target in TARGETS:  # every layer is tagged by its install target
        layer = json.loads(registry.get(f"/v2/team/stack/manifests/{target.replace('@', '-')}"))
        assert layer["layers"][0]["digest"] == archives[target]

    target = tmp_path / "deployed"
    mark = registry.mark()
    stack.deploy(registry, "team/stack:v1", target)
    fetched = [_digest(r) for r in registry.requests_since(mark) if r.method == "GET"]
    assert set(archives.values()) <= set(fetched)
    assert "vs_app_a" in _run_app(stack, target, "a")
    assert not list(target.parent.glob(".venvstacks-oci-*"))  # the download folder is gone

    # Deploying the same tag again downloads no archive at all.
    mark = registry.mark()
    again = stack.deploy(registry, "team/stack:v1", target)
    assert "0 updated" in again.stdout
    got = {_digest(r) for r in registry.requests_since(mark) if r.method == "GET"}
    assert not got & set(archives.values())

    # Change the app and publish again: HEAD for every archive, one upload (the app's).
    stack.project.write("app_a.py", (stack.project.root / "app_a.py").read_text() + "print('v2')\n")
    stack.vs("build", str(stack.project.spec), *stack.project.source_options())
    mark = registry.mark()
    stack.publish(registry, "team/stack", "--tag", "v2")
    new = _archive_digests(stack.published_meta(registry, "team/stack"))
    assert [t for t in TARGETS if new[t] != archives[t]] == ["app-a"]
    seen = registry.requests_since(mark)
    heads = [_digest(r) for r in seen if r.method == "HEAD"]
    assert set(new.values()) <= set(heads)
    uploaded = {_digest(r) for r in seen if r.method == "PUT" and "/blobs/uploads/" in r.path}
    assert uploaded & set(new.values()) == {new["app-a"]}
    first_put = next(
        i for i, r in enumerate(seen) if _digest(r) == new["app-a"] and r.method == "PUT"
    )
    assert any(r.method == "HEAD" and _digest(r) == new["app-a"] for r in seen[:first_put])

    # Deploying v2 over v1 downloads only the app's archive and runs the new app.
    mark = registry.mark()
    stack.deploy(registry, "team/stack:v2", target)
    got = {_digest(r) for r in registry.requests_since(mark) if r.method == "GET"}
    assert got & set(new.values()) == {new["app-a"]}
    assert _run_app(stack, target, "a").rstrip().endswith("v2")


def test_the_python_api_deploys_from_a_registry(
    stack: Stack, registry: Registry, tmp_path: Path
) -> None:
    """`venvstacks.deploy_from_registry` is what `deploy oci://...` calls: the same downloads
    (none the second time), the same result and the same clean-up."""
    import venvstacks

    stack.publish(registry, "api/stack")
    target = tmp_path / "deployed"
    events: list[str] = []
    first = venvstacks.deploy_from_registry(
        registry.url("api/stack"), target, plain_http=True,
        progress=lambda event: events.append(event.kind),
    )  # fmt: skip
    assert sorted(first.updated) == sorted(TARGETS)
    assert events[0] == "begin" and events[-1] == "end"
    assert "vs_app_a" in _run_app(stack, target, "a")
    assert not list(target.parent.glob(".venvstacks-oci-*"))
    mark = registry.mark()
    again = venvstacks.deploy_from_registry(registry.url("api/stack"), target, plain_http=True)
    assert again.updated == () and sorted(again.layers) == sorted(TARGETS)
    archives = set(_archive_digests(stack.published_meta(registry, "api/stack")).values())
    assert not {_digest(r) for r in registry.requests_since(mark)} & archives
    with pytest.raises(venvstacks.DeployError, match="plain HTTP cannot be combined"):
        venvstacks.deploy_from_registry(
            registry.url("api/stack"), target, plain_http=True, insecure=True
        )


def test_another_repository_mounts_instead_of_uploading(stack: Stack, registry: Registry) -> None:
    stack.publish(registry, "team/one")
    mark = registry.mark()
    # `build --publish --to` pushes too; the record of team/one's blobs makes it mount them.
    out = stack.base / "out-build-publish"
    result = stack.vs(
        "build", str(stack.project.spec), *stack.project.source_options(), "--publish",
        "--format", FMT, "--output-dir", str(out), "--to", registry.url("team/two"),
        "--plain-http",
    )  # fmt: skip
    assert "5 mounted" in result.stdout, result.stdout
    seen = registry.requests_since(mark)
    assert [r for r in seen if r.method == "POST" and "mount=" in r.path and r.status == 201]
    manifest = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
    metas = {m["install_target"]: m for kind in manifest["layers"].values() for m in kind}
    archives = set(_archive_digests(metas).values())
    uploaded = {_digest(r) for r in seen if r.method == "PUT" and "/blobs/uploads/" in r.path}
    assert not uploaded & archives


def test_basic_auth_and_tls(stack: Stack, tls_registry: Registry, tmp_path: Path) -> None:
    stack.publish(tls_registry, "team/secure")
    target = tmp_path / "deployed"
    stack.deploy(tls_registry, "team/secure", target, "--include", "app-b*")
    assert "app-b 1.0" in _run_app(stack, target, "b")

    no_creds = {"VENVSTACKS_REGISTRY_USERNAME": "", "VENVSTACKS_REGISTRY_PASSWORD": "",
                "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}  # fmt: skip
    denied = stack.vs(
        "deploy", tls_registry.url("team/secure"), str(tmp_path / "other"),
        "--ca-file", str(tls_registry.ca_file), check=False, env=no_creds,
    )  # fmt: skip
    line = _one_error_line(denied)
    assert f"registry {tls_registry.host}, repository team/secure" in line
    assert "authentication required" in line
    assert not (tmp_path / "other").exists()

    untrusted = stack.vs(
        "deploy", tls_registry.url("team/secure"), str(tmp_path / "other"),
        check=False, env={**tls_registry.credentials_env(), **NO_RETRIES},
    )  # fmt: skip
    assert "TLS certificate not trusted" in _one_error_line(untrusted)
    insecure = stack.vs(
        "deploy", tls_registry.url("team/secure"), str(tmp_path / "other"), "--insecure",
        "--include", "app-b*", env=tls_registry.credentials_env(),
    )  # fmt: skip
    assert "Deployed" in insecure.stdout


def test_failures_are_one_line_and_leave_nothing_deployed(
    stack: Stack, registry: Registry, tmp_path: Path
) -> None:
    target = tmp_path / "deployed"
    missing = stack.deploy(registry, "team/stack:nope", target, check=False)
    line = _one_error_line(missing)
    assert f"registry {registry.host}, repository team/stack: tag nope not found" in line

    stack.publish(registry, "team/stack")
    app = _archive_digests(stack.published_meta(registry, "team/stack"))["app-a"]
    hexdigest = app.split(":")[1]
    stored = registry.storage / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    corrupt = stack.deploy(registry, "team/stack", target, check=False)
    line = _one_error_line(corrupt)
    assert f"registry {registry.host}, repository team/stack, layer app-a: blob {app}" in line
    assert not target.exists()  # nothing half-deployed
    assert not list(tmp_path.glob(".venvstacks-oci-*"))

    registry.stop()
    down = stack.publish(registry, "team/stack", check=False, env=NO_RETRIES)
    line = _one_error_line(down)
    assert line.startswith(f"error: registry {registry.host}, repository team/stack")
    assert "connection refused" in line


def _kill_when_uploading(registry: Registry, min_bytes: int, done: list[bool]) -> None:
    root = registry.storage / "docker/registry/v2/repositories"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = list(root.glob("*/*/_uploads/*/data")) if root.exists() else []
        try:
            if any(p.stat().st_size >= min_bytes for p in parts):
                registry.kill()
                done.append(True)
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)


def test_registry_killed_mid_push_then_a_retry_completes(
    stack: Stack, registry: Registry, tmp_path: Path
) -> None:
    # Uncompressed zip archives make the runtime's upload long enough to interrupt.
    args = ("--format", "zip", "--compression-level", "0")
    done: list[bool] = []
    killer = threading.Thread(target=_kill_when_uploading, args=(registry, 4 << 20, done))
    killer.start()
    interrupted = stack.publish(registry, "team/big", *args, check=False, env=NO_RETRIES)
    killer.join()
    assert done, "the registry was never killed during an upload"
    line = _one_error_line(interrupted)
    assert f"registry {registry.host}, repository team/big, layer cpython-3.11" in line

    registry.start()
    with pytest.raises(urllib.error.HTTPError) as caught:  # no index tagged after a failure
        registry.get("/v2/team/big/manifests/latest")
    assert caught.value.code == 404
    caught.value.close()  # an HTTPError holds the response open
    retried = stack.publish(registry, "team/big", *args)
    assert "Pushed" in retried.stdout
    target = tmp_path / "deployed"
    stack.deploy(registry, "team/big", target, "--include", "app-a")
    assert "vs_app_a" in _run_app(stack, target, "a")
