"""Process metrics for `rag bench`: the CPU other processes took meanwhile, this process's memory, the machine.

CPU times and resident memory come from `psutil`. The one figure it does not give on Linux is the
peak resident size since a chosen moment (psutil's `memory_info` has no high-water mark there,
giampaolo/psutil#383), so the peak is Linux's own `VmHWM`, reset through `/proc/self/clear_refs`.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

from .report import Row


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its children);
    None where the counters cannot be read."""
    try:
        machine = psutil.cpu_times()
        ours = psutil.Process().cpu_times()
    except (psutil.Error, OSError):
        return None
    # Busy = everything but idle and waiting for I/O: user, nice, system, irq, softirq, steal
    # (the fields Linux has; guest time is already counted in user and nice).
    busy = sum(getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    return busy, ours.user + ours.system + ours.children_user + ours.children_system


class Watch:
    """Measures how much CPU other processes took while a block ran: timings are fair only if little."""

    other_seconds: float | None = None
    share: float | None = None  # of the whole machine's CPU time during the block

    def __enter__(self) -> "Watch":
        self._before = cpu_seconds()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        after = cpu_seconds()
        wall = time.perf_counter() - self._started
        if self._before is None or after is None or wall <= 0:
            return
        self.other_seconds = max(0.0, (after[0] - self._before[0]) - (after[1] - self._before[1]))
        self.share = self.other_seconds / (wall * (os.cpu_count() or 1))

    def mark(self, rows: list[Row]) -> list[Row]:
        """The rows measured in this block, with its contention recorded (call after the block ended)."""
        contention = None if self.share is None else round(self.share, 3)
        return [replace(row, contention=contention) for row in rows]


def reset_peak_memory() -> tuple[int, bool]:
    """Reset the peak-RSS mark if Linux allows it. Returns the resident bytes now, and whether the
    mark was reset (if not, later peaks are the whole process's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident size (proc(5))
        reset = True
    except OSError:
        reset = False
    return memory_bytes()[0], reset


def memory_bytes() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process."""
    return psutil.Process().memory_info().rss, _peak_resident_bytes()


def _peak_resident_bytes() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if found:
        return int(found.group(1)) * 1024
    import resource  # not Linux: the peak since the process started, which cannot be reset

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def machine() -> dict:
    """The machine and software the figures were measured with."""
    import sentence_transformers
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
