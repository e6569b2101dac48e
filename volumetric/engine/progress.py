"""A progress line for long block jobs: blocks done / total, rate and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


_silenced = False


def silence(flag: bool = True) -> None:
    """Turn every progress line and dashboard link of this process off (``vol -q``)."""
    global _silenced
    _silenced = flag


def silenced() -> bool:
    """Whether :func:`silence` is in effect."""
    return _silenced


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Prints ``label: done/total blocks (pct) rate ETA`` to a stream.

    On a terminal the line is redrawn in place at most every ``interval``
    seconds; elsewhere (logs, CI) a line is printed at most every
    ``log_interval`` seconds.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        skipped: int = 0,
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.2,
        log_interval: float = 10.0,
    ):
        self.total, self.label, self.skipped = total, label, skipped
        self.stream = stream or sys.stderr
        self.enabled = enabled and not _silenced
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.done = 0
        self.t0 = time.monotonic()
        self._last = self.t0

    def _line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        return (
            f"{self.label}: {self.done}/{self.total} blocks ({pct:.0f}%) "
            f"{rate:.1f} blocks/s ETA {eta}"
        )

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished blocks."""
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            end = "\r" if self.tty else "\n"
            self.stream.write(self._line() + end)
            self.stream.flush()

    def close(self) -> None:
        """Print the final summary line."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        skipped = f", {self.skipped} already done" if self.skipped else ""
        clear = "\r\033[K" if self.tty else ""
        self.stream.write(
            f"{clear}{self.label}: {self.done}/{self.total} blocks in {_clock(elapsed)} "
            f"({rate:.1f} blocks/s{skipped})\n"
        )
        self.stream.flush()
