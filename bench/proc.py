"""What /proc says of a process: its CPU time, its descendants, its memory (Linux only).

Peak memory is read as VmHWM, the high-water mark of the process's own address space. Not as
`ru_maxrss` (getrusage, wait4): that also counts the memory of the process that forked it, which the
child holds until its exec (a benchmark or pytest worker of several hundred MB).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of a running process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc/<pid>/task/*/children."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        found.append(current)
    return found


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss, hwm = re.search(r"VmRSS:\s+(\d+)", status), re.search(r"VmHWM:\s+(\d+)", status)
    return (int(rss.group(1)), int(hwm.group(1))) if rss and hwm else None


def high_water_kib(pid: int) -> int:
    """VmHWM of a process in KiB, 0 once it is gone."""
    memory = memory_kib(pid)
    return memory[1] if memory is not None else 0
