"""The parallel xz writer: one standard xz stream, the same bytes for any thread count, and the
x86 branch filter on x86 hosts, read back by the system's xz and by Python's lzma."""

from __future__ import annotations

import io
import lzma
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from venvstacks.publish import xz as xz_module
from venvstacks.publish.xz import (
    XZ_LZMA2_DEFAULT,
    ParallelXzWriter,
    host_machine_code_filter,
    lzma2_options,
)

CHUNK = 256 * 1024


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks keep the test quick; the block logic is the same at any chunk size."""
    monkeypatch.setattr(xz_module, "XZ_CHUNK_SIZE", CHUNK)


def _machine_code_like(size: int) -> bytes:
    """Bytes with many x86 `call rel32` instructions to a few targets (what BCJ helps with)."""
    rng = random.Random(7)
    out = bytearray()
    targets = [rng.randrange(1 << 20) for _ in range(64)]
    while len(out) < size:
        pos = len(out)
        out += rng.randbytes(rng.randrange(3, 12))
        out += b"\xe8" + ((rng.choice(targets) - pos - 5) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(out[:size])


def _compress(data: bytes, threads: int, x86: bool, preset: int | None = None) -> bytes:
    sink = io.BytesIO()
    writer = ParallelXzWriter(sink, threads, preset, x86)
    try:
        for start in range(0, len(data), 1_000_003):
            writer.write(data[start : start + 1_000_003])
        writer.finish()
    finally:
        writer.shutdown()
    return sink.getvalue()


@pytest.mark.parametrize("x86", [False, True])
def test_one_stream_read_back_whole_and_independent_of_threads(x86: bool, tmp_path: Path) -> None:
    data = _machine_code_like(2 * CHUNK + 12345)
    one = _compress(data, 1, x86)
    assert _compress(data, 3, x86) == one
    assert lzma.decompress(one) == data
    xz = shutil.which("xz")
    if xz is None:
        pytest.skip("the system xz is not installed")
    archive = tmp_path / "data.xz"
    archive.write_bytes(one)
    listing = subprocess.run(
        [xz, "--list", "-vv", str(archive)], capture_output=True, text=True, check=False
    )
    assert listing.returncode == 0, listing.stderr
    assert ("--x86" in listing.stdout) is x86
    assert listing.stdout.count("--lzma2") == 3  # one block per chunk
    out = subprocess.run([xz, "-dc", str(archive)], capture_output=True, check=True).stdout
    assert out == data


def _python_sources(size: int) -> bytes:
    """Real text: the standard library's sources, in a fixed order."""
    out = bytearray()
    for path in sorted(Path(lzma.__file__).parent.glob("*.py")):
        out += path.read_bytes()
        if len(out) >= size:
            break
    return bytes(out[:size])


