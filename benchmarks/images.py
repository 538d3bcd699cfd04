"""Benchmark of `venvstacks image`: build time, image size and the bytes a second app image adds.

Usage: python benchmarks/images.py --base oci-layout:DIR[:TAG] [SPEC] [-- BUILD OPTIONS...]

SPEC defaults to specs/pytorch/venvstacks.toml (two apps on one torch framework; build it with
`-- --local-wheels /opt/wheels` where the CPU torch wheel is). Anything after `--` is passed to
`venvstacks image` (lock and build options). The stack is built and published first (not timed).
Then, for the stack's first two applications:

- layered: `venvstacks image --all-apps` from an empty image layer store (cold: every layer is
  built), then the same again into a fresh layout (warm: the store has every layer), and each app
  alone after the store was emptied of everything but the other app's layers (second app: only its
  own layer is built);
- plain: what a `COPY`-the-deployed-tree Dockerfile gives: the app's deployed layers (runtime,
  frameworks, app, post-installed with `venvstacks deploy`) as ONE gzip layer per app, written
  with the same deterministic tar writer.

It prints a table: seconds, compressed bytes of the stack's layers per image, and the bytes a
registry that already holds the first app image receives for the second (the blobs of the second
manifest that the first lacks: what a HEAD-first push uploads, and what a node that runs the first
image pulls for the second).

Then, against a real registry (Debian's `docker-registry` on loopback, as in the tests; skipped
when it is missing), with the layer store warm: `venvstacks image --to oci://...` for the first
app, the second app to the same repository, and the second app to a new repository (mounts), each
with the bytes uploaded and the blobs uploaded/mounted/present the command reports; and a node's
pulls (`skopeo copy` into one local layout, which skips blobs it holds), counted in bytes by the
registry's access log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from venvstacks.image.tarlayer import write_layer

REPO = Path(__file__).resolve().parents[1]
VENVSTACKS = [sys.executable, "-m", "venvstacks"]


def _run(*args: str) -> str:
    result = subprocess.run([*VENVSTACKS, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"venvstacks {' '.join(args[:3])} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def _manifest(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    digest = next(
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    data = json.loads((layout / "blobs" / "sha256" / digest[7:]).read_text())
    assert isinstance(data, dict)
    return data


def _layer_sizes(manifest: dict[str, object], skip: int) -> list[tuple[str, int]]:
    layers = manifest["layers"]
    assert isinstance(layers, list)
    return [(str(l["digest"]), int(l["size"])) for l in layers[skip:]]


def _apps(spec: Path) -> list[str]:
    import tomllib

    data = tomllib.loads(spec.read_text(encoding="utf-8"))
    return [str(app["name"]) for app in data.get("applications", [])][:2]


def _timed(*args: str) -> float:
    start = time.perf_counter()
    _run(*args)
    return time.perf_counter() - start


def _plain_images(
    spec: Path,
    common: list[str],
    artifacts: Path,
    apps: list[str],
    work: Path,
    prefix: PurePosixPath,
    clamp: int,
) -> list[tuple[float, int]]:
    """One single-layer image per app: deploy its layers, tar+gzip the whole tree."""
    results = []
    # Archives and the stack manifest that `deploy` reads (not timed).
    _run("publish", str(spec), *common, "--output-dir", str(artifacts), "--format", "tar.zst")
    for app in apps:
        root = work / f"plain-{app}"
        target = root / prefix.relative_to("/")
        start = time.perf_counter()
        _run("deploy", str(artifacts), str(target), "--include", app)
        shutil.rmtree(target / ".venvstacks-deploy", ignore_errors=True)
        relative = prefix.relative_to("/")
        blob = write_layer(
            root,
            [*reversed(relative.parents)][1:-1],
            relative,
            work / "plain-blobs",
            layer_format="gzip",
            clamp_mtime=clamp,
        )
        results.append((time.perf_counter() - start, blob.descriptor.size))
    return results


_PUSHED = re.compile(r"(\d+) bytes uploaded \(([^)]*)\)")
_SENT = re.compile(r'"GET (?P<path>/v2/\S+/blobs/\S+) HTTP/[\d.]+" 200 (?P<bytes>\d+) ')


def _registry_rows(
    spec: Path, common: list[str], base: str, apps: list[str], work: Path
) -> list[tuple[str, str, str, str]]:
    """Push both apps to a real registry and pull them as a node would; one row per step."""
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures_registry import Registry, ensure_registry_tools

    missing = ensure_registry_tools()
    if missing is not None or shutil.which("skopeo") is None:
        print(f"registry rows skipped: {missing or 'skopeo'} is missing")
        return []
    registry = Registry(work / "registry")
    registry.start()
    saved = os.environ.get("VENVSTACKS_CACHE_DIR")
    os.environ["VENVSTACKS_CACHE_DIR"] = str(work / "cache")  # a fresh record of mounts
    rows = []
    try:
        steps = [
            (f"push {apps[0]} (empty registry)", apps[0], "apps"),
            (f"push {apps[1]}, same repository", apps[1], "apps"),
            (f"push {apps[1]}, new repository", apps[1], "other"),
        ]
        for name, app, repo in steps:
            start = time.perf_counter()
            out = _run(
                "image", str(spec), app, "--base", base, "--plain-http",
                "--to", f"oci://{registry.host}/{repo}:{app}", *common,
            )  # fmt: skip
            took = time.perf_counter() - start
            found = _PUSHED.search(out)
            pushed = found.group(1) if found else "?"
            rows.append((name, f"{took:.1f}", pushed, found.group(2) if found else out.strip()))
        node = work / "node"
        for app in apps:
            before = len(registry.access_log.read_text().splitlines())
            start = time.perf_counter()
            subprocess.run(
                ["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
                 f"docker://{registry.host}/apps:{app}", f"oci:{node}:{app}"],
                check=True, capture_output=True,
            )  # fmt: skip
            took = time.perf_counter() - start
            lines = registry.access_log.read_text().splitlines()[before:]
            sent = sum(int(m["bytes"]) for l in lines if (m := _SENT.search(l)))
            rows.append((f"node pulls {app}", f"{took:.1f}", str(sent), "blob bytes sent"))
    finally:
        registry.stop()
        if saved is None:
            os.environ.pop("VENVSTACKS_CACHE_DIR", None)
        else:
            os.environ["VENVSTACKS_CACHE_DIR"] = saved
    return rows


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "spec", nargs="?", type=Path, default=REPO / "specs/pytorch/venvstacks.toml"
    )
    parser.add_argument("--base", required=True, help="oci-layout:DIR[:TAG]")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]
    spec: Path = args.spec.absolute()
    work = (args.work or Path(tempfile.mkdtemp(prefix="vs-image-bench-"))).absolute()
    build_dir = work / "build"
    artifacts = work / "artifacts"
    common = ["--build-dir", str(build_dir), *extra]
    apps = _apps(spec)
    if len(apps) < 2:
        raise SystemExit(f"{spec}: needs two applications, has {apps}")
    print(f"spec: {spec}; apps: {', '.join(apps)}; base: {args.base}")
    warmup = work / "warmup"
    _run(
        "image",
        str(spec),
        "--all-apps",
        "--base",
        args.base,
        "--to",
        f"oci-layout:{warmup}",
        *common,
    )
    store = build_dir / ".venvstacks" / "images"

    shutil.rmtree(store, ignore_errors=True)
    cold = _timed(
        "image",
        str(spec),
        "--all-apps",
        "--base",
        args.base,
        "--to",
        f"oci-layout:{work / 'cold'}",
        *common,
    )
    warm = _timed(
        "image",
        str(spec),
        "--all-apps",
        "--base",
        args.base,
        "--to",
        f"oci-layout:{work / 'warm'}",
        *common,
    )
    shutil.rmtree(store, ignore_errors=True)
    first = _timed(
        "image",
        str(spec),
        apps[0],
        "--base",
        args.base,
        "--to",
        f"oci-layout:{work / 'seq'}:{apps[0]}",
        *common,
    )
    second = _timed(
        "image",
        str(spec),
        apps[1],
        "--base",
        args.base,
        "--to",
        f"oci-layout:{work / 'seq'}:{apps[1]}",
        *common,
    )

    one = _manifest(work / "seq", apps[0])
    two = _manifest(work / "seq", apps[1])
    labels_layers = _stack_layer_count(work / "seq", one)
    skip = len(one["layers"]) - labels_layers  # type: ignore[arg-type]
    ours_one, ours_two = _layer_sizes(one, skip), _layer_sizes(two, skip)
    have = {d for d, _ in ours_one}
    second_push = sum(size for digest, size in ours_two if digest not in have)
    clamp = int(time.time())
    plain = _plain_images(
        spec, common[:2], artifacts, apps, work, PurePosixPath("/opt/venvstacks"), clamp
    )

    rows = [
        ("layered, both apps, cold store", f"{cold:.1f}", "", ""),
        ("layered, both apps, warm store", f"{warm:.1f}", "", ""),
        (f"layered, {apps[0]} (cold)", f"{first:.1f}", f"{sum(s for _, s in ours_one)}", ""),
        (
            f"layered, {apps[1]} after {apps[0]}",
            f"{second:.1f}",
            f"{sum(s for _, s in ours_two)}",
            f"{second_push}",
        ),
        (f"plain COPY, {apps[0]}", f"{plain[0][0]:.1f}", f"{plain[0][1]}", ""),
        (f"plain COPY, {apps[1]}", f"{plain[1][0]:.1f}", f"{plain[1][1]}", f"{plain[1][1]}"),
    ]
    print(f"{'image':45} {'seconds':>8} {'stack bytes':>14} {'2nd push bytes':>15}")
    for name, seconds, size, pushed in rows:
        print(f"{name:45} {seconds:>8} {size:>14} {pushed:>15}")
    print(f"layers per app ({apps[0]}): " + ", ".join(f"{d[7:19]}={s}" for d, s in ours_one))
    print(f"layers per app ({apps[1]}): " + ", ".join(f"{d[7:19]}={s}" for d, s in ours_two))
    registry_rows = _registry_rows(spec, common, args.base, apps, work)
    if registry_rows:
        print(f"\n{'registry step':45} {'seconds':>8} {'bytes':>14}  blobs")
        for name, seconds, moved, note in registry_rows:
            print(f"{name:45} {seconds:>8} {moved:>14}  {note}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def _stack_layer_count(layout: Path, manifest: dict[str, object]) -> int:
    config = manifest["config"]
    assert isinstance(config, dict)
    data = json.loads((layout / "blobs" / "sha256" / str(config["digest"])[7:]).read_text())
    return len(str(data["config"]["Labels"]["io.venvstacks.layers"]).split(","))


if __name__ == "__main__":
    main()
