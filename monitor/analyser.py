"""Runs `analyse_entry` over a chunk of entries off the event loop.

Decoding is pure CPU work; in a thread it would still hold the GIL against the event loop, so
when the machine has a core to spare it runs in a worker process, which gets the policy and chain
verifier once (at start) and sends back only what matters: the findings and the errors. Most
entries have neither, so almost nothing crosses back.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from monitor.analysis import EntryAnalysis, analyse_entry
from monitor.entries import EntryDecodeError
from monitor.identity.fulcio import ChainVerifier
from monitor.policy import Policy

Outcome = EntryAnalysis | EntryDecodeError
_worker: tuple[Policy, ChainVerifier] | None = None


def _start_worker(policy: Policy, chains: ChainVerifier) -> None:
    global _worker
    _worker = (policy, chains)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A daemon killed with -9 cannot stop its worker: the worker notices and goes too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _analyse_in_worker(bodies: Sequence[bytes]) -> dict[int, Outcome]:
    assert _worker is not None, "worker not initialised"
    return analyse_bodies(bodies, *_worker)


def analyse_bodies(bodies: Sequence[bytes], policy: Policy, chains: ChainVerifier) -> dict[int, Outcome]:
    """{position: outcome} for the bodies that yield findings or cannot be decoded."""
    outcomes: dict[int, Outcome] = {}
    for position, body in enumerate(bodies):
        try:
            analysis = analyse_entry(body, policy, chains)
        except EntryDecodeError as exc:
            outcomes[position] = exc
            continue
        if analysis.findings:
            outcomes[position] = analysis
    return outcomes


class ChunkAnalyser:
    def __init__(self, policy: Policy, chains: ChainVerifier, *, processes: int | None = None):
        self.policy = policy
        self.chains = chains
        workers = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None else processes
        self.executor: Executor = (
            ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(policy, chains),
            )
            if workers
            else ThreadPoolExecutor(1, thread_name_prefix="analyse")
        )
        self.in_process = isinstance(self.executor, ThreadPoolExecutor)

    async def analyse(self, bodies: Sequence[bytes]) -> dict[int, Outcome]:
        loop = asyncio.get_running_loop()
        if self.in_process:
            return await loop.run_in_executor(self.executor, analyse_bodies, bodies, self.policy, self.chains)
        return await loop.run_in_executor(self.executor, _analyse_in_worker, bodies)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
