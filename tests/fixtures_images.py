"""Fixtures for image tests: container tools from Debian, and a real Debian base image.

`image_tools` makes sure skopeo, umoci, podman, runc and mmdebstrap are there (installing them
with apt when missing and running as root) and skips naming the missing tool otherwise.
`base_layout` is an OCI image layout of a Debian bookworm minbase root filesystem made by
mmdebstrap with the libraries a CPython runtime links against; it is made once and cached under
`<repo>/.cache/images/` keyed by the mmdebstrap command, so later sessions start at once.
The layout is written here with the standard library, independently of venvstacks' own writer.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fixtures_stacks import StackProject

__all__ = [
    "BASE_PACKAGES",
    "Podman",
    "add_whiteout_layer",
    "base_layout",
    "image_stack",
    "image_tools",
    "podman",
    "require_tools",
    "runc_run",
    "write_layout",
]

BASE_PACKAGES = (
    "libssl3",
    "libsqlite3-0",
    "libexpat1",
    "libreadline8",
    "libncursesw6",
    "ca-certificates",
)
TOOLS = {
    "skopeo": "skopeo",
    "umoci": "umoci",
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
}
_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "images"


def _missing(tools: Sequence[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]


def require_tools(*tools: str) -> None:
    """Install missing tools with apt when root; otherwise skip naming them."""
    missing = _missing(tools)
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *(TOOLS.get(t, t) for t in missing)],
            capture_output=True,
            check=False,
            env=env,
        )
        missing = _missing(tools)
    if missing:
        pytest.skip(f"missing container tools: {', '.join(missing)}")


@pytest.fixture(scope="session")
def image_tools() -> None:
    require_tools(*TOOLS)


def _blob(layout: Path, content: bytes) -> dict[str, object]:
    digest = hashlib.sha256(content).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return {"digest": f"sha256:{digest}", "size": len(content)}


def _gzip_file(source: Path, dest_dir: Path) -> tuple[str, str, int]:
    """Gzip a tar; (compressed digest, diff_id, size)."""
    plain, packed = hashlib.sha256(), hashlib.sha256()
    tmp = dest_dir / ".layer.tmp"
    with (
        source.open("rb") as src,
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz,
    ):
        for block in iter(lambda: src.read(1 << 20), b""):
            plain.update(block)
            gz.write(block)
    packed.update(tmp.read_bytes())
    size = tmp.stat().st_size
    tmp.rename(dest_dir / packed.hexdigest())
    return f"sha256:{packed.hexdigest()}", f"sha256:{plain.hexdigest()}", size


def write_layout(layout: Path, tars: Sequence[Path], tag: str, arch: str = "amd64") -> None:
    """An OCI image layout with one gzip layer per tar, tagged `tag`."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for tar in tars:
        digest, diff_id, size = _gzip_file(tar, blobs)
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            }
        )
        diff_ids.append(diff_id)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(layout, json.dumps(config).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }
    manifest_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(layout, json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [manifest_desc],
            }
        )
    )


def _complete(layout: Path) -> bool:
    """True when the cached layout's tagged manifest and all its blobs are there."""
    try:
        index = json.loads((layout / "index.json").read_text())
        manifest_path = layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]
        manifest = json.loads(manifest_path.read_text())
        blobs = [manifest["config"], *manifest["layers"]]
        return all((layout / "blobs/sha256" / b["digest"][7:]).is_file() for b in blobs)
    except (OSError, ValueError, KeyError, IndexError):
        return False


def _mmdebstrap_command(out: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        "bookworm",
        str(out),
    ]


