"""Keep the resident size near what is in use: the daemon and its decode worker allocate and free a
chunk's entries (1,024 bodies of about 1.5 KB, each its own malloc block) over and over.

glibc hands freed heap back to the kernel only when more than M_TRIM_THRESHOLD (128 KiB, growing to
32 MiB as large blocks come and go) is free at its top, so a catch-up's peak stayed resident: about
9 MiB of the 200 MB budget (bench/bench_catchup.py). Fixing the threshold at 128 KiB stops it from
growing. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
TRIM_THRESHOLD_BYTES = 128 * 1024


def return_freed_memory_promptly() -> None:
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc
        return
