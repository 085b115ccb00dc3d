"""A one-line progress bar with the rate and the time left, drawn only when its stream is a terminal
(nothing when piped)."""
from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO


class Progress:
    """Counts work done out of ``total`` and redraws at most every ``interval`` seconds.

    Use as a context manager: the line is erased on exit, so what follows starts clean.
    """

    def __init__(self, total: int, stream: TextIO, label: str = "lines", width: int = 30,
                 interval: float = 0.1) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.total, self.stream, self.label, self.width, self.interval = max(total, 0), stream, label, width, interval
        self.done = 0
        self._drawn = 0.0
        self._started = time.monotonic()

    def advance(self, amount: int = 1) -> None:
        """Record ``amount`` more units of work; redraw if due (always on the last unit)."""
        self.done += amount
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= self.interval or self.done >= self.total):
            self._drawn = now
            share = min(self.done / self.total, 1.0) if self.total else 1.0
            filled = round(share * self.width)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] "
                              f"{self.done}/{self.total} {self.label} {share:4.0%}{self.pace(now)}")
            self.stream.flush()

    def pace(self, now: float) -> str:
        """The rate so far and the time left at that rate (`` 1,234 lines/s, 2m05s left``), or ''
        before there is a rate to speak of."""
        seconds = now - self._started
        if seconds <= 0 or not self.done:
            return ""
        rate = self.done / seconds
        left = round(max(self.total - self.done, 0) / rate)
        return f" {rate:,.0f} {self.label}/s, {left // 60}m{left % 60:02d}s left"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
