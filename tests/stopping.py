"""A process stopped and continued over and over, as a debugger, a sampling profiler (py-spy) or
Ctrl-Z and `fg` do to it: a blocked write() then returns having written only part of its data."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


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
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
