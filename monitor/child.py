"""Child processes that run one of rekorwatch's own modules (`python -P -m monitor.…`).

`-P`: the child imports rekorwatch as installed, never a `monitor` package in the directory the
daemon was started from (`-m` would put that directory first on the path). What a child needs from
its parent comes on its stdin, never on its command line, where any user of the machine can read it.
"""

from __future__ import annotations

import asyncio
import sys


async def start_module(module: str, *, stdout: int, stderr: int | None = None) -> asyncio.subprocess.Process:
    """`module` running in a new interpreter, its stdin a pipe from this process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", module, stdin=asyncio.subprocess.PIPE, stdout=stdout, stderr=stderr
    )
