"""The root filesystem view: layers, whiteouts, symlinks and the loader's search."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from venvstacks.image.rootfs import RootFs


def _layer(entries: Sequence[tuple[str, str, str]]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            else:
                data = extra.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r|")


def _debian_like() -> RootFs:
    fs = RootFs()
    fs.apply_layer(
        _layer(
            [
                ("./lib", "link", "usr/lib"),
                ("./lib64", "link", "usr/lib64"),
                ("./usr/lib/x86_64-linux-gnu/libc.so.6", "file", ""),
                ("./usr/lib/x86_64-linux-gnu/libm.so.6", "file", ""),
                ("./usr/lib/x86_64-linux-gnu/libz.so.1", "link", "libz.so.1.2.13"),
                ("./usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "file", ""),
                ("./usr/lib64/ld-linux-x86-64.so.2", "link", "/lib/x86_64-linux-gnu/ld.so"),
                ("./usr/lib/x86_64-linux-gnu/ld.so", "file", ""),
                ("./etc/ld.so.conf", "file", "include /etc/ld.so.conf.d/*.conf\n"),
                (
                    "./etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                    "file",
                    "# multiarch\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n",
                ),
                ("./opt/.hidden", "file", ""),
            ]
        )
    )
    return fs


def test_symlinks_resolve_through_merged_usr() -> None:
    fs = _debian_like()
    assert fs.resolve("/lib/x86_64-linux-gnu/libc.so.6") == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert fs.exists("/lib64/ld-linux-x86-64.so.2")
    assert not fs.exists("/lib/nothing")
    assert fs.exists("/opt/.hidden")


def test_loader_dirs_follow_ld_so_conf_includes() -> None:
    fs = _debian_like()
    dirs = fs.loader_dirs(64)
    assert dirs[:2] == ["/usr/local/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]
    assert fs.find_library("libz.so.1", dirs) == "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    assert fs.find_library("libssl.so.3", dirs) is None


def test_whiteouts_remove_lower_files_and_opaque_folders_empty_them() -> None:
    fs = _debian_like()
    fs.apply_layer(_layer([("usr/lib/x86_64-linux-gnu/.wh.libm.so.6", "file", "")]))
    assert not fs.exists("/lib/x86_64-linux-gnu/libm.so.6")
    assert fs.exists("/lib/x86_64-linux-gnu/libc.so.6")
    fs.apply_layer(
        _layer(
            [
                ("etc/ld.so.conf.d/.wh..wh..opq", "file", ""),
                ("etc/ld.so.conf.d/new.conf", "file", "/new\n"),
            ]
        )
    )
    assert fs.list_dir("/etc/ld.so.conf.d") == ["new.conf"]
    assert "/new" in fs.loader_dirs(64)


def test_symlink_loops_do_not_hang() -> None:
    fs = RootFs()
    fs.apply_layer(_layer([("a", "link", "b"), ("b", "link", "a")]))
    assert fs.resolve("/a/x") is None


def test_host_trees_are_mounted_with_their_files(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libx.so").write_bytes(b"x")
    (tmp_path / "lib" / "liby.so").symlink_to("libx.so")
    fs = _debian_like()
    fs.add_tree(PurePosixPath("/opt/vs/rt"), tmp_path)
    assert fs.host_path("/opt/vs/rt/lib/liby.so") == tmp_path / "lib" / "libx.so"
    assert fs.find_library("liby.so", ["/opt/vs/rt/lib"]) == "/opt/vs/rt/lib/libx.so"