def test_the_default_level_is_preset_1_searching_deeper(
    tmp_path: Path,
) -> None:
    """None and 1 mean the tuned default (`XZ_LZMA2_DEFAULT`), whose dictionary size each block
    header states; the other levels are liblzma's own presets, unchanged."""
    default_options = {"id": lzma.FILTER_LZMA2, **XZ_LZMA2_DEFAULT}
    assert lzma2_options(None) == lzma2_options(1) == default_options
    assert lzma2_options(2) == {"id": lzma.FILTER_LZMA2, "preset": 2}
    assert XZ_LZMA2_DEFAULT["preset"] == 1
    data = _python_sources(2 * CHUNK)
    default = _compress(data, 2, True)
    assert _compress(data, 1, True, preset=1) == default
    plain_preset_1 = [
        {"id": lzma.FILTER_X86},
        {"id": lzma.FILTER_LZMA2, "preset": 1},
    ]
    plain = sum(
        len(lzma.compress(data[pos : pos + CHUNK], format=lzma.FORMAT_XZ, filters=plain_preset_1))
        for pos in range(0, len(data), CHUNK)
    )
    assert lzma.decompress(default) == data
    assert len(default) < plain
    xz = shutil.which("xz")
    if xz is None:
        pytest.skip("the system xz is not installed")
    archive = tmp_path / "data.xz"
    archive.write_bytes(default)
    listing = subprocess.run(
        [xz, "--robot", "-lvv", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    blocks = [line for line in listing.splitlines() if line.startswith("block\t")]
    assert len(blocks) == 2
    assert all("--x86 --lzma2=dict=1MiB" in line for line in blocks), listing
    out = subprocess.run([xz, "-T2", "-dc", str(archive)], capture_output=True, check=True)
    assert out.stdout == data


def test_the_x86_filter_makes_machine_code_smaller() -> None:
    data = _machine_code_like(CHUNK)
    assert len(_compress(data, 1, True)) < 0.97 * len(_compress(data, 1, False))


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", True), ("AMD64", True), ("i686", True), ("aarch64", False), ("arm64", False)],
)
def test_the_filter_follows_the_host_machine(machine: str, expected: bool) -> None:
    assert host_machine_code_filter(machine) is expected


@pytest.mark.parametrize("threads", [2, 8])
def test_pending_chunks_stay_within_threads_and_budget(threads: int) -> None:
    data = _machine_code_like(12 * CHUNK + 99)
    sink = io.BytesIO()
    writer = ParallelXzWriter(sink, threads, 0, budget=5 * CHUNK)
    try:
        for start in range(0, len(data), 100_003):
            writer.write(data[start : start + 100_003])
        writer.finish()
    finally:
        writer.shutdown()
    assert lzma.decompress(sink.getvalue()) == data
    # one chunk being filled + at most threads + 1 in flight, and never over the byte budget
    assert writer.max_pending == min(threads + 1, 4)
    assert writer.peak_pending <= writer.max_pending


def _traced_peak(chunks: int, threads: int, budget: int) -> int:
    import tracemalloc

    piece = _machine_code_like(CHUNK // 4)
    tracemalloc.start()
    try:
        writer = ParallelXzWriter(_CountingSink(), threads, 0, budget=budget)
        try:
            for _ in range(4 * chunks):
                writer.write(piece)
            writer.finish()
        finally:
            writer.shutdown()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_held_does_not_grow_with_the_input() -> None:
    """tracemalloc sees the chunks, the compressed blocks and liblzma's working memory (Python's
    lzma allocates through PyMem_RawMalloc): 8x the input, the same peak, within the budget
    plus one encoder per thread (a few MiB each at preset 0)."""
    small = _traced_peak(8, 4, 4 * CHUNK)
    large = _traced_peak(64, 4, 4 * CHUNK)
    assert large < small * 1.2 + CHUNK, (small, large)
    assert large < 4 * CHUNK + 4 * 4 * 1024 * 1024, large


class _CountingSink(io.RawIOBase):
    """A sink that keeps no bytes, only their count."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        size = memoryview(data).nbytes  # type: ignore[arg-type]
        self.size += size
        return size


def test_blocks_state_their_sizes_so_xz_can_decompress_them_in_parallel(tmp_path: Path) -> None:
    """xz's threaded decoder (`xz -T0`, as deploy runs it) only splits a stream whose block
    headers carry the compressed and uncompressed sizes (`xz -lvv` flags `cu`)."""
    xz = shutil.which("xz")
    if xz is None:
        pytest.skip("the system xz is not installed")
    data = _machine_code_like(3 * CHUNK + 777)
    archive = tmp_path / "data.xz"
    archive.write_bytes(_compress(data, 2, True))
    listing = subprocess.run(
        [xz, "--robot", "-lvv", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    blocks = [line.split("\t") for line in listing.splitlines() if line.startswith("block\t")]
    assert len(blocks) == 4
    assert all(fields[12] == "cu" for fields in blocks), listing
    out = subprocess.run([xz, "-T2", "-dc", str(archive)], capture_output=True, check=True)
    assert out.stdout == data


def test_writers_of_one_process_share_cpus_plus_one_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers are archived in parallel: the chunks in flight across all writers stay within
    the process-wide limit, every writer still finishes, and every slot is given back."""
    import threading

    slots = xz_module._Slots(3)
    monkeypatch.setattr(xz_module, "_SLOTS", slots)
    data = _machine_code_like(8 * CHUNK + 5)
    results: list[bytes] = []

    def one() -> None:
        results.append(_compress(data, 4, True))

    workers = [threading.Thread(target=one) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 3
    assert all(lzma.decompress(result) == data for result in results)
    assert 1 <= slots.peak <= 3
    assert slots.used == 0


def test_a_failed_writer_gives_its_slots_back(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = xz_module._Slots(3)
    monkeypatch.setattr(xz_module, "_SLOTS", slots)
    writer = ParallelXzWriter(io.BytesIO(), 2, 0)
    writer.write(_machine_code_like(3 * CHUNK))
    writer.shutdown()  # as after an error while writing: pending chunks are dropped
    assert slots.used == 0
