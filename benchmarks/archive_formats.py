"""Benchmark of layer archive formats: time and size of venvstacks.publish.archive per format.

Usage: python benchmarks/archive_formats.py [FOLDER] [--threads N] [--repeat N]

FOLDER defaults to the site-packages of the running environment (the dev venv: about 140 MB).
Each format is written once per thread setting into a temporary folder; the script prints
seconds, size, and the ratio to single-threaded tar.xz, and checks that thread counts do not
change the bytes.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import tempfile
import time
from pathlib import Path

from venvstacks.publish.archive import ArchiveFormat, ArchiveInfo, archive_suffix, write_archive

CLAMP = 1_700_000_000


def _folder_size(folder: Path) -> tuple[int, int]:
    total = count = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            count += 1
    return total, count


def _timed(source: Path, dest: Path, fmt: ArchiveFormat, threads: int) -> tuple[float, ArchiveInfo]:
    start = time.perf_counter()
    info = write_archive(source, "layer", dest, fmt=fmt, clamp_mtime=CLAMP, threads=threads)
    return time.perf_counter() - start, info


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=Path(sysconfig.get_paths()["purelib"])
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    source: Path = args.folder
    size, count = _folder_size(source)
    print(f"source: {source} ({size / 1e6:.1f} MB in {count} files), {args.threads} threads")
    runs = [
        (ArchiveFormat.TAR_XZ, 1),
        (ArchiveFormat.TAR_XZ, args.threads),
        (ArchiveFormat.TAR_GZ, 1),
        (ArchiveFormat.TAR_ZST, 1),
        (ArchiveFormat.TAR_ZST, args.threads),
        (ArchiveFormat.ZIP, 1),
    ]
    results: dict[tuple[ArchiveFormat, int], tuple[float, ArchiveInfo]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for fmt, threads in runs:
            dest = Path(scratch) / f"{fmt.value}-{threads}{archive_suffix(fmt)}"
            results[fmt, threads] = _timed(source, dest, fmt, threads)
            dest.unlink()
    baseline = results[ArchiveFormat.TAR_XZ, 1][1].size
    print(f"{'format':<8} {'threads':>7} {'seconds':>8} {'MB':>8} {'vs xz':>6} {'MB/s in':>8}")
    for (fmt, threads), (seconds, info) in results.items():
        print(
            f"{fmt.value:<8} {threads:>7} {seconds:>8.2f} {info.size / 1e6:>8.2f}"
            f" {info.size / baseline:>6.2f} {size / 1e6 / seconds:>8.1f}"
        )
    for fmt in (ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_ZST):
        same = results[fmt, 1][1].sha256 == results[fmt, args.threads][1].sha256
        print(f"{fmt.value}: 1 thread and {args.threads} threads give identical bytes: {same}")


if __name__ == "__main__":
    main()
