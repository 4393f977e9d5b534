"""Progress of a long command: a bar redrawn in place on a terminal, plain lines otherwise
(a log file or a CI transcript gets a line every tenth of the way, not thousands of `\\r`).

Hand-written rather than rich or tqdm: a counter, a bar and a rate limit are these few lines,
and the service gains no dependency for its command line.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    """`advance()` once per item; `close()` at the end (or use it as a context manager).
    `total=None` counts without a bar (an export's lines)."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every: int | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        # Plain lines: ten per run with a total, one per `every` items without.
        self.every = every or (max(1, (total or 0) // 10) if total else 10_000)
        self._drawn_at = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.tty:
            now = time.monotonic()
            if now - self._drawn_at >= 0.1 or self.done == self.total:
                self._drawn_at = now
                self._draw()
        elif self.done % self.every < count or self.done == self.total:
            self.stream.write(self._text() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _text(self) -> str:
        if self.total:
            return f"{self.label}: {self.done}/{self.total} ({100 * self.done // self.total}%)"
        return f"{self.label}: {self.done:,}"

    def _draw(self) -> None:
        text = self._text()
        if self.total:
            width = max(10, min(40, shutil.get_terminal_size().columns - len(text) - 4))
            filled = width * self.done // self.total
            text = f"[{'#' * filled}{'.' * (width - filled)}] {text}"
        elapsed = time.monotonic() - self._started
        self.stream.write(f"\r{text} {elapsed:.1f}s")
        self.stream.flush()
