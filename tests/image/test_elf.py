"""The ELF reader against real files of this machine and hand-made broken ones."""

from __future__ import annotations

import shutil
import struct
import sys
import sysconfig
from pathlib import Path

import pytest

from venvstacks.image.elf import ElfError, is_elf, read_elf, read_elf_file

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ELF files are Linux's")


def _python() -> Path:
    return Path(sys.executable).resolve()


def test_the_running_interpreter_needs_libc_and_has_a_loader() -> None:
    info = read_elf_file(_python())
    assert any(name.startswith("libc.so") for name in _all_needed(_python()))
    assert info.interpreter is not None and info.interpreter.startswith("/")
    assert info.bits == 64 and info.machine in {"amd64", "arm64"}


def _all_needed(path: Path) -> list[str]:
    info = read_elf_file(path)
    needed = list(info.needed)
    libdir = sysconfig.get_config_var("LIBDIR")
    for name in info.needed:
        candidate = Path(libdir or "/nonexistent", name)
        if name.startswith("libpython") and candidate.exists():
            needed += read_elf_file(candidate).needed
    return needed


def test_a_shared_library_has_its_soname_and_no_interpreter() -> None:
    import _ssl  # an extension module linked against libssl

    info = read_elf_file(Path(_ssl.__file__))
    assert any(name.startswith("libssl.so") for name in info.needed)
    assert info.interpreter is None


def test_runpath_with_origin_is_read() -> None:
    info = read_elf_file(_python())
    if info.search_path:
        assert all(isinstance(p, str) and p for p in info.search_path)


def test_not_elf(tmp_path: Path) -> None:
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert not is_elf(text)
    with pytest.raises(ElfError, match="not an ELF"):
        read_elf_file(text)


@pytest.mark.parametrize("keep", [16, 20, 64, 200])
def test_truncated_files_are_refused(tmp_path: Path, keep: int) -> None:
    data = _python().read_bytes()[:keep]
    path = tmp_path / "cut"
    path.write_bytes(data)
    with pytest.raises(ElfError):
        read_elf_file(path)


def test_implausible_program_header_count(tmp_path: Path) -> None:
    data = bytearray(_python().read_bytes()[:4096])
    struct.pack_into("<H", data, 56, 60000)  # e_phnum of a 64-bit little-endian file
    path = tmp_path / "bad"
    path.write_bytes(bytes(data))
    with pytest.raises(ElfError, match="implausible"):
        read_elf_file(path)


def test_reads_from_any_binary_stream(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copyfile(_python(), copy)
    with copy.open("rb") as stream:
        assert read_elf(stream) == read_elf_file(_python())
