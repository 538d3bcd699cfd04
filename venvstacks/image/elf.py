"""Reading what an ELF file needs at load time (DT_NEEDED, RUNPATH/RPATH, PT_INTERP), in Python.

Only the headers, program headers and the dynamic section are read, through seeks, so checking a
large shared library costs a few kilobytes of I/O. Nothing is executed: this works for files of
another architecture too. 32- and 64-bit, little- and big-endian files are understood.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["ElfError", "ElfInfo", "is_elf", "read_elf", "read_elf_file"]

ELF_MAGIC = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME = 0, 1, 5, 10, 14
_DT_RPATH, _DT_RUNPATH = 15, 29
_MAX_PHNUM = 4096
_MAX_DYNAMIC = 1 << 20
_MAX_STRING = 4096

MACHINES = {
    3: "386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "amd64",
    183: "arm64",
    243: "riscv64",
}
"""ELF `e_machine` values by the architecture names OCI image configs use."""


class ElfError(ValueError):
    """The file is not an ELF file, or its dynamic information is malformed."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader needs to load one ELF file."""

    bits: int
    machine: str
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]
    soname: str | None
    interpreter: str | None

    @property
    def search_path(self) -> tuple[str, ...]:
        """The file's own library folders (RUNPATH wins over RPATH, as in glibc's loader)."""
        return self.runpath or self.rpath


@dataclass(frozen=True)
class _Segment:
    kind: int
    offset: int
    vaddr: int
    filesz: int


class _Reader:
    def __init__(self, stream: BinaryIO, little: bool, bits: int) -> None:
        self.stream = stream
        self.order = "<" if little else ">"
        self.bits = bits

    def read(self, offset: int, size: int) -> bytes:
        self.stream.seek(offset)
        data = self.stream.read(size)
        if len(data) != size:
            raise ElfError(f"truncated at offset {offset}")
        return data

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        fmt = self.order + fmt
        return struct.unpack(fmt, self.read(offset, struct.calcsize(fmt)))

    def string(self, offset: int) -> str:
        self.stream.seek(offset)
        data = self.stream.read(_MAX_STRING)
        end = data.find(b"\0")
        if end < 0:
            raise ElfError(f"unterminated string at offset {offset}")
        return data[:end].decode("utf-8", "surrogateescape")


def is_elf(path: Path) -> bool:
    """True when the file starts with the ELF magic (symlinks are followed)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == ELF_MAGIC
    except OSError:
        return False


def _segments(reader: _Reader) -> list[_Segment]:
    if reader.bits == 64:
        phoff, phentsize, phnum = (*reader.unpack("Q", 32), *reader.unpack("HH", 54))
        layout, fields = "IIQQQQQQ", (0, 2, 3, 5)
    else:
        phoff, phentsize, phnum = (*reader.unpack("I", 28), *reader.unpack("HH", 42))
        layout, fields = "IIIIIIII", (0, 1, 2, 4)
    if phnum > _MAX_PHNUM or (phnum and phentsize < struct.calcsize(layout)):
        raise ElfError("implausible program header table")
    segments = []
    for index in range(phnum):
        values = reader.unpack(layout, phoff + index * phentsize)
        kind, offset, vaddr, filesz = (values[i] for i in fields)
        segments.append(_Segment(kind, offset, vaddr, filesz))
    return segments


def _file_offset(segments: list[_Segment], vaddr: int) -> int:
    for segment in segments:
        if segment.kind == _PT_LOAD and segment.vaddr <= vaddr < segment.vaddr + segment.filesz:
            return vaddr - segment.vaddr + segment.offset
    raise ElfError(f"address {vaddr:#x} is in no loaded segment")


def _dynamic_entries(reader: _Reader, dynamic: _Segment) -> list[tuple[int, int]]:
    fmt = "qQ" if reader.bits == 64 else "iI"
    size = struct.calcsize(fmt)
    entries = []
    for index in range(min(dynamic.filesz, _MAX_DYNAMIC) // size):
        tag, value = reader.unpack(fmt, dynamic.offset + index * size)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    return entries


def read_elf(stream: BinaryIO) -> ElfInfo:
    """The dynamic-loading facts of the ELF file open in `stream` (binary, seekable)."""
    ident = stream.read(16)
    if len(ident) < 16 or ident[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError("unknown ELF class or byte order")
    reader = _Reader(stream, little=ident[5] == 1, bits=32 if ident[4] == 1 else 64)
    (machine,) = reader.unpack("H", 18)
    segments = _segments(reader)
    interpreter = None
    for segment in segments:
        if segment.kind == _PT_INTERP:
            interpreter = reader.string(segment.offset)
    dynamic = next((s for s in segments if s.kind == _PT_DYNAMIC), None)
    entries = _dynamic_entries(reader, dynamic) if dynamic is not None else []
    strtab = next((value for tag, value in entries if tag == _DT_STRTAB), None)

    def strings(wanted: int) -> list[str]:
        if strtab is None:
            return []
        base = _file_offset(segments, strtab)
        return [reader.string(base + value) for tag, value in entries if tag == wanted]

    def paths(wanted: int) -> tuple[str, ...]:
        return tuple(p for text in strings(wanted) for p in text.split(":") if p)

    soname = strings(_DT_SONAME)
    return ElfInfo(
        bits=reader.bits,
        machine=MACHINES.get(machine, f"elf-machine-{machine}"),
        needed=tuple(strings(_DT_NEEDED)),
        runpath=paths(_DT_RUNPATH),
        rpath=paths(_DT_RPATH),
        soname=soname[0] if soname else None,
        interpreter=interpreter,
    )


def read_elf_file(path: Path) -> ElfInfo:
    """The dynamic-loading facts of the ELF file at `path`."""
    try:
        with open(path, "rb") as stream:
            return read_elf(stream)
    except struct.error as exc:
        raise ElfError(str(exc)) from None
