"""Runs `analyse_entry` over a chunk of entries off the event loop.

Decoding is pure CPU work; in a thread it would still hold the GIL against the event loop, so
when the machine has a core to spare it runs in a worker process, which gets the policy and chain
verifier once (at start) and sends back only what matters: the findings and the errors. Most
entries have neither, so almost nothing crosses back.

The worker never outlives the daemon: it is told the daemon's pid and exits as soon as its parent is
another process (the daemon was killed, even before the worker finished starting). It ignores
SIGINT: Ctrl-C is the daemon's to handle, by finishing the chunk in flight. A worker that dies is
replaced at the next chunk; the chunk it was working on fails its cycle and is read again. Work
already queued is never cancelled (a trust-root refresh starts a new worker beside the old one,
which finishes its queue and goes).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from monitor.analysis import CertificateFinding, EntryAnalysis, analyse_ct_entry, analyse_entry
from monitor.entries import EntryDecodeError
from monitor.errors import ReasonedError
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import ChainVerifier
from monitor.policy import Policy
from monitor.tlog.ct import CtEntryError, CtLogEntry

Outcome = EntryAnalysis | EntryDecodeError
CtOutcome = CertificateFinding | CtEntryError
PARENT_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class Judges:
    """What decoding and judging need, given to the worker once: the watch rules and the chain checks."""

    policy: Policy
    chains: ChainVerifier
    ct_chains: CtChainVerifier


_worker: Judges | None = None


def _start_worker(judges: Judges, parent: int) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = judges
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A daemon killed with -9 cannot stop its worker: the worker notices and goes too. `parent` is
    the daemon's pid as the daemon said it, so a daemon that died before this thread started (the
    worker already re-parented) is noticed at once."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _analyse_in_worker(bodies: Sequence[bytes]) -> dict[int, Outcome]:
    assert _worker is not None, "worker not initialised"
    return analyse_bodies(bodies, _worker)


def _analyse_ct_in_worker(entries: Sequence[CtLogEntry]) -> dict[int, CtOutcome]:
    assert _worker is not None, "worker not initialised"
    return analyse_ct_entries(entries, _worker)


def analyse_bodies(bodies: Sequence[bytes], judges: Judges) -> dict[int, Outcome]:
    """{position: outcome} for the Rekor entry bodies that yield findings or cannot be decoded."""
    outcomes: dict[int, Outcome] = {}
    for position, body in enumerate(bodies):
        try:
            analysis = analyse_entry(body, judges.policy, judges.chains)
        except EntryDecodeError as exc:
            outcomes[position] = exc
            continue
        if analysis.findings:
            outcomes[position] = analysis
    return outcomes


def analyse_ct_entries(entries: Sequence[CtLogEntry], judges: Judges) -> dict[int, CtOutcome]:
    """{position: outcome} for the CT entries that hold a watched certificate or cannot be decoded."""
    outcomes: dict[int, CtOutcome] = {}
    for position, entry in enumerate(entries):
        try:
            found = analyse_ct_entry(entry, judges.policy, judges.ct_chains)
        except CtEntryError as exc:
            outcomes[position] = exc
            continue
        if found is not None:
            outcomes[position] = found
    return outcomes


def is_undecodable(outcome: object) -> bool:
    return isinstance(outcome, ReasonedError)


class ChunkAnalyser:
    def __init__(self, judges: Judges, *, processes: int | None = None):
        self.judges = judges
        self.processes = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None else processes
        self.executor = self._new_executor()

    @property
    def in_process(self) -> bool:
        return self.processes == 0

    def _new_executor(self) -> Executor:
        if self.in_process:
            return ThreadPoolExecutor(1, thread_name_prefix="analyse")
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.judges, os.getpid()),
        )

    async def analyse(self, bodies: Sequence[bytes]) -> dict[int, Outcome]:
        """Rekor entry bodies, in the worker."""
        return await self._run(_analyse_in_worker, analyse_bodies, bodies)

    async def analyse_ct(self, entries: Sequence[CtLogEntry]) -> dict[int, CtOutcome]:
        """CT entries, in the worker."""
        return await self._run(_analyse_ct_in_worker, analyse_ct_entries, entries)

    async def _run(self, in_worker: Callable[[Any], Any], in_process: Callable[[Any, Judges], Any], items: Any) -> Any:
        loop = asyncio.get_running_loop()
        executor = self.executor
        try:
            if self.in_process:
                return await loop.run_in_executor(executor, in_process, items, self.judges)
            return await loop.run_in_executor(executor, in_worker, items)
        except BrokenProcessPool:
            if self.executor is executor:  # the first to notice replaces the dead worker
                self.executor = self._new_executor()
            raise

    def close(self) -> None:
        """Stop taking work; what is queued still runs to completion."""
        self.executor.shutdown(wait=False, cancel_futures=False)
