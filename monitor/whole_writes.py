"""Writes that reach the output whole, even when the writing process is stopped and continued.

CPython's buffered writer (`sys.stdout.buffer`, 3.11) loses data when a large write to a full pipe
is interrupted: a process stopped (SIGSTOP or SIGTSTP: Ctrl-Z, a debugger, py-spy) and continued
in the middle of one write() gets a partial count from the kernel, and the rest of that write
never reaches the pipe, silently. Seen here: the decode worker's answers lost 9,009 bytes after the
first 65,536 of a 74,545-byte frame while py-spy sampled it, and the daemon read the next frame's
header as the end of this one. A loop of os.write on the file descriptor writes every byte.

Invariant: `write_whole` returns only once every byte is written (or raises); nothing written
through it sits in a Python buffer.
"""

from __future__ import annotations

import os
from typing import BinaryIO


def write_whole(out: BinaryIO, data: bytes) -> None:
    """Write all of `data` to `out`: straight to its file descriptor when it has one (what was
    buffered before goes first), else through its own write (an in-memory stream)."""
    try:
        descriptor = out.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both: a stream with no descriptor
        out.write(data)
        out.flush()
        return
    out.flush()
    remaining = memoryview(data)
    while remaining:
        remaining = remaining[os.write(descriptor, remaining) :]
