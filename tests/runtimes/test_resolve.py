"""Tests for venvstacks.runtimes.{request,archives,download,host,install,resolve}: runtime specs to installed runtimes."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import lzma
import os
import re
import socket
import subprocess
import tarfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from venvstacks.cli.runtime import runtime
from venvstacks.errors import RuntimeProvisionError
from venvstacks.plan.platforms import TargetPlatform
from venvstacks.runtimes import host as host_runtimes
from venvstacks.runtimes import install as install_module
from venvstacks.runtimes.archives import (
    archive_name,
    scan_archive_dirs,
    sha256_file,
    write_checksum_file,
)
from venvstacks.runtimes.install import install_runtime
from venvstacks.runtimes.probe import clean_subprocess_env
from venvstacks.runtimes.request import (
    HOST_PACKED_WARNING,
    ArchiveCandidate,
    RuntimeRequest,
    RuntimeSource,
    archive_dirs_from,
    parse_archive_name,
    parse_implementation,
    select_archive,
)
from venvstacks.runtimes.resolve import fallback_notice, find_runtime

LINUX = TargetPlatform.LINUX
TRIPLE = "x86_64-unknown-linux-gnu"
OFFLINE_HINT = "no network? pass --runtime-archives DIR, or make one with `venvstacks runtime pack`"


def message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The user-facing message of a raised StackError (the last constructor argument)."""
    return str(excinfo.value.args[-1])


# ---------------------------------------------------------------------------------------------
# Small fake archives, for the selection and installation logic
# ---------------------------------------------------------------------------------------------

FAKE_TREE: dict[str, bytes] = {
    "python/bin/python3.11": b"#!/bin/sh\necho fake python\n",
    "python/bin/pip": b"#!/bin/sh\necho pip\n",
    "python/bin/idle3": b"#!/bin/sh\necho idle\n",
    "python/lib/python3.11/os.py": b"# os\n",
    "python/lib/python3.11/site-packages/README.txt": b"site-packages\n",
    "python/lib/python3.11/site-packages/pip/__init__.py": b"",
    "python/lib/python3.11/site-packages/pip-24.0.dist-info/RECORD": (
        b"pip/__init__.py,,\n../../../bin/pip,,\npip-24.0.dist-info/RECORD,,\n"
    ),
    "python/lib/python3.11/site-packages/setuptools.pth": b"",
}


