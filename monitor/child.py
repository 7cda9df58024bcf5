"""Child processes that run one of rekorwatch's own modules (`python -P -m monitor.…`).

`-P`: the child imports rekorwatch as installed, never a `monitor` package in the directory the
daemon was started from (`-m` would put that directory first on the path). What a child needs from
its parent comes on its stdin, never on its command line, where any user of the machine can read it.

The decode process (monitor/decode_worker.py) can be started here, before the daemon imports the
rest of rekorwatch: this module imports nothing of it, so the child's imports (a quarter of a
second) overlap the daemon's instead of holding up its first chunk.
"""

from __future__ import annotations

import asyncio
import os
import sys

DECODE_WORKER = "monitor.decode_worker"


async def start_module(module: str, *, stdout: int, stderr: int | None = None) -> asyncio.subprocess.Process:
    """`module` running in a new interpreter, its stdin a pipe from this process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", module, stdin=asyncio.subprocess.PIPE, stdout=stdout, stderr=stderr
    )


def decoding_in_a_process() -> bool:
    """Whether entries are decoded in a decode process: only when the machine has a core to spare
    for it (on a single core, a thread of the daemon does it without the pipe's cost)."""
    return (os.cpu_count() or 1) >= 2


async def start_decode_worker() -> asyncio.subprocess.Process:
    """A decode process, waiting for its judges on stdin."""
    return await start_module(DECODE_WORKER, stdout=asyncio.subprocess.PIPE)


async def end_process(process: asyncio.subprocess.Process) -> None:
    """Close the stdin of a child that exits at the end of its input (once it has answered what it
    was asked), and wait for it."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    await process.wait()


async def discard_process(process: asyncio.subprocess.Process) -> None:
    """End a child that was never given work: killed, not waited for while it finishes importing (a
    `run --once` with nothing to read would wait for that, a second on a loaded machine)."""
    if process.returncode is None:
        process.kill()
    await process.wait()
