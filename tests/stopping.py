"""A process stopped, as a debugger or Ctrl-Z stop it, or stopped and continued over and over, as a
sampling profiler (py-spy) does: a blocked write() then returns having written only part of its data."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """`pid` stopped while the block runs, continued after if it still exists: left stopped, it
    would hang whatever waits for it to end."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextmanager
def stopped_and_continued(pid: int) -> Iterator[None]:
    """While the block runs, `pid` is stopped for 0.5 ms every 1.5 ms; it is left running after."""
    done = threading.Event()

    def storm() -> None:
        while not done.is_set():
            try:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.0005)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                return
            time.sleep(0.001)

    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