def _tar_bytes(tree: Mapping[str, bytes], symlinks: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in sorted(tree.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755 if "/bin/" in name else 0o644
            tar.addfile(info, io.BytesIO(content))
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def make_archive(
    folder: Path,
    name: str,
    tree: Mapping[str, bytes] = FAKE_TREE,
    *,
    symlinks: Mapping[str, str] | None = None,
    checksum: bool = True,
) -> Path:
    """A tiny install_only-shaped archive (``.tar.gz``, ``.tar.xz`` or ``.tar.zst`` by name)."""
    links = {"python/bin/python3": "python3.11"} if symlinks is None else symlinks
    raw = _tar_bytes(tree, links)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    elif name.endswith(".xz"):
        path.write_bytes(lzma.compress(raw))
    else:
        path.write_bytes(gzip.compress(raw, mtime=0))
    if checksum:
        write_checksum_file(path, sha256_file(path))
    return path


def fake_name(version: str, tag: str = "20240107", triple: str = TRIPLE, ext: str = "gz") -> str:
    return f"cpython-{version}+{tag}-{triple}-install_only.tar.{ext}"


def source_for(archive: Path, version: str = "3.11.7") -> RuntimeSource:
    return RuntimeSource(archive, sha256_file(archive), "archive", f"archive {archive}", version)


# ---------------------------------------------------------------------------------------------
# Pure logic: specs, names, selection, folder lists
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cpython@3.11.7", RuntimeRequest("cpython", "3.11.7")),
        ("cpython@3.12", RuntimeRequest("cpython", "3.12")),
        ("pypy@3.10", RuntimeRequest("pypy", "3.10")),
        ("cpython@3.11.7-x86_64", RuntimeRequest("cpython", "3.11.7", "x86_64")),
        ("cpython@3.11.7-arm64", RuntimeRequest("cpython", "3.11.7", "aarch64")),
        ("cpython@3.11.7-32", RuntimeRequest("cpython", "3.11.7", "x86")),
    ],
)
def test_parse_implementation(spec: str, expected: RuntimeRequest) -> None:
    parsed = parse_implementation(spec)
    assert parsed == expected
    implementation, version = parsed
    assert (implementation, version) == (expected.implementation, expected.version)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cpython", "must look like 'cpython@3.12' or 'cpython@3.12.7', not 'cpython'"),
        ("cpython@3", "must look like"),
        ("cpython@3.11.7.1", "must look like"),
        ("cpython@latest", "must look like"),
        ("jython@3.11", "implementation must be one of cpython, pypy"),
        ("CPython@3.11", "must look like"),
    ],
)
def test_parse_implementation_rejects(spec: str, expected: str) -> None:
    with pytest.raises(ValueError, match="python_implementation") as excinfo:
        parse_implementation(spec)
    assert expected in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (fake_name("3.11.7"), ("3.11.7", TRIPLE, "20240107")),
        (f"cpython-3.12.1+local-{TRIPLE}-install_only.tar.gz", ("3.12.1", TRIPLE, "local")),
        (f"cpython-3.13.0rc2-{TRIPLE}-install_only_stripped.tar.zst", ("3.13.0rc2", TRIPLE, None)),
        (
            fake_name("3.11.7", triple="aarch64-apple-darwin", ext="xz"),
            ("3.11.7", "aarch64-apple-darwin", "20240107"),
        ),
        (f"cpython-3.11.7+20240107-{TRIPLE}-pgo+lto-full.tar.zst", None),
        (fake_name("3.11.7") + ".sha256", None),
        (fake_name("3.11.7", ext="bz2"), None),
    ],
)
def test_parse_archive_name(name: str, expected: tuple[str, str, str | None] | None) -> None:
    assert parse_archive_name(name) == expected


def _candidates(*versions: str) -> list[ArchiveCandidate]:
    return [ArchiveCandidate(Path(f"/a/{i}-{v}"), v, TRIPLE, None) for i, v in enumerate(versions)]


@pytest.mark.parametrize(
    ("request_version", "available", "chosen"),
    [
        ("3.11.7", ["3.11.9", "3.11.7", "3.12.1"], "3.11.7"),
        ("3.11", ["3.11.9", "3.11.10", "3.12.1", "3.11.2"], "3.11.10"),
        ("3.11", ["3.11.9", "3.11.10rc1"], "3.11.9"),
        ("3.13.0rc1", ["3.13.0rc1"], "3.13.0rc1"),
        ("3.11.8", ["3.11.7", "3.11.9"], None),
        ("3.10", ["3.11.7"], None),
    ],
)
def test_select_archive(request_version: str, available: list[str], chosen: str | None) -> None:
    found = select_archive(RuntimeRequest("cpython", request_version), _candidates(*available))
    assert (found.version if found else None) == chosen


def test_select_archive_prefers_the_earlier_folder_for_the_same_version() -> None:
    candidates = _candidates("3.11.7", "3.11.9", "3.11.9")
    found = select_archive(RuntimeRequest("cpython", "3.11"), candidates)
    assert found is candidates[1]
    assert select_archive(RuntimeRequest("pypy", "3.11"), candidates) is None


def test_archive_dirs_from_orders_cli_env_config(tmp_path: Path) -> None:
    env = {"VENVSTACKS_RUNTIME_ARCHIVES": os.pathsep.join(["/env/a", "", "/cli/1", "~/rt"])}
    dirs = archive_dirs_from(["/cli/1", Path("/cli/2")], env, ["/cfg", "/env/a"])
    assert dirs == (
        Path("/cli/1"),
        Path("/cli/2"),
        Path("/env/a"),
        Path.home() / "rt",
        Path("/cfg"),
    )
    assert archive_dirs_from(env={}) == ()


