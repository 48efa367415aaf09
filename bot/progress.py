"""A progress bar for long work on the command line (training, evaluation, load runs).

Drawn in place on a terminal; on a pipe or in CI, a line at each tenth, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        # sys.stderr of the moment, not of the import (a test may have replaced it since)
        self.label, self.total, self.stream = label, max(total, 1), stream or sys.stderr
        self.started = time.monotonic()
        self.tty = self.stream.isatty()
        self._last_tenth = -1

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        share = min(1.0, done / self.total)
        elapsed = time.monotonic() - self.started
        if self.tty:
            bar = "█" * int(share * 30)
            self.stream.write(f"\r{self.label:<28} {bar:<30} {share:>4.0%} {elapsed:5.1f} s")
            self.stream.flush()
        elif int(share * 10) > self._last_tenth:
            self._last_tenth = int(share * 10)
            self.stream.write(f"{self.label}: {share:.0%} ({elapsed:.1f} s)\n")

    def close(self) -> None:
        self.update(self.total)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