@pytest.fixture(scope="session")
def base_layout(image_tools: None) -> Iterator[Path]:
    """The cached Debian bookworm base image (OCI layout, tag `bookworm`)."""
    key = hashlib.sha256(json.dumps(_mmdebstrap_command(Path("OUT"))).encode()).hexdigest()[:16]
    entry = _CACHE / f"bookworm-{key}"
    _CACHE.mkdir(parents=True, exist_ok=True)
    with open(_CACHE / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(entry):
            shutil.rmtree(entry, ignore_errors=True)
            work = _CACHE / f".work-{key}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            rootfs = work / "rootfs.tar"
            result = subprocess.run(
                _mmdebstrap_command(rootfs), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                shutil.rmtree(work, ignore_errors=True)
                pytest.skip(f"mmdebstrap could not make a base image: {result.stderr[-300:]}")
            layout = work / "layout"
            write_layout(layout, [rootfs], "bookworm")
            layout.rename(entry)
            shutil.rmtree(work, ignore_errors=True)
    yield entry


def add_whiteout_layer(base: Path, dest: Path, remove: Sequence[str], tag: str) -> None:
    """A copy of the layout at `base` with one more layer that deletes `remove` (whiteouts)."""
    # Hard links for the blobs only: index.json is rewritten and must not share the cache's inode.
    shutil.copytree(base / "blobs", dest / "blobs", copy_function=os.link)
    (dest / "oci-layout").write_text((base / "oci-layout").read_text())
    index = json.loads((base / "index.json").read_text())
    manifest_desc = index["manifests"][0]
    manifest = json.loads((base / "blobs/sha256" / manifest_desc["digest"][7:]).read_text())
    config = json.loads((base / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in remove:
            folder, name = os.path.split(path.strip("/"))
            info = tarfile.TarInfo(f"{folder}/.wh.{name}")
            tar.addfile(info, io.BytesIO(b""))
    plain = buffer.getvalue()
    packed = gzip.compress(plain, mtime=0)
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(dest, packed)}
    config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(plain).hexdigest()}")
    manifest["layers"].append(layer)
    manifest["config"] = {**manifest["config"], **_blob(dest, json.dumps(config).encode())}
    desc = {**manifest_desc, **_blob(dest, json.dumps(manifest).encode())}
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (dest / "index.json").write_text(json.dumps({**index, "manifests": [desc]}))


def runc_run(
    layout: Path, tag: str, bundle: Path, args: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Unpack the image with umoci and run it with runc (no terminal); its output."""
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    if args:
        config["process"]["args"] = [*config["process"]["args"], *args]
    config_path.write_text(json.dumps(config))
    return subprocess.run(
        ["runc", "run", "--bundle", str(bundle), f"vs-test-{os.getpid()}-{bundle.name}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


class Podman:
    """A private podman store (its run root must be short: podman refuses over 50 characters)."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root = root
        self.runroot = runroot

    @property
    def storage(self) -> str:
        """The store as a skopeo `containers-storage:` transport prefix."""
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]"

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
            *args,
        ]

    def run(self, image: str, *args: str, pull: bool = False) -> subprocess.CompletedProcess[str]:
        """Run an image as this sandbox allows (runc, cgroupfs, explicit ulimits, no network)."""
        command = self.command(
            "run",
            "--rm",
            "--network",
            "none",
            "--tls-verify=false",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
            *args,
        )
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture
def podman(tmp_path: Path, image_tools: None) -> Iterator[Podman]:
    runroot = Path(tempfile.mkdtemp(prefix="vspod-", dir="/tmp"))
    store = Podman(tmp_path / "podman-root", runroot)
    yield store
    subprocess.run(store.command("rm", "--all", "--force"), capture_output=True, check=False)
    subprocess.run(store.command("rmi", "--all", "--force"), capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(store.root / "overlay")], capture_output=True, check=False)
    shutil.rmtree(runroot, ignore_errors=True)


APP_C = """\
import vs_frame2, vs_frame
print("app-c", vs_frame2.where(), vs_frame.where())
"""


@pytest.fixture
def image_stack(basic_stack: StackProject, base_layout: Path) -> StackProject:
    """The basic stack plus an app `c` on the same frameworks as `a` (so `a` and `c` images
    share every layer but the app's)."""
    with basic_stack.spec.open("a") as spec:
        spec.write(
            '\n[[applications]]\nname = "c"\nframeworks = ["frame2"]\n'
            'launch_module = "app_c.py"\nrequirements = []\n'
        )
    basic_stack.write("app_c.py", APP_C)
    return basic_stack