def test_scan_archive_dirs_filters_by_platform_and_keeps_folder_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, names in {
        first: [fake_name("3.12.1"), fake_name("3.11.7", triple="aarch64-apple-darwin"), "x.txt"],
        second: [fake_name("3.11.7"), fake_name("3.11.7", triple="x86_64_v3-unknown-linux-gnu")],
    }.items():
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(b"")
    found = scan_archive_dirs([second, tmp_path / "missing", first], LINUX)
    assert [(c.path.parent.name, c.version) for c in found] == [
        ("second", "3.11.7"),
        ("first", "3.12.1"),
    ]
    assert len(scan_archive_dirs([first, second])) == 4


# ---------------------------------------------------------------------------------------------
# (1) archive folders
# ---------------------------------------------------------------------------------------------


def test_find_runtime_uses_archive_folders_first(tmp_path: Path) -> None:
    cli_dir, env_dir = tmp_path / "cli", tmp_path / "env"
    make_archive(cli_dir, fake_name("3.11.7"))
    make_archive(env_dir, fake_name("3.11.7", tag="20990101"))
    make_archive(env_dir, fake_name("3.11.9"))
    dirs = archive_dirs_from([cli_dir], {"VENVSTACKS_RUNTIME_ARCHIVES": str(env_dir)})
    exact = find_runtime(
        "cpython@3.11.7", archive_dirs=dirs, cache_dir=tmp_path / "cache", platform=LINUX
    )
    assert exact.archive == cli_dir / fake_name("3.11.7")
    assert (exact.kind, exact.version, exact.portable, exact.warning) == (
        "archive",
        "3.11.7",
        True,
        None,
    )
    assert exact.sha256 == sha256_file(exact.archive)
    newest = find_runtime(
        "cpython@3.11", archive_dirs=dirs, cache_dir=tmp_path / "cache", platform=LINUX
    )
    assert newest.archive == env_dir / fake_name("3.11.9")
    assert not (tmp_path / "cache").exists()  # nothing downloaded or packed


def test_host_packed_archives_say_they_are_not_portable(tmp_path: Path) -> None:
    make_archive(tmp_path, fake_name("3.12.1", tag="local"))
    found = find_runtime(
        "cpython@3.12", archive_dirs=[tmp_path], cache_dir=tmp_path, platform=LINUX
    )
    assert (found.portable, found.warning) == (False, HOST_PACKED_WARNING)


def test_archive_not_matching_its_sha256_file_is_refused(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, fake_name("3.11.7"))
    archive.with_name(archive.name + ".sha256").write_text(f"{'0' * 64}  {archive.name}\n")
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime("cpython@3.11.7", archive_dirs=[tmp_path], cache_dir=tmp_path, platform=LINUX)
    assert "does not match its .sha256 file" in message(excinfo)


def test_malformed_sha256_file_is_refused(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, fake_name("3.11.7"))
    archive.with_name(archive.name + ".sha256").write_text("not a digest\n")
    with pytest.raises(RuntimeProvisionError, match="does not hold a sha256 digest"):
        find_runtime("cpython@3.11.7", archive_dirs=[tmp_path], cache_dir=tmp_path, platform=LINUX)


def test_archive_without_sha256_file_is_used_unverified(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, fake_name("3.11.7"), checksum=False)
    found = find_runtime(
        "cpython@3.11.7", archive_dirs=[tmp_path], cache_dir=tmp_path, platform=LINUX
    )
    assert found.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_arch_suffix_must_match_the_platform(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeProvisionError, match="asks for aarch64, but the target is linux_x86_64"
    ):
        find_runtime("cpython@3.11.7-arm64", cache_dir=tmp_path, platform=LINUX)


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("ext", ["gz", "xz", "zst"])
def test_install_runtime_unpacks_and_empties_site_packages(tmp_path: Path, ext: str) -> None:
    archive = make_archive(tmp_path / "archives", fake_name("3.11.7", ext=ext))
    target = tmp_path / "build" / "cpython-3.11"
    python = install_runtime(source_for(archive), target)
    assert python == target / "bin" / "python3"
    assert python.resolve() == target / "bin" / "python3.11"
    site = target / "lib" / "python3.11" / "site-packages"
    assert [p.name for p in site.iterdir()] == ["README.txt"]
    assert sorted(p.name for p in (target / "bin").iterdir()) == [
        "idle3",  # not from a removed distribution: left for the portability clean-up
        "python",
        "python3",
        "python3.11",
    ]
    assert (target / "bin" / "python").readlink() == Path("python3")
    assert _leftovers(target.parent) == []


