"""Benchmark: push a big layer to a registry and deploy-fetch it back, beside the floor.

Usage: python benchmarks/registry.py [--repeat N] [--work DIR]

The layer is the torch wheel in /opt/wheels unpacked as a framework layer's site-packages and
archived by venvstacks' own writer (tar.zst, the default level); without that wheel, 400 MB of
generated, partly compressible files stand in. The archive is cached in the work folder
(default: the git-ignored benchmarks/_work/registry/). A registry (Debian's docker-registry,
plain HTTP on 127.0.0.1, filesystem storage in the work folder) runs for the duration.

Each measurement runs in a fresh child process, which reports its wall time and its own peak
RSS (`VmHWM`; `ru_maxrss` would carry the parent's peak over `exec`):

- push (cold): `push_published` into an empty repository: HEAD, POST, one streamed PUT;
- push (present): the same again: HEAD only;
- push (mount): into another repository of the registry: HEAD, mount;
- fetch: `fetch_published` of the layer, streamed into a file with its sha256 verified;
- floor, sha256: hashing the archive from disk (page cache warm);
- floor, raw HTTP PUT: the archive sent with `socket.sendfile` to a loopback server that
  discards it, headers included; and raw HTTP GET: the same bytes served by that server with
  `sendfile`, read into a file.

Prints a table (medians of --repeat runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
TORCH = sorted(Path("/opt/wheels").glob("torch-*.whl"))
TARGET = "framework-torch"


def _make_layer(work: Path) -> Path:
    """A publish output folder holding one big layer archive (built once, then reused)."""
    from venvstacks.publish.archive import ArchiveFormat, write_archive

    out = work / "published"
    manifest = out / "__venvstacks__" / "venvstacks.json"
    if manifest.exists():
        return out
    source = work / "layer-src"
    shutil.rmtree(source, ignore_errors=True)
    site = source / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    if TORCH:
        with zipfile.ZipFile(TORCH[-1]) as wheel:
            wheel.extractall(site)
        origin = TORCH[-1].name
    else:
        block = os.urandom(1 << 20)
        for i in range(400):
            data = block if i % 2 else block[: 1 << 19] * 2
            (site / f"blob{i:03}.bin").write_bytes(data)
        origin = "400 MB generated"
    out.mkdir(parents=True, exist_ok=True)
    name = f"{TARGET}.tar.zst"
    info = write_archive(
        source, TARGET, out / name, fmt=ArchiveFormat.TAR_ZST, clamp_mtime=1_700_000_000
    )
    meta = {
        "layer_name": TARGET,
        "install_target": TARGET,
        "lock_version": 1,
        "requirements_hash": "sha256:bench",
        "archive_name": name,
        "archive_size": info.size,
        "archive_hashes": {"sha256": info.sha256},
        "archive_build": 1,
        "origin": origin,
    }
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": {"frameworks": [meta]}}, indent=2))
    shutil.rmtree(source)
    return out


# -- children ---------------------------------------------------------------------------------


def _child(argv: list[str]) -> None:
    op, host, folder, arg = argv
    from venvstacks.oci.client import RegistryClient
    from venvstacks.oci.mounts import MountRecord
    from venvstacks.oci.reference import parse_reference
    from venvstacks.oci.stack import fetch_published, push_published, read_published
    from venvstacks.oci.transport import TransportOptions

    started = time.perf_counter()
    if op == "push":
        repo, _, mount = arg.partition(",")
        ref = parse_reference(f"oci://{host}/{repo}")
        with RegistryClient(ref, TransportOptions(plain_http=True)) as client:
            push_published(
                client, ref, read_published(Path(folder), "linux_x86_64"), tag="bench",
                platform="linux_x86_64", mount_from=[mount] if mount else [],
                record=MountRecord(Path(folder).parent / "record.json"),
            )  # fmt: skip
    elif op == "fetch":
        ref = parse_reference(f"oci://{host}/{arg}:bench")
        dest = Path(tempfile.mkdtemp(dir=Path(folder).parent))
        with RegistryClient(ref, TransportOptions(plain_http=True)) as client:
            fetch_published(client, ref, dest, lambda layers: [m for _, m in layers])
        shutil.rmtree(dest)
    elif op == "sha256":
        digest = hashlib.sha256()
        with open(arg, "rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
    elif op in ("raw-put", "raw-get"):
        _raw_transfer(op, host, Path(arg))
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM (ru_maxrss would include the parent's before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _raw_transfer(op: str, host: str, path: Path) -> None:
    address, port = host.rsplit(":", 1)
    size = path.stat().st_size
    with socket.create_connection((address, int(port))) as sock:
        if op == "raw-put":
            sock.sendall(
                f"PUT /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            with path.open("rb") as stream:
                sock.sendfile(stream)
            sock.recv(64)
        else:
            sock.sendall(b"GET /source HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            with tempfile.TemporaryFile(dir=path.parent) as out:
                while got < size:
                    block = sock.recv(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    got += len(block)


def _raw_server(path: Path) -> tuple[socket.socket, int]:
    """A loopback server that discards a PUT body, or serves `path` with sendfile."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def handle(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            header, _, rest = head.partition(b"\r\n\r\n")
            if header.startswith(b"PUT"):
                length = int(header.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                left = length - len(rest)
                while left > 0:
                    left -= len(conn.recv(1 << 20))
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            else:
                size = path.stat().st_size
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                with path.open("rb") as stream:
                    conn.sendfile(stream)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def _measure(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "_work" / "registry")
    args = parser.parse_args()
    from fixtures_registry import Registry, ensure_registry_tools

    missing = ensure_registry_tools()
    if missing:
        sys.exit(f"{missing} is not installed")
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    folder = _make_layer(work)
    meta = json.loads((folder / "__venvstacks__" / "venvstacks.json").read_text())
    layer = meta["layers"]["frameworks"][0]
    archive = folder / layer["archive_name"]
    rows: dict[str, list[dict[str, float]]] = {}
    server, raw_port = _raw_server(archive)
    for round_ in range(args.repeat):
        registry = Registry(Path(tempfile.mkdtemp(dir=work, prefix="registry-")))
        registry.start()
        try:
            steps = [
                ("push (cold: HEAD, POST, streamed PUT)", ("push", registry.host, str(folder), f"r{round_}/a")),
                ("push (present: HEAD only)", ("push", registry.host, str(folder), f"r{round_}/a")),
                ("push (other repo: HEAD, mount)", ("push", registry.host, str(folder), f"r{round_}/b,r{round_}/a")),
                ("fetch (streamed GET + sha256 verify)", ("fetch", registry.host, str(folder), f"r{round_}/a")),
                ("floor: sha256 of the archive", ("sha256", "-", str(folder), str(archive))),
                ("floor: raw HTTP PUT (sendfile)", ("raw-put", f"127.0.0.1:{raw_port}", str(folder), str(archive))),
                ("floor: raw HTTP GET into a file", ("raw-get", f"127.0.0.1:{raw_port}", str(folder), str(archive))),
            ]  # fmt: skip
            for label, child in steps:
                rows.setdefault(label, []).append(_measure(*child))
        finally:
            registry.stop()
            shutil.rmtree(registry.root, ignore_errors=True)
    server.close()
    size_mb = layer["archive_size"] / 1e6
    print(f"Layer: {layer['origin']} as {layer['archive_name']}, {size_mb:.0f} MB; "
          f"medians of {args.repeat} runs; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print()
    print("| step | seconds | MB/s | peak RSS (MB) |")
    print("|---|---|---|---|")
    for label, results in rows.items():
        seconds = statistics.median(r["seconds"] for r in results)
        rss = max(r["rss_mb"] for r in results)
        print(f"| {label} | {seconds:.2f} | {size_mb / seconds:.0f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
