"""Progress lines with a rate and an ETA, on stderr, for the long steps (mining, training, reading)."""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """`1h02m`, `4m05s` or `12s`."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Reports `done` of `total` units every `every` seconds at most (and at the end).

    >>> p = Progress("mining", 10, "questions", every=0.0, quiet=True)
    >>> p.line(5).split(" (")[0]
    'mining 5/10 questions'
    """

    def __init__(self, label: str, total: int, unit: str, *, every: float = 30.0, quiet: bool = False):
        self.label, self.total, self.unit, self.every, self.quiet = label, total, unit, every, quiet
        self.started = time.perf_counter()
        self._last = -float("inf")

    def line(self, done: int, extra: str = "") -> str:
        seconds = time.perf_counter() - self.started
        rate = done / seconds if seconds > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        eta = duration(left) if left == left else "?"
        tail = f" {extra}" if extra else ""
        return f"{self.label} {done}/{self.total} {self.unit} ({rate:.1f}/s, {duration(seconds)} so far, ETA {eta}){tail}"

    def update(self, done: int, extra: str = "") -> None:
        now = time.perf_counter()
        if now - self._last >= self.every or done >= self.total:
            self._last = now
            if not self.quiet:
                print(self.line(done, extra), file=sys.stderr, flush=True)