def test_install_runtime_replaces_an_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "rt"
    (target / "stale").mkdir(parents=True)
    install_runtime(source_for(make_archive(tmp_path, fake_name("3.11.7"))), target)
    assert not (target / "stale").exists()
    assert (target / "bin" / "python3").exists()
    assert _leftovers(tmp_path) == []


def test_tampered_archive_fails_its_checksum_and_installs_nothing(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "archives", fake_name("3.11.7"))
    source = source_for(archive)
    archive.write_bytes(archive.read_bytes() + b"tampered")
    target = tmp_path / "build" / "rt"
    with pytest.raises(RuntimeProvisionError) as excinfo:
        install_runtime(source, target)
    text = message(excinfo)
    assert text.startswith(f"{archive} failed its checksum (expected {source.sha256}, got ")
    assert text.endswith("nothing was installed")
    assert "\n" not in text
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_archive_without_python3_is_a_clear_error(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, fake_name("3.11.7"), {"python/README": b"x"}, symlinks={})
    with pytest.raises(RuntimeProvisionError) as excinfo:
        install_runtime(source_for(archive), tmp_path / "build" / "rt")
    assert message(excinfo) == (
        f"{archive} has no python/bin/python3: not an install_only runtime archive"
    )
    assert not (tmp_path / "build" / "rt").exists()
    assert _leftovers(tmp_path / "build") == []


def test_unsafe_archive_member_is_refused(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path, fake_name("3.11.7"), symlinks={"python/bin/python3": "/usr/bin/python3"}
    )
    with pytest.raises(RuntimeProvisionError, match="cannot unpack"):
        install_runtime(source_for(archive), tmp_path / "build" / "rt")
    assert not (tmp_path / "build" / "rt").exists()


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / fake_name("3.11.7")
    archive.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(RuntimeProvisionError, match=re.escape(f"cannot unpack {archive}: ")):
        install_runtime(source_for(archive), tmp_path / "build" / "rt")


