"""Showing an import's progress: a bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from .pipeline import ImportProgress

_BAR_WIDTH = 30
_LOG_EVERY_SECONDS = 10.0


def human_bytes(count: float) -> str:
    """1536 → "1.5 KB": the one size format of pages and progress lines."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def describe(progress: ImportProgress) -> str:
    done = human_bytes(progress.bytes_read)
    size = f"{done} of {human_bytes(progress.bytes_total)}" if progress.bytes_total else done
    return (
        f"{progress.records:,} records, {progress.imported:,} imported, {progress.duplicates:,} duplicates, "
        f"{progress.rejected:,} rejected; {size}; {progress.records_per_second:,.0f} records/s"
    )


class ProgressDisplay:
    def __init__(self, stream: TextIO, *, interactive: bool) -> None:
        self._stream = stream
        self._interactive = interactive
        self._last_line = 0.0
        self._drawn = False

    def __call__(self, progress: ImportProgress) -> None:
        if self._interactive:
            self._draw_bar(progress)
        elif time.monotonic() - self._last_line >= _LOG_EVERY_SECONDS:
            self._last_line = time.monotonic()
            self._stream.write(f"importing: {describe(progress)}\n")
            self._stream.flush()

    def _draw_bar(self, progress: ImportProgress) -> None:
        fraction = progress.bytes_read / progress.bytes_total if progress.bytes_total else 0.0
        filled = int(fraction * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self._stream.write(f"\r[{bar}] {fraction:4.0%} {describe(progress)}\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
