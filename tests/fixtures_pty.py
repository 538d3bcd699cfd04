"""Running the CLI on a real pseudo-terminal, and replaying what it drew (rich's live display)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Screen", "plain", "run_on_pty"]


class Screen:
    """Just enough of a terminal to replay what rich's live display writes."""

    _ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        pos = 0
        while pos < len(text):
            found = self._ESCAPE.match(text, pos)
            if found:
                self._control(found.group(1), found.group(2))
                pos = found.end()
                continue
            char = text[pos]
            pos += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                self.col = 0
                while len(self.lines) <= self.row:
                    self.lines.append("")
            elif char >= " ":
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1

    def _control(self, args: str, code: str) -> None:
        count = int(args) if args.isdigit() else 1
        if code == "A":
            self.row = max(0, self.row - count)
        elif code == "K":
            self.lines[self.row] = "" if args == "2" else self.lines[self.row][: self.col]
        elif code == "G":
            self.col = count - 1

    def text(self) -> list[str]:
        return [line.rstrip() for line in self.lines if line.strip()]


def run_on_pty(
    argv: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> tuple[int, list[tuple[float, bytes]]]:
    """Run `argv` with a pseudo-terminal as stdin/stdout/stderr; (exit status, timed chunks)."""
    main, child = pty.openpty()
    start = time.monotonic()
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdin=child, stdout=child, stderr=child, close_fds=True
    )
    os.close(child)
    chunks: list[tuple[float, bytes]] = []
    try:
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([main], [], [], 0.05)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # the child side closed
                break
            if not data:
                break
            chunks.append((time.monotonic() - start, data))
    finally:
        os.close(main)
    return process.wait(timeout=60), chunks


def plain(chunks: list[tuple[float, bytes]]) -> str:
    """Everything written, with the terminal control sequences taken out."""
    text = b"".join(data for _, data in chunks).decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