def test_interrupted_install_never_leaves_a_complete_looking_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(tmp_path, fake_name("3.11.7"))
    target = tmp_path / "build" / "rt"

    def interrupted(root: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(install_module, "_empty_base_site_packages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        install_runtime(source_for(archive), target)
    assert not target.exists()
    assert _leftovers(target.parent) == []
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "previous").write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        install_runtime(source_for(archive), target)
    assert [p.name for p in (target / "bin").iterdir()] == ["previous"]


# ---------------------------------------------------------------------------------------------
# (2) downloads, against an HTTP server on loopback
# ---------------------------------------------------------------------------------------------


@dataclass
class Mirror:
    url: str
    folder: Path
    requests: list[str]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    """A python-build-standalone mirror on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder))
    )
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Mirror(f"http://{host!s}:{port}/pbs", folder, server.requests)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _pbs_filename(spec: str) -> str:
    """The archive name pbs-installer's index has for ``spec`` on linux_x86_64."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pbs-installer's importlib use
        import pbs_installer

        _, (url, _) = pbs_installer.get_download_link(
            spec, arch="x86_64", platform="linux", base_url="http://x"
        )
    return url.rsplit("/", 1)[-1]


def _publish(mirror: Mirror, archive: Path, name: str) -> None:
    (mirror.folder / "pbs").mkdir(exist_ok=True)
    (mirror.folder / "pbs" / name).write_bytes(archive.read_bytes())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_download_not_matching_pbs_checksum_is_discarded(tmp_path: Path, mirror: Mirror) -> None:
    name = _pbs_filename("3.11.7")
    _publish(mirror, make_archive(tmp_path / "made", name), name)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime("cpython@3.11.7", cache_dir=cache, platform=LINUX, base_url=mirror.url)
    text = message(excinfo)
    assert text.startswith(f"download of cpython@3.11.7 from {mirror.url}/{name} does not match")
    assert text.endswith("it was discarded")
    assert "\n" not in text
    assert mirror.requests == [f"/pbs/{name}"]
    assert list((cache / "downloads").iterdir()) == []  # no partial, no unverified file


def test_download_mirror_can_be_set_by_environment(
    tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _pbs_filename("3.12.1")
    _publish(mirror, make_archive(tmp_path / "made", name), name)
    monkeypatch.setenv("PBS_INSTALLER_BASE_URL", mirror.url)
    with pytest.raises(RuntimeProvisionError, match="does not match pbs-installer's checksum"):
        find_runtime("cpython@3.12.1", cache_dir=tmp_path, platform=LINUX)
    assert mirror.requests == [f"/pbs/{name}"]


def test_verified_download_is_cached_and_installs(
    tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole download path with a checksum we control (pbs-installer's index is faked)."""
    name = fake_name("3.11.7")
    archive = make_archive(tmp_path / "made", name)
    _publish(mirror, archive, name)
    import pbs_installer

    def link(request: str, **kwargs: object) -> tuple[object, tuple[str, str]]:
        version = pbs_installer.PythonVersion("cpython", 3, 11, 7)
        return version, (f"{kwargs['base_url']}/{name}", sha256_file(archive))

    monkeypatch.setattr(pbs_installer, "get_download_link", link)
    cache = tmp_path / "cache"
    for _ in range(2):
        found = find_runtime("cpython@3.11", cache_dir=cache, platform=LINUX, base_url=mirror.url)
    assert mirror.requests == [f"/pbs/{name}"]  # the second lookup used the cached download
    assert (found.kind, found.version, found.archive) == (
        "download",
        "3.11.7",
        cache / "downloads" / name,
    )
    assert found.description == f"downloaded from {mirror.url}/{name}"
    assert (install_runtime(found, tmp_path / "rt")).exists()


def test_missing_file_on_the_mirror_is_a_download_failure(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime("cpython@3.11.7", cache_dir=tmp_path, platform=LINUX, base_url=mirror.url)
    assert (
        message(excinfo)
        == f"cannot download cpython@3.11.7 (HTTP 404 File not found); {OFFLINE_HINT}"
    )


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [(f"http://127.0.0.1:{_closed_port()}", "Connection refused"), ("http://pbs.invalid", "")],
    ids=["refused", "dns"],
)
def test_unreachable_network_is_one_clear_line(tmp_path: Path, base_url: str, reason: str) -> None:
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime("cpython@3.11.7", cache_dir=tmp_path, platform=LINUX, base_url=base_url)
    text = message(excinfo)
    assert text.startswith("cannot download cpython@3.11.7 (")
    assert reason in text
    assert text.endswith(f"); {OFFLINE_HINT}")
    assert "\n" not in text
    assert not list(tmp_path.rglob("*.part"))


def test_empty_archive_folder_is_named_instead_of_the_hint(tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    folder.mkdir()
    base_url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime(
            "cpython@3.11.7", archive_dirs=[folder], cache_dir=tmp_path, platform=LINUX,
            base_url=base_url,
        )
    text = message(excinfo)
    assert OFFLINE_HINT not in text
    assert f"no archive for cpython@3.11.7 (linux_x86_64) in {folder}" in text
    assert "\n" not in text


def test_unknown_version_is_reported(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeProvisionError, match=r"pbs-installer knows no cpython@3\.11\.99 build"
    ):
        find_runtime("cpython@3.11.99", cache_dir=tmp_path, platform=LINUX, base_url="http://x")


# ---------------------------------------------------------------------------------------------
# (3) host fallback, and real runtimes end to end
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_host_fallback_packs_once_and_is_marked_not_portable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if host_runtimes.find_host_interpreter("3.10") is None:
        pytest.skip("no host CPython 3.10 to pack")
    offline = f"http://127.0.0.1:{_closed_port()}"
    cache = tmp_path / "cache"
    found = find_runtime("cpython@3.10", fallback="host", cache_dir=cache, base_url=offline)
    assert found.kind == "host-packed"
    assert found.description.startswith("host-packed from ")
    assert (found.portable, found.warning) == (False, HOST_PACKED_WARNING)
    assert found.archive == cache / "host-packed" / archive_name(found.version, "x86_64")
    assert found.notice is not None and "pass --runtime-archives" not in found.notice
    assert found.notice.startswith(f"using this machine's CPython {found.version} (")

    def no_packing(*args: object) -> None:
        raise AssertionError("packed again")

    monkeypatch.setattr(host_runtimes, "pack_runtime", no_packing)
    again = find_runtime(
        f"cpython@{found.version}", fallback="host", cache_dir=cache, base_url=offline
    )
    assert dataclasses.replace(again, notice=None) == dataclasses.replace(found, notice=None)


def test_without_host_fallback_the_download_error_stands(tmp_path: Path) -> None:
    offline = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RuntimeProvisionError, match=r"^cannot download cpython@3\.10 "):
        find_runtime("cpython@3.10", cache_dir=tmp_path, base_url=offline)


def test_host_fallback_without_a_host_python_names_both_failures(tmp_path: Path) -> None:
    offline = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RuntimeProvisionError) as excinfo:
        find_runtime("cpython@3.9.99", fallback="host", cache_dir=tmp_path, base_url=offline)
    assert message(excinfo) == (
        "pbs-installer knows no cpython@3.9.99 build for linux_x86_64; "
        "host fallback failed too: no host Python matching cpython@3.9.99 was found"
    )


def test_cached_host_pack_without_checksum_is_not_used(tmp_path: Path) -> None:
    make_archive(tmp_path, fake_name("3.10.13", tag="local"), checksum=False)
    assert host_runtimes._cached_host_pack(tmp_path, LINUX, "3.10.13") is None
    make_archive(tmp_path, fake_name("3.10.13", tag="local"))
    assert host_runtimes._cached_host_pack(tmp_path, LINUX, "3.10.13") is not None


@pytest.mark.slow
def test_real_runtime_from_archive_folder_installs_and_runs(
    runtime_archive_dir: Path, runtime_versions: dict[str, str], tmp_path: Path
) -> None:
    found = find_runtime("cpython@3.12", archive_dirs=[runtime_archive_dir], cache_dir=tmp_path)
    assert found.version == runtime_versions["3.12"]
    python = install_runtime(found, tmp_path / "build" / "cpython-3.12")
    check = "import ssl, sqlite3, ctypes, sys, pathlib; print(sys.prefix); print(sorted(p.name for p in pathlib.Path(sys.prefix, 'lib/python3.12/site-packages').iterdir()))"
    ran = subprocess.run(
        [str(python), "-I", "-c", check],
        capture_output=True,
        text=True,
        check=True,
        env=clean_subprocess_env(),
    )
    assert ran.stdout.splitlines() == [str(tmp_path / "build" / "cpython-3.12"), "['README.txt']"]


def test_cli_list_shows_archives(tmp_path: Path) -> None:
    make_archive(tmp_path, fake_name("3.11.7"))
    make_archive(tmp_path, fake_name("3.12.1", tag="local"), checksum=False)
    result = CliRunner().invoke(runtime, ["list", "--runtime-archives", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"cpython@3.11.7  {TRIPLE}  python-build-standalone, sha256 file  ")
    assert lines[1].startswith(f"cpython@3.12.1  {TRIPLE}  host-packed, no sha256 file  ")


def test_fallback_notice_says_what_why_and_how_to_choose_another(tmp_path: Path) -> None:
    source = RuntimeSource(
        archive=tmp_path / "a.tar.gz",
        sha256="0" * 64,
        kind="host-packed",
        description="host-packed from /usr",
        version="3.11.2",
        portable=False,
        warning=HOST_PACKED_WARNING,
    )
    reason = "cannot download cpython@3.11 (Name or service not known)"
    notice = fallback_notice(source, [], reason)
    assert notice.startswith("using this machine's CPython 3.11.2 (/usr), packed into a ")
    assert 'runtime-fallback is "host": no runtime archive folder was given and cannot ' in notice
    assert "not portable" in notice and "--runtime-archives DIR" in notice
    assert OFFLINE_HINT not in notice and "\n" not in notice
    in_folder = fallback_notice(source, [tmp_path / "rt"], reason)
    assert f"no archive matched in {tmp_path / 'rt'} and cannot download" in in_folder
