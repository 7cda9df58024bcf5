"""Decoding and judging chunks of entries off the event loop, in a lean decode process.

Decoding is pure CPU work; in a thread it would still hold the GIL against the event loop, so when
the machine has a core to spare it runs in `python -m monitor.decode_worker` (decode_worker.py),
which gets the judges (watch rules, chain checks, log keys) once and sends back only what matters: the
findings and the errors. Most entries have neither, so almost nothing crosses back. On a single
core it runs in a thread of this process. When the decode process falls behind (`THREAD_HELPS_AT`
chunks waiting on it), the next chunk is analysed in that thread instead, if it is idle: in a tiles
catch-up the decode process is the bottleneck while the daemon's core has time to spare. The thread
runs the very functions the decode process runs, on the same judges, so a chunk's outcome does not
depend on where it was analysed; chunks are committed in order wherever they were analysed.

The worker never outlives the daemon: it exits when its stdin closes, which the kernel does when the
daemon dies, however it dies. It ignores SIGINT: Ctrl-C is the daemon's to handle, by finishing the
chunk in flight. A worker that dies fails the chunks waiting for it (their cycle fails and reads them
again) and is replaced at the next chunk. Work already sent is never dropped: a trust-root refresh
starts a new worker beside the old one, which answers what it was sent and then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from monitor.analysis import CtOutcome, Judges, Outcome
from monitor.child import decoding_in_a_process, discard_process
from monitor.decode_worker import (
    ChunkOutcome,
    DecodeProcess,
    WorkerError,
    analyse_answers,
    analyse_bundles,
    analyse_chunk,
    analyse_ct_chunk,
    analysed_or_failed,
)
from monitor.tlog.ct import CtLogEntry
from monitor.tlog.entry_bundle import EntryBundle
from monitor.tlog.merkle import Subtree
from monitor.tlog.rekor_v1_entries import RetrieveAnswer
from monitor.tlog.source import SourceEntry

__all__ = ["AnalysedChunk", "ChunkAnalyser", "ChunkOutcome", "CtOutcome", "Judges", "Outcome", "WorkerError"]


@dataclass(frozen=True)
class AnalysedChunk:
    """A chunk of entries after its analysis, ready for its turn to be proven and committed."""

    entries: Sequence[SourceEntry]
    """Every entry of the chunk, or (KeptEntries) only those its record needs: the others were read
    and judged in its analysis."""
    analysis: Any
    subtrees: Sequence[Subtree]
    """The entries' leaves, hashed and folded into the aligned subtrees the tail appends to its
    compact range (off the event loop, with the chunk's analysis)."""
    misnamed: int | None = None
    """The global index of a Rekor v1 entry whose uuid does not name the leaf hash of its body, as the
    analysis computed it (rekor_v1_entries.first_misnamed): the tail fails the chunk at its turn."""


THREAD_HELPS_AT = 2
"""Chunks sent to the decode process and not answered (the one it works on included) from which the
next chunk goes to this process's thread, when idle. Measured (bench/bench_ab.py, 200k tiles entries,
3 pairs): catch-up 2.60 -> 2.19 s, about a third of the chunks taken by the thread; with 1, no faster.
A Rekor v1 catch-up keeps the daemon busy fetching: its decode process never gets two behind."""

HELPING_SWITCH_SECONDS = 0.001
"""The GIL's switch interval while the thread helps (the interpreter's is 5 ms): the event loop waits
at most that long for its turn while a chunk is analysed beside it (about 13 ms of CPU for a tiles
chunk). With 5 ms, a log 50 ms away, whose catch-up the loop bounds by how soon it sends the next
requests, read 4-5% slower with the help than without (four A/B runs); with 1 ms, -1.4% (5 pairs),
and the loopback catch-up the help is for is unchanged (docs/DECISIONS.md)."""


class ChunkAnalyser:
    def __init__(
        self, judges: Judges, *, in_thread: bool | None = None, started: asyncio.subprocess.Process | None = None
    ):
        """`in_thread`: analyse only in a thread of this process, never in a decode process (by
        default, when the machine has a single core). `started`: a decode process started early
        (child.py), to use first; the analyser ends it."""
        self.judges = judges
        if in_thread is None:
            in_thread = not decoding_in_a_process()
        self._only_in_thread = in_thread
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="analyse")
        self._in_thread_now = 0  # chunks given to the thread
        self._unanswered = 0  # requests sent to the decode process
        self._started = started
        self._process: DecodeProcess | None = None
        self._starting = asyncio.Lock()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def analyse(self, bodies: Sequence[bytes], *, hash_from: int | None = None) -> ChunkOutcome:
        """Rekor entry bodies: {position: outcome} of those with findings or that cannot be decoded;
        with `hash_from` (the tree index of the first body), also their leaf hashes and subtrees."""
        return await self._analysed(
            functools.partial(analyse_chunk, bodies, self.judges, hash_from=hash_from),
            lambda worker: worker.analyse(bodies, hash_from=hash_from),
        )

    async def analyse_answers(self, answers: list[RetrieveAnswer], *, hash_from: int) -> ChunkOutcome:
        """Rekor v1 retrieve answers: their entries read, checked against their uuids, hashed and
        analysed as `analyse` does, with the entries of the positions with outcomes (or why not:
        `ChunkOutcome.refused`, `missing`). A decode process empties `answers` once sent."""
        return await self._analysed(
            functools.partial(analyse_answers, answers, self.judges, hash_from=hash_from),
            lambda worker: worker.analyse_answers(answers, hash_from=hash_from),
        )

    async def analyse_bundles(self, bundles: Sequence[EntryBundle], *, hash_from: int) -> ChunkOutcome:
        """Tiles entry bundles: their wanted entries split out, then analysed and hashed as `analyse`
        does, with the bodies of the positions with outcomes (or why not: `ChunkOutcome.refused`)."""
        return await self._analysed(
            functools.partial(analyse_bundles, bundles, self.judges, hash_from=hash_from),
            lambda worker: worker.analyse_bundles(bundles, hash_from=hash_from),
        )

    async def analyse_ct(self, entries: Sequence[CtLogEntry], *, hash_from: int) -> ChunkOutcome:
        """CT entries: {position: outcome} of those with a watched certificate or that cannot be
        decoded, and their leaves (from tree index `hash_from`) folded into subtrees."""
        return await self._analysed(
            functools.partial(analyse_ct_chunk, entries, self.judges, hash_from=hash_from),
            lambda worker: worker.analyse_ct(entries, hash_from=hash_from),
        )

    async def _analysed(
        self, here: Callable[[], ChunkOutcome], asked: Callable[[DecodeProcess], Awaitable[ChunkOutcome]]
    ) -> ChunkOutcome:
        """`here`, in this process's thread (a single core, or a decode process behind and the thread
        idle); else the decode process's answer to `asked`."""
        if self._only_in_thread:
            return await self._in_thread(here)
        async with self._counted():
            if self._unanswered >= THREAD_HELPS_AT and not self._in_thread_now:
                with _gil_switched_often():
                    return await self._in_thread(here)
            worker = await self._worker()
            self._unanswered += 1
            try:
                return await self._answer(worker, asked(worker))
            finally:
                self._unanswered -= 1

    async def _in_thread(self, here: Callable[[], ChunkOutcome]) -> ChunkOutcome:
        self._in_thread_now += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, analysed_or_failed, here)
        finally:
            self._in_thread_now -= 1

    @contextlib.asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        """A request in flight: `close` waits for it (it may have been asked just before the close)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _worker(self) -> DecodeProcess:
        async with self._starting:
            if self._process is None:
                started, self._started = self._started, None
                self._process = await DecodeProcess.start(self.judges, started)
            return self._process

    async def _answer(self, worker: DecodeProcess, asked: Awaitable[ChunkOutcome]) -> ChunkOutcome:
        try:
            return await asked
        except WorkerError:
            if self._process is worker:  # the first to notice lets the next chunk start a new worker
                self._process = None
            raise

    async def close(self) -> None:
        """Answer what was asked (also what is being asked now), then let the worker exit."""
        self._thread.shutdown(wait=False, cancel_futures=False)
        await self._idle.wait()
        if self._started is not None:  # never asked anything
            await discard_process(self._started)
        if self._process is not None:
            process, self._process = self._process, None
            await process.close()


@contextlib.contextmanager
def _gil_switched_often() -> Iterator[None]:
    default = sys.getswitchinterval()
    sys.setswitchinterval(HELPING_SWITCH_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(default)
