"""Following the job's captured output (``output.log``) from a saved offset.

Only whole lines are returned; a partial last line waits for its newline.
A viewer that attaches late starts near the end, not at the first byte.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: ANSI escape sequences and other control characters a log line must not carry
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def clean(line: str) -> str:
    """The visible text of a line: progress bars keep their last redraw, escapes go."""
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROL.sub("", line).expandtabs(4)


class OutputTail:
    """Reads the lines appended to a file since the last call."""

    def __init__(self, path: Path, start_bytes: int = 8192, max_bytes: int = 65536) -> None:
        self.path = path
        self.start_bytes = start_bytes
        self.max_bytes = max_bytes
        self.offset: int | None = None  # None until the file was first seen

    def read(self) -> list[str]:
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return []
        skipped = False
        if self.offset is None or size < self.offset:  # first look, or truncated
            self.offset = max(0, size - self.start_bytes) if self.offset is None else 0
            skipped = self.offset > 0
        if size - self.offset > self.max_bytes:  # a flood: show the newest part
            self.offset = size - self.max_bytes
            skipped = True
        if size == self.offset:
            return []
        back = 1 if skipped else 0  # one byte back tells whether we landed on a line start
        with open(self.path, "rb") as f:
            f.seek(self.offset - back)
            data = f.read(size - self.offset + back)
        if skipped:
            cut = data.find(b"\n")
            if cut < 0:
                return []
            self.offset += cut + 1 - back
            data = data[cut + 1 :]
        end = data.rfind(b"\n")
        if end < 0:
            return []
        chunk = data[: end + 1]
        self.offset += len(chunk)
        return [clean(line) for line in chunk.decode("utf-8", errors="replace").split("\n")[:-1]]
