"""End to end: publish a real built stack (archives, metadata, local export) with the real CLI.

One module-scoped pair of builds is shared by the tests, so the file stays well under 90 s:

* ``source``: the basic stack, locked once (its ``requirements/`` are the "committed" locks);
* ``one``: a copy of it that runs ``lock`` (a no-op on valid locks) then ``build``, and is
  published separately with ``publish`` in every tar format;
* ``two``: another copy at a different, longer path (same depth) that runs
  ``build --lock-if-needed --publish`` in one go (tar.xz), then ``publish`` in the other formats.

The two builds must give byte-identical archives in every format. The test that edits the stack
(incremental publishing) comes last, so the read-only tests see the stack as first built.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from fixtures_stacks import StackProject, write_basic_stack

import venvstacks
from venvstacks.envs.sourcetree import default_source_filter, hash_module

pytestmark = pytest.mark.slow

FORMATS = ("tar.xz", "tar.gz", "tar.zst")
PLATFORM = "linux_x86_64"
LAYERS = ("cpython-3.11", "framework-frame", "framework-frame2", "app-a", "app-b")
TARGETS = {env: env for env in LAYERS} | {"app-b": "app-b@1"}
CATEGORY = {
    "cpython-3.11": "runtimes",
    "framework-frame": "frameworks",
    "framework-frame2": "frameworks",
    "app-a": "applications",
    "app-b": "applications",
}


@dataclass
class Builds:
    source: StackProject
    one: StackProject
    two: StackProject
    locks: dict[str, bytes]

    def out(self, project: StackProject, fmt: str) -> Path:
        return project.root.parent / f"out-{fmt}"


def _copy_stack(source: StackProject, root: Path) -> StackProject:
    """The stack folder with its committed locks, no build dir."""
    root.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source.root, root, ignore=shutil.ignore_patterns("_build", "_artifacts"))
    return StackProject(root, source.runtime_archives, source.wheelhouse)


def _publish(project: StackProject, fmt: str, output: Path, *args: str) -> Mapping[str, object]:
    result = project.run(
        "publish", str(project.spec), "--format", fmt, "--output-dir", str(output), *args
    )
    assert "Full stack manifest saved to: __venvstacks__/venvstacks.json" in result.stdout
    return json.loads((output / "__venvstacks__" / "venvstacks.json").read_text())


@pytest.fixture(scope="module")
def builds(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive_dir: Path,
    wheelhouse: Path,
    runtime_versions: Mapping[str, str],
) -> Builds:
    base = tmp_path_factory.mktemp("publish")
    source = StackProject(base / "source" / "stack", runtime_archive_dir, wheelhouse)
    source.root.mkdir(parents=True)
    write_basic_stack(source, runtime_versions)
    source.lock()
    locks = source.lock_files()
    one = _copy_stack(source, base / "one" / "stack")
    # Same depth as the source: locks name --local-wheels files relative to themselves.
    two = _copy_stack(source, base / "two-at-a-longer-path" / "stack")
    # one: lock separately first (valid committed locks: nothing may change), then build.
    one.lock()
    one.run("build", str(one.spec), *one.source_options())
    # two: lock-if-needed, build and publish (default format) in the same run.
    two.run(
        "build", str(two.spec), "--lock-if-needed", *two.source_options(),
        "--publish", "--output-dir", str(two.root.parent / "out-tar.xz"),
    )  # fmt: skip
    assert one.lock_files() == locks
    assert two.lock_files() == locks
    builds = Builds(source, one, two, locks)
    for fmt in FORMATS:
        _publish(one, fmt, builds.out(one, fmt))
        if fmt != "tar.xz":
            _publish(two, fmt, builds.out(two, fmt))
    return builds


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archives(folder: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.name.startswith(LAYERS)}


def _tar_stream(path: Path) -> bytes:
    """The uncompressed tar stream of an archive (xz, gz or zst)."""
    data = path.read_bytes()
    if path.name.endswith(".tar.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".tar.gz"):
        return gzip.decompress(data)
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.read()


def _members(stream: bytes) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        for info in tar:
            content = tar.extractfile(info) if info.isfile() else None
            yield info, content.read() if content is not None else None


def _meta(output: Path, env: str, tag: str = "") -> dict[str, object]:
    data = json.loads((output / "__venvstacks__" / "env_metadata" / f"{env}{tag}.json").read_text())
    assert isinstance(data, dict)
    return data


def _clamp(locked_at: object) -> int:
    return int(datetime.fromisoformat(str(locked_at)).timestamp())


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------


def test_two_builds_give_identical_archives_in_every_format(builds: Builds) -> None:
    names = {f"{TARGETS[env]}" for env in LAYERS}
    for fmt in FORMATS:
        one, two = _archives(builds.out(builds.one, fmt)), _archives(builds.out(builds.two, fmt))
        assert set(one) == {f"{name}.{fmt}" for name in names}
        assert one == two, f"{fmt} archives differ between the two builds"
        for env in LAYERS:
            meta_one = _meta(builds.out(builds.one, fmt), env)
            meta_two = _meta(builds.out(builds.two, fmt), env)
            assert meta_one == meta_two
            assert meta_one["archive_hashes"] == {"sha256": one[f"{TARGETS[env]}.{fmt}"]}


def test_archive_members_are_normalised_and_hold_no_build_paths(builds: Builds) -> None:
    forbidden = [
        b"/_build/",
        *(str(p.root).encode() for p in (builds.source, builds.one, builds.two)),
        str(builds.source.root.parents[1]).encode(),  # the test's whole tmp folder
    ]
    for env in LAYERS:
        clamp = _clamp(_meta(builds.out(builds.one, "tar.xz"), env)["locked_at"])
        streams = {
            fmt: _tar_stream(builds.out(builds.one, fmt) / f"{TARGETS[env]}.{fmt}")
            for fmt in FORMATS
        }
        # Every format compresses the very same tar stream: check its members once.
        assert streams["tar.gz"] == streams["tar.xz"] == streams["tar.zst"], env
        names = []
        for info, content in _members(streams["tar.xz"]):
            names.append(info.name)
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root"), info
            assert info.mtime == clamp, (info.name, info.mtime, clamp)
            assert info.mode & 0o7022 == 0, (info.name, oct(info.mode))
            parts = info.name.split("/")
            assert parts[0] == TARGETS[env]
            assert "__pycache__" not in parts and not info.name.endswith(".pyc"), info.name
            assert parts[-1] not in ("pyvenv.cfg", "sitecustomize.py"), info.name
            assert not (len(parts) == 2 and parts[1].startswith(".")), f"build-time {info.name}"
            if content is not None:
                leaks = [needle for needle in forbidden if needle in content]
                assert not leaks, f"{info.name} holds build paths {leaks}"
        assert names == sorted(names, key=lambda n: n.split("/")), f"{env}: unsorted members"
        assert f"{TARGETS[env]}/postinstall.py" in names
        assert f"{TARGETS[env]}/share/venv/metadata/venvstacks_layer.json" in names


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------

COMMON_KEYS = {
    "layer_name", "install_target", "requirements_hash", "lock_version", "locked_at",
    "runtime_layer", "python_implementation", "bound_to_implementation",
}  # fmt: skip
ARCHIVE_KEYS = {
    "archive_build",
    "archive_name",
    "target_platform",
    "archive_size",
    "archive_hashes",
}
APP_KEYS = {"app_launch_module", "app_launch_module_hash"}
REQUIRED_LAYERS = {
    "framework-frame": [],
    "framework-frame2": ["framework-frame"],
    "app-a": ["framework-frame2", "framework-frame"],  # C3 order: nearest first
    "app-b": [],
}


def _expected_keys(env: str) -> set[str]:
    keys = COMMON_KEYS | ARCHIVE_KEYS | {"venvstacks_build"}
    if env != "cpython-3.11":
        keys.add("required_layers")
    if env.startswith("app-"):
        keys |= APP_KEYS
    if env == "app-b":
        keys.add("app_support_modules")
    return keys


def test_layer_metadata_has_every_key_with_real_values(
    builds: Builds, runtime_versions: Mapping[str, str]
) -> None:
    out = builds.out(builds.one, "tar.xz")
    project = builds.one
    for env in LAYERS:
        meta = _meta(out, env)
        lock = project.lock_meta(env)
        assert set(meta) == _expected_keys(env), env
        assert meta["layer_name"] == env
        assert meta["install_target"] == TARGETS[env]
        assert meta["requirements_hash"] == lock["requirements_hash"]
        assert str(meta["requirements_hash"]).startswith("sha256:")
        assert meta["lock_version"] == lock["lock_version"] == 1
        assert meta["locked_at"] == lock["locked_at"]
        assert datetime.fromisoformat(str(meta["locked_at"])).utcoffset() is not None
        assert meta["runtime_layer"] == "cpython-3.11"
        assert meta["python_implementation"] == f"cpython@{runtime_versions['3.11']}"
        assert meta["bound_to_implementation"] is (env == "cpython-3.11")
        if env in REQUIRED_LAYERS:
            assert meta["required_layers"] == REQUIRED_LAYERS[env]
        archive = out / f"{TARGETS[env]}.tar.xz"
        assert meta["archive_build"] == 1
        assert meta["archive_name"] == archive.name
        assert meta["target_platform"] == PLATFORM
        assert meta["archive_size"] == archive.stat().st_size
        assert meta["archive_hashes"] == {"sha256": _sha256(archive)}
        build = meta["venvstacks_build"]
        assert isinstance(build, dict)
        assert build["venvstacks_version"] == venvstacks.__version__
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", str(build["uv_version"])), build
        assert build["runtime"]["version"] == runtime_versions["3.11"]
        assert re.fullmatch(r"[0-9a-f]{64}", build["runtime"]["sha256"])
    root = project.root
    keep = default_source_filter(root)
    app_a, app_b = _meta(out, "app-a"), _meta(out, "app-b")
    assert app_a["app_launch_module"] == "app_a"
    assert app_a["app_launch_module_hash"] == hash_module(root / "app_a.py", source_filter=keep)
    assert str(app_a["app_launch_module_hash"]).startswith("sha256:")
    assert app_b["app_launch_module"] == "launch_b"
    assert app_b["app_launch_module_hash"] == hash_module(root / "launch_b", source_filter=keep)
    assert str(app_b["app_launch_module_hash"]).startswith("sha256/")  # 0.8.0's directory quirk
    assert app_b["app_support_modules"] == [
        {"name": "helper_b", "hash": hash_module(root / "helper_b.py", source_filter=keep)}
    ]


def test_manifest_lists_every_layer_by_category(builds: Builds) -> None:
    out = builds.out(builds.one, "tar.xz")
    path = out / "__venvstacks__" / "venvstacks.json"
    text = path.read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    assert list(manifest) == ["layers"]
    assert list(manifest["layers"]) == ["applications", "frameworks", "runtimes"]  # sorted keys
    by_category: dict[str, list[dict[str, object]]] = {}
    for env in LAYERS:
        by_category.setdefault(CATEGORY[env], []).append(_meta(out, env))
    assert manifest["layers"] == by_category  # definition order within each category
    assert sorted(p.name for p in (out / "__venvstacks__" / "env_metadata").iterdir()) == sorted(
        f"{env}.json" for env in LAYERS
    )


def test_tag_outputs_names(builds: Builds) -> None:
    out = builds.one.root.parent / "tagged"
    manifest = builds.one.run(
        "publish", str(builds.one.spec), "--tag-outputs", "--include", "app-*",
        "--output-dir", str(out),
    )  # fmt: skip
    assert manifest.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "__venvstacks__",
        f"app-a-{PLATFORM}-1.tar.xz",
        f"app-b@1-{PLATFORM}-1.tar.xz",
    ]
    meta_dir = out / "__venvstacks__"
    assert sorted(p.name for p in meta_dir.iterdir()) == [
        "env_metadata",
        f"venvstacks-{PLATFORM}.json",
    ]
    assert sorted(p.name for p in (meta_dir / "env_metadata").iterdir()) == [
        f"app-a-{PLATFORM}.json",
        f"app-b-{PLATFORM}.json",
    ]
    meta = _meta(out, "app-b", f"-{PLATFORM}")
    assert meta["archive_name"] == f"app-b@1-{PLATFORM}-1.tar.xz"
    assert meta["install_target"] == "app-b@1"
    listed = json.loads((meta_dir / f"venvstacks-{PLATFORM}.json").read_text())["layers"]
    assert listed["runtimes"] == listed["frameworks"] == []
    assert [m["archive_name"] for m in listed["applications"]] == [
        f"app-a-{PLATFORM}-1.tar.xz",
        f"app-b@1-{PLATFORM}-1.tar.xz",
    ]


def test_compression_level_is_applied_and_part_of_reuse(builds: Builds) -> None:
    project = builds.one
    base = project.root.parent
    sizes = {}
    for level in ("1", "9"):
        out = base / f"level-{level}"
        args = ("--include", "app-a", "--compression-level", level)
        _publish(project, "tar.gz", out, *args)
        archive = out / "app-a.tar.gz"
        sizes[level] = (archive.stat().st_size, _sha256(archive))
        state = (archive.stat().st_ino, archive.stat().st_mtime_ns)
        _publish(project, "tar.gz", out, *args)  # same level again: reused
        assert (archive.stat().st_ino, archive.stat().st_mtime_ns) == state
        assert _meta(out, "app-a")["archive_build"] == 1
        # Same tar stream whatever the level.
        assert _tar_stream(archive) == _tar_stream(builds.out(project, "tar.gz") / archive.name)
    assert sizes["1"] != sizes["9"]


# ---------------------------------------------------------------------------------------------
# Local export
# ---------------------------------------------------------------------------------------------


def test_local_export_gives_ready_to_run_folders(builds: Builds) -> None:
    project = builds.one
    out = project.root.parent / "export"
    result = project.run("local-export", str(project.spec), "--output-dir", str(out))
    assert "Full export manifest saved to: __venvstacks__/venvstacks.json" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(["__venvstacks__", *TARGETS.values()])
    for env in LAYERS:
        meta = _meta(out, env)
        assert set(meta) == _expected_keys(env) - ARCHIVE_KEYS
        assert meta["install_target"] == TARGETS[env]
        layer = out / TARGETS[env]
        assert (layer / "postinstall.py").is_file()
        assert not (layer / ".lock").exists()
        if env != "cpython-3.11":
            cfg = (layer / "pyvenv.cfg").read_text()
            assert f"home = {out / 'cpython-3.11' / 'bin'}\n" in cfg
    # Already post-installed: the apps run straight from the export, from its peer folders.
    out_a = subprocess.run(
        [str(out / "app-a" / "bin" / "python"), "-m", "app_a"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout  # fmt: skip
    where = {line.split()[0]: line.split()[2] for line in out_a.splitlines()}
    assert where["vs_app_a"].startswith(f"{out}/app-a/lib/")
    assert where["vs_frame2"].startswith(f"{out}/framework-frame2/lib/")
    assert where["vs_frame"].startswith(f"{out}/framework-frame/lib/")
    assert where["vs_base"].startswith(f"{out}/cpython-3.11/lib/")
    out_b = subprocess.run(
        [str(out / "app-b@1" / "bin" / "python"), "-m", "launch_b"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout  # fmt: skip
    assert out_b.split() == ["app-b", "1.0", where["vs_base"], "42"]
    # `venvstacks run` runs an app from the export folder too, by layer name or install target.
    ran = project.run("run", str(out), "b", "--flag")
    assert ran.stdout.split()[:2] == ["app-b", "1.0"], ran.stderr
    ran = project.run("run", str(out), "app-a")
    assert f"{out}/app-a/lib/" in ran.stdout, ran.stderr
    missing = project.run("run", str(out), "nope", check=False)
    assert missing.returncode == 1 and "'nope' matches no deployed application" in missing.stderr
    # Exporting again with nothing changed leaves every folder as it is.
    probe = out / "framework-frame" / "share" / "venv" / "metadata" / "venvstacks_layer.json"
    before = (probe.stat().st_ino, probe.stat().st_mtime_ns, (out / "app-a").stat().st_ino)
    again = project.run("-v", "local-export", str(project.spec), "--output-dir", str(out))
    assert project.ran_tasks(again) == []
    assert (probe.stat().st_ino, probe.stat().st_mtime_ns, (out / "app-a").stat().st_ino) == before
    # A deleted export folder is exported again, and only that one.
    shutil.rmtree(out / "app-b@1")
    again = project.run("-v", "local-export", str(project.spec), "--output-dir", str(out))
    assert project.ran_tasks(again) == ["export:app-b"]
    assert (out / "app-b@1" / "pyvenv.cfg").is_file()


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_publish_before_build_says_to_build(basic_stack: StackProject) -> None:
    for command in ("publish", "local-export"):
        result = basic_stack.run(command, str(basic_stack.spec), check=False)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and "venvstacks build" in lines[0]
        assert not (basic_stack.root / "_artifacts").exists()
        assert not (basic_stack.root / "_export").exists()


# ---------------------------------------------------------------------------------------------
# Incremental publishing (edits the stack: keep it last)
# ---------------------------------------------------------------------------------------------


def _archive_states(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if p.name.startswith(LAYERS)
    }


def _builds(folder: Path) -> dict[str, object]:
    return {env: _meta(folder, env)["archive_build"] for env in LAYERS}


def test_incremental_publishing(builds: Builds) -> None:
    project = builds.one
    out = project.root.parent / "incremental"
    fmt = "tar.zst"
    _publish(project, fmt, out)
    first = _archive_states(out)
    assert _builds(out) == dict.fromkeys(LAYERS, 1)

    # Nothing changed: no archive is rewritten, archive_build stays.
    again = project.run(
        "-v", "publish", str(project.spec), "--format", fmt, "--output-dir", str(out)
    )
    assert project.ran_tasks(again) == []
    assert _archive_states(out) == first
    assert _builds(out) == dict.fromkeys(LAYERS, 1)

    # Publishing elsewhere in between does not make this output dir look changed.
    _publish(project, "tar.gz", project.root.parent / "elsewhere")
    _publish(project, fmt, out)
    assert _archive_states(out) == first
    assert _builds(out) == dict.fromkeys(LAYERS, 1)

    # An unversioned app's launch module changes: only its archive is rebuilt (build 2).
    project.write("app_a.py", (project.root / "app_a.py").read_text() + "print('edited')\n")
    project.run("build", str(project.spec), *project.source_options())
    _publish(project, fmt, out)
    now = _archive_states(out)
    changed = {name for name in now if now[name] != first.get(name)}
    assert changed == {f"app-a.{fmt}"}
    assert _builds(out) == {**dict.fromkeys(LAYERS, 1), "app-a": 2}
    assert _meta(out, "app-a")["lock_version"] == 1

    # The versioned app's launch module changes: a new lock version, install target app-b@2,
    # and archive_build restarts at 1 for it; nothing else is rewritten.
    main = project.root / "launch_b" / "__main__.py"
    project.write("launch_b/__main__.py", main.read_text() + "print('edited')\n")
    project.run("build", str(project.spec), "--lock-if-needed", *project.source_options())
    before = _archive_states(out)
    _publish(project, fmt, out)
    after = _archive_states(out)
    assert {name for name in after if after[name] != before.get(name)} == {f"app-b@2.{fmt}"}
    meta_b = _meta(out, "app-b")
    assert (meta_b["lock_version"], meta_b["install_target"], meta_b["archive_build"]) == (
        2,
        "app-b@2",
        1,
    )
    assert meta_b["archive_name"] == f"app-b@2.{fmt}"
    manifest = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
    assert [m["install_target"] for m in manifest["layers"]["applications"]] == ["app-a", "app-b@2"]

    # A deleted archive is written again; the same bytes keep their archive_build.
    (out / f"framework-frame.{fmt}").unlink()
    _publish(project, fmt, out)
    assert (out / f"framework-frame.{fmt}").is_file()
    assert _meta(out, "framework-frame")["archive_build"] == 1
    hashes = _archives(out)
    builds_before = _builds(out)

    # --force rebuilds every archive; byte-identical archives keep their archive_build.
    forced = project.run(
        "-v", "publish", str(project.spec), "--format", fmt, "--output-dir", str(out), "--force"
    )
    assert len(project.ran_tasks(forced)) == len(LAYERS)
    assert _builds(out) == builds_before
    assert _archives(out) == hashes
