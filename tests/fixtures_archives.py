"""Hand-made tar and zip archives for the extraction tests: hostile ones cannot come from
write_archive. `HOSTILE` holds every kind of member the extraction must refuse."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

MTIME = 1_700_000_000

Spec = tuple[str, str, str]  # (name, kind, payload: file content or link target)


def tarinfo(name: str, kind: str, payload: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    data = None
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif kind == "file":
        data = payload.encode()
        info.size, info.mode = len(data), 0o644
    elif kind in ("symlink", "hardlink"):
        info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        info.linkname = payload
    elif kind == "chr":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    return info, data


def make_tar(path: Path, members: list[Spec], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for name, kind, payload in members:
            info, data = tarinfo(name, kind, payload)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path: Path, members: list[Spec]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, kind, payload in members:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""), (2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            file_type = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(kind, stat.S_IFREG)
            info.external_attr = (file_type | 0o644) << 16
            archive.writestr(info, payload.encode())
    return path


HOSTILE: dict[str, tuple[list[Spec], str]] = {
    "absolute path": ([("layer", "dir", ""), ("/etc/evil", "file", "x")], "'/etc/evil'"),
    "parent traversal": ([("layer", "dir", ""), ("layer/../evil", "file", "x")], "layer/../evil"),
    "dot component": ([("layer", "dir", ""), ("layer/./x", "file", "x")], "layer/./x"),
    "outside the root": ([("layer", "dir", ""), ("other/x", "file", "x")], "outside the archive"),
    "root is a file": ([("layer", "file", "x")], "must be a folder"),
    "absolute symlink": ([("layer", "dir", ""), ("layer/l", "symlink", "/etc/passwd")], "layer/l"),
    "escaping symlink": ([("layer", "dir", ""), ("layer/l", "symlink", "../../x")], "escapes"),
    "peer symlink not allowed": (
        [("layer", "dir", ""), ("layer/bin/l", "symlink", "../../peer/bin/python")],
        "escapes the layer",
    ),
    "symlink via dotdot": (
        [("layer", "dir", ""), ("layer/a/l", "symlink", "b/../../../x")],
        "not a normalised",
    ),
    "hardlink escaping": ([("layer", "dir", ""), ("layer/h", "hardlink", "../etc/passwd")], "hard"),
    "hardlink to non-member": ([("layer", "dir", ""), ("layer/h", "hardlink", "layer/x")], "hard"),
    "device file": ([("layer", "dir", ""), ("layer/null", "chr", "")], "device"),
    "fifo": ([("layer", "dir", ""), ("layer/pipe", "fifo", "")], "fifo"),
    "write through a symlink": (
        [("layer", "dir", ""), ("layer/d", "symlink", "."), ("layer/d/x", "file", "x")],
        "inside symlink",
    ),
    "duplicate member": (
        [("layer", "dir", ""), ("layer/x", "file", "a"), ("layer/x", "file", "b")],
        "duplicate",
    ),
    "empty archive": ([], "empty"),
}
