"""A lean decode process: `python -m monitor.decode_worker`, fed chunks of log entries over a pipe.

Why not a multiprocessing worker: a spawned worker re-runs the parent's main module first, which for
the `rekorwatch` command is the whole CLI (the database, HTTP, the API: about 45 MiB and a second of
CPU per worker). This module imports only what decoding and judging need (`monitor.analysis`), and
what crosses the pipe is plain bytes: each body once, length-prefixed, instead of a pickled list.

Protocol (stdin -> stdout, each frame a 4-byte big-endian length then that many bytes):
- the first frame is the pickled `Judges`, from the parent (trusted);
- then each request is a chunk: a flag byte, then for Rekor entry bodies (flag bit 0: also hash
  them, the 8-byte big-endian tree index of the first following) each body as a 4-byte big-endian
  length and its bytes; or for Rekor v1 retrieve answers (flag bit 2: read, check and hash them,
  the 8-byte tree index of the first entry following), for each answer the 4-byte count of the
  global indexes it was asked for, those as 8-byte big-endian integers, then the answer as a 4-byte
  length and its bytes; or for tiles entry bundles (flag bit 3: split, hash and analyse their
  entries, the 8-byte tree index of the first wanted entry following), for each bundle its width
  as served, the first and end positions of the entries wanted in it, each 4 bytes big-endian,
  then the bundle as a 4-byte length and its bytes; or for CT entries (flag bit 1: analyse them and
  fold their leaf hashes) the pickled pair of the first one's tree index and the list of
  `CtLogEntry` (from the parent: trusted);
- each answer, in request order, is the pickled `ChunkOutcome`, or a `ChunkFailedError` when the
  analysis raised (a bug met on the chunk's bytes): that request fails, the worker goes on.
The worker exits when its stdin closes: a parent that dies takes its workers with it. It ignores
SIGINT: Ctrl-C is the daemon's to handle, by finishing the chunk in flight. A worker that has not
answered a request within ANSWER_SECONDS (stopped, or stuck on an entry) is killed by the parent:
its callers fail with WorkerError and the next chunk starts a new one, so a stuck worker shows as a
follower error instead of a tail that waits for ever.

Invariants: the bodies are analysed exactly as `analyse_entry` does in process (same findings, same
`EntryDecodeError`s); retrieve answers are read exactly as the daemon's client reads them (the same
entries, the same problem named), and the SETs of those with findings checked as the daemon checks
those of a chunk it read itself (`with_integrated_times`); entry bundles are split as the client
splits them; a malformed frame from the parent ends the worker with a message on stderr, never a
wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from monitor.analysis import (
    CtOutcome,
    Judges,
    Outcome,
    analyse_bodies,
    analyse_ct_entries,
    unforeseen,
    with_integrated_times,
)
from monitor.child import discard_process, end_process, start_decode_worker
from monitor.tlog.answers import RefusedAnswer
from monitor.tlog.ct import CtLogEntry
from monitor.tlog.entry_bundle import BundleRefused, EntryBundle, bundled_entries
from monitor.tlog.merkle import Subtree, aligned_subtrees, leaf_hash
from monitor.tlog.rekor_v1_entries import RekorEntry, RetrieveAnswer, chunk_entries, first_misnamed
from monitor.whole_writes import write_whole

LENGTH = struct.Struct(">I")
FIRST_INDEX = struct.Struct(">Q")
WITH_LEAF_HASHES = 1
CT_ENTRIES = 2
V1_ANSWERS = 4
ENTRY_BUNDLES = 8
BUNDLE_SHAPE = struct.Struct(">III")  # width, start, stop
MAX_FRAME_BYTES = 1 << 30
ANSWER_SECONDS = 120.0
"""A chunk takes milliseconds to analyse (a second for 1024 watched certificates); the requests
queued before it, a few times that."""


@dataclass(frozen=True)
class ChunkOutcome:
    """{position: outcome} for the bodies that yield findings or cannot be decoded, and when asked,
    every body's leaf hash, concatenated (32 bytes each, in order), and the aligned subtrees those
    leaves make (what the tail folds into its compact range: the same as folding every leaf).

    For retrieve answers and entry bundles: the entries of those positions (`kept`: a v1 entry as
    read, a tiles entry's body; the others are not sent back). A v1 chunk's leaf hashes are not
    sent back either; `misnamed`: the global index of the first entry whose uuid does not name its
    body's leaf hash (the tail fails the chunk at its turn). Or nothing analysed: `refused`, the
    problem of a malformed answer or bundle (which: `refused_in`; the tail fails the chunk at once,
    as its client would), or `missing`, entries that no retrieve answer holds (the tail asks the log
    for them again)."""

    outcomes: dict[int, Outcome] | dict[int, CtOutcome]
    leaf_hashes: bytes = b""
    subtrees: tuple[Subtree, ...] = ()
    kept: dict[int, RekorEntry] | dict[int, bytes] = field(default_factory=dict)
    misnamed: int | None = None
    refused: str | None = None
    refused_in: int = 0
    missing: bool = False


class WorkerError(Exception):
    """The decode process failed or answered something malformed."""


class ChunkFailedError(Exception):
    """A chunk whose analysis raised an exception no parser raises for bad input: a bug in rekorwatch
    or a library, met on a log's bytes (in a decode process or the daemon's thread alike). The
    chunk's cycle fails and reads it again; the message names the exception and where it was raised."""


def analysed_or_failed(analysis: Callable[[], ChunkOutcome]) -> ChunkOutcome:
    """`analysis()`, an exception it raises as ChunkFailedError: in a thread as from a decode process."""
    try:
        return analysis()
    except Exception as exc:
        raise ChunkFailedError(unforeseen(exc)) from exc


def encode_ct_chunk(entries: Sequence[CtLogEntry], hash_from: int) -> bytes:
    """A request frame's payload for CT entries from tree index `hash_from`: pickled after the flag
    byte, in one buffer (a CT chunk's pickle is megabytes: prepending the flag to it copied it whole)."""
    buffer = io.BytesIO()
    buffer.write(bytes([CT_ENTRIES]))
    pickle.dump((hash_from, list(entries)), buffer)
    return buffer.getvalue()


def encode_chunk(bodies: Sequence[bytes], *, hash_from: int | None = None) -> bytes:
    """A request frame's payload: the flag byte (and the first body's tree index, to hash them),
    then each body length-prefixed."""
    parts = [bytes([0]) if hash_from is None else bytes([WITH_LEAF_HASHES]) + FIRST_INDEX.pack(hash_from)]
    for body in bodies:
        parts += (LENGTH.pack(len(body)), body)
    return b"".join(parts)


def encode_answers(answers: Sequence[RetrieveAnswer], hash_from: int) -> bytes:
    """A request frame's payload for Rekor v1 retrieve answers, their entries' leaves from tree
    index `hash_from`."""
    parts = [bytes([V1_ANSWERS]), FIRST_INDEX.pack(hash_from)]
    for answer in answers:
        parts.append(LENGTH.pack(len(answer.requested)))
        parts += map(FIRST_INDEX.pack, answer.requested)
        parts += (LENGTH.pack(len(answer.raw)), answer.raw)
    return b"".join(parts)


def decode_answers(payload: bytes | memoryview) -> tuple[list[RetrieveAnswer], int]:
    """The answers of a request and the tree index of their first entry; ValueError if malformed."""
    hash_from, offset, size = _first_index(payload, "answers"), 1 + FIRST_INDEX.size, len(payload)
    view = memoryview(payload)  # the answers are read in place: a chunk's are megabytes
    answers = []
    while offset < size:
        count, offset = _length_at(view, offset)
        end = offset + count * FIRST_INDEX.size
        if end > size:
            raise ValueError("the indexes of an answer run past the request")
        requested = struct.unpack_from(f">{count}Q", view, offset)
        raw, offset = _sized_at(view, end, "an answer")
        answers.append(RetrieveAnswer(requested, raw))
    return answers, hash_from


def encode_bundles(bundles: Sequence[EntryBundle], hash_from: int) -> bytes:
    """A request frame's payload for tiles entry bundles, their wanted entries' leaves from tree
    index `hash_from`."""
    parts = [bytes([ENTRY_BUNDLES]), FIRST_INDEX.pack(hash_from)]
    for bundle in bundles:
        parts += (BUNDLE_SHAPE.pack(bundle.width, bundle.start, bundle.stop), LENGTH.pack(len(bundle.raw)), bundle.raw)
    return b"".join(parts)


def decode_bundles(payload: bytes | memoryview) -> tuple[list[EntryBundle], int]:
    """The bundles of a request and the tree index of their first wanted entry; ValueError if malformed."""
    hash_from, offset, size = _first_index(payload, "bundles"), 1 + FIRST_INDEX.size, len(payload)
    view = memoryview(payload)
    bundles = []
    while offset < size:
        if offset + BUNDLE_SHAPE.size > size:
            raise ValueError("the shape of a bundle runs past the request")
        width, start, stop = BUNDLE_SHAPE.unpack_from(view, offset)
        raw, offset = _sized_at(view, offset + BUNDLE_SHAPE.size, "a bundle")
        bundles.append(EntryBundle(width, start, stop, raw))
    return bundles, hash_from


def decode_chunk(payload: bytes | memoryview) -> tuple[list[bytes], int | None]:
    """The bodies of a request and the tree index to hash them from (None: not wanted); ValueError
    if malformed."""
    if not payload:
        raise ValueError("an empty request")
    hash_from, offset = None, 1
    if payload[0] == WITH_LEAF_HASHES:
        hash_from, offset = _first_index(payload, "bodies to hash"), 1 + FIRST_INDEX.size
    view = memoryview(payload)
    bodies = []
    while offset < len(view):
        body, offset = _sized_at(view, offset, "a body")
        bodies.append(bytes(body))
    return bodies, hash_from


def _first_index(payload: bytes | memoryview, what: str) -> int:
    """The 8-byte tree index after a request's flag byte."""
    if len(payload) < 1 + FIRST_INDEX.size:
        raise ValueError(f"a request of {what} ends inside its first index")
    return int(FIRST_INDEX.unpack_from(payload, 1)[0])


def _length_at(view: memoryview, offset: int) -> tuple[int, int]:
    """The 4-byte length at `offset`, and the offset after it."""
    if offset + LENGTH.size > len(view):
        raise ValueError("a length runs past the request")
    return LENGTH.unpack_from(view, offset)[0], offset + LENGTH.size


def _sized_at(view: memoryview, offset: int, what: str) -> tuple[memoryview, int]:
    """The length-prefixed bytes at `offset` (read in place), and the offset after them."""
    length, offset = _length_at(view, offset)
    end = offset + length
    if end > len(view):
        raise ValueError(f"{what} runs past the request")
    return view[offset:end], end


def analyse_chunk(bodies: Sequence[bytes], judges: Judges, *, hash_from: int | None = None) -> ChunkOutcome:
    outcomes = analyse_bodies(bodies, judges)
    if hash_from is None:
        return ChunkOutcome(outcomes)
    hashes = [leaf_hash(body) for body in bodies]
    return ChunkOutcome(outcomes, b"".join(hashes), tuple(aligned_subtrees(hash_from, hashes)))


def analyse_answers(answers: Sequence[RetrieveAnswer], judges: Judges, *, hash_from: int) -> ChunkOutcome:
    """Read the entries of Rekor v1 retrieve answers as the daemon's client would, check the leaf
    hash each uuid names against its body's, then analyse them as `analyse_chunk` does, and check
    the SETs of those with findings."""
    try:
        entries = chunk_entries(answers)
    except RefusedAnswer as exc:
        return ChunkOutcome({}, refused=exc.problem)
    if entries is None:
        return ChunkOutcome({}, missing=True)
    bodies = [entry.body for entry in entries]
    hashes = [leaf_hash(body) for body in bodies]
    misnamed = first_misnamed(entries, b"".join(hashes))
    outcomes = with_integrated_times(analyse_bodies(bodies, judges), entries, judges.timestamps)
    return ChunkOutcome(
        outcomes,
        subtrees=tuple(aligned_subtrees(hash_from, hashes)),
        kept={position: entries[position] for position in outcomes},
        misnamed=misnamed,
    )


def analyse_bundles(bundles: Sequence[EntryBundle], judges: Judges, *, hash_from: int) -> ChunkOutcome:
    """Split tiles entry bundles as the client would, then analyse their wanted entries as
    `analyse_chunk` does, with the bodies of the positions with outcomes."""
    try:
        bodies = bundled_entries(bundles)
    except BundleRefused as exc:
        return ChunkOutcome({}, refused=exc.problem, refused_in=exc.position)
    analysed = analyse_chunk(bodies, judges, hash_from=hash_from)
    kept = {position: bodies[position] for position in analysed.outcomes}
    return ChunkOutcome(analysed.outcomes, analysed.leaf_hashes, analysed.subtrees, kept=kept)


def analyse_ct_chunk(entries: Sequence[CtLogEntry], judges: Judges, *, hash_from: int) -> ChunkOutcome:
    """The entries' outcomes, and their leaf hashes (computed by the parser) folded into subtrees."""
    subtrees = tuple(aligned_subtrees(hash_from, [entry.leaf_hash for entry in entries]))
    return ChunkOutcome(analyse_ct_entries(entries, judges), subtrees=subtrees)


def answer(payload: bytes | memoryview, judges: Judges) -> ChunkOutcome | ChunkFailedError:
    """The answer to one request frame: its outcome, or the failure of its analysis (sent back: that
    request fails, the worker goes on). ValueError if the frame itself is malformed (the parent's
    bytes, not a log's)."""
    analysis = _analysis_of(payload, judges)
    try:
        return analysed_or_failed(analysis)
    except ChunkFailedError as exc:
        return exc


def _analysis_of(payload: bytes | memoryview, judges: Judges) -> Callable[[], ChunkOutcome]:
    """The analysis a request frame asks for, its frame read."""
    if payload[:1] == bytes([CT_ENTRIES]):
        hash_from, entries = pickle.loads(payload[1:])
        return lambda: analyse_ct_chunk(entries, judges, hash_from=hash_from)
    if payload[:1] == bytes([V1_ANSWERS]):
        answers, hash_from = decode_answers(payload)
        return lambda: analyse_answers(answers, judges, hash_from=hash_from)
    if payload[:1] == bytes([ENTRY_BUNDLES]):
        bundles, hash_from = decode_bundles(payload)
        return lambda: analyse_bundles(bundles, judges, hash_from=hash_from)
    bodies, hash_from = decode_chunk(payload)
    return lambda: analyse_chunk(bodies, judges, hash_from=hash_from)


# -- the worker side -------------------------------------------------------------------------------


class FrameReader:
    """Frames read into one buffer, reused: each frame is valid until the next is read. A chunk's
    frame is megabytes (a v1 chunk's answers: 4.5 MB), and a new one for each left the worker's heap
    10-15 MiB larger (glibc keeps freed blocks of that size once its mmap threshold has risen)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def next(self) -> memoryview | None:
        """The next frame, None at a clean end of input."""
        header = self._stream.read(LENGTH.size)
        if not header:
            return None
        if len(header) < LENGTH.size:
            raise ValueError("input ends inside a frame header")
        (length,) = LENGTH.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise ValueError(f"a frame of {length} bytes")
        if len(self._buffer) < length:
            self._buffer = bytearray(length)
        frame = memoryview(self._buffer)[:length]
        read = 0
        while read < length:
            count = self._stream.readinto(frame[read:])
            if not count:
                raise ValueError("input ends inside a frame")
            read += count
        return frame


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    write_whole(stream, LENGTH.pack(len(payload)) + payload)


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer chunks until the input ends."""
    frames = FrameReader(requests)
    setup = frames.next()
    if setup is None:
        return
    judges: Judges = pickle.loads(setup)
    while (payload := frames.next()) is not None:
        write_frame(answers, pickle.dumps(answer(payload, judges)))


PIPE_BYTES = 1 << 20
"""Linux's limit for an unprivileged process (/proc/sys/fs/pipe-max-size): a chunk of 1024 entries
crosses in one or two writes instead of twenty-four 64 KiB ones, each waiting for a turn of the
daemon's busy event loop while the worker idles. The worker widens its own stdin: the daemon's pipe
transport need not expose its file (uvloop's do not)."""


def widen_pipe(stream: BinaryIO) -> None:
    with contextlib.suppress(OSError, ValueError):  # not a pipe (a file, a terminal), or an old kernel
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    widen_pipe(sys.stdin.buffer)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (ValueError, pickle.UnpicklingError) as exc:
        sys.stderr.write(f"decode worker: {exc}\n")
        sys.exit(2)
    exit_without_teardown()


def exit_without_teardown() -> None:
    """Exit 0 at once, once the input has ended and every answer is written (`write_whole` leaves
    nothing buffered; the worker holds no other resource). The interpreter's teardown, freeing the
    judges and caches object by object, took 50 ms that the daemon's shutdown waited for."""
    sys.stderr.flush()
    os._exit(0)


# -- the parent side -------------------------------------------------------------------------------


def _taken(answers: list[RetrieveAnswer], hash_from: int) -> bytes:
    payload = encode_answers(answers, hash_from)
    answers.clear()
    return payload


class DecodeProcess:
    """One `python -m monitor.decode_worker` child; requests are answered in order, several may wait."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()  # one writer at a time; answers come back in request order
        self._waiting: asyncio.Queue[asyncio.Future[ChunkOutcome]] = asyncio.Queue()
        self._failed: WorkerError | None = None
        self._reader = asyncio.create_task(self._read_answers())

    @classmethod
    async def start(cls, judges: Judges, started: asyncio.subprocess.Process | None = None) -> DecodeProcess:
        """A decode process given its judges: `started` (by `start_decode_worker`, before the daemon
        knew them), or a new one."""
        process = started if started is not None else await start_decode_worker()
        worker = cls(process)
        await worker._send(pickle.dumps(judges))
        return worker

    @property
    def pid(self) -> int:
        return self._process.pid

    async def analyse(self, bodies: Sequence[bytes], *, hash_from: int | None = None) -> ChunkOutcome:
        return await self._request(encode_chunk(bodies, hash_from=hash_from))

    async def analyse_answers(self, answers: list[RetrieveAnswer], *, hash_from: int) -> ChunkOutcome:
        """Empties `answers` once they are encoded: the request is then their only copy."""
        return await self._request(_taken(answers, hash_from))

    async def analyse_bundles(self, bundles: Sequence[EntryBundle], *, hash_from: int) -> ChunkOutcome:
        return await self._request(encode_bundles(bundles, hash_from))

    async def analyse_ct(self, entries: Sequence[CtLogEntry], *, hash_from: int) -> ChunkOutcome:
        return await self._request(encode_ct_chunk(entries, hash_from))

    async def _request(self, payload: bytes) -> ChunkOutcome:
        waiting: asyncio.Future[ChunkOutcome] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                async with self._lock:
                    if self._failed is not None:
                        raise self._failed
                    self._waiting.put_nowait(waiting)
                    await self._send(payload)  # a stopped worker's full pipe would block here
                del payload  # sent: a chunk's frame (1.5 MB of entries) is not held while the worker works
                return await waiting
        except TimeoutError:
            waiting.cancel()  # its caller is this one, told below (the timeout may have come during the send)
            error = WorkerError(f"the decode worker did not answer within {ANSWER_SECONDS:g} s: ended")
            self._fail(error)
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            raise error from None

    async def _send(self, payload: bytes) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(LENGTH.pack(len(payload)))
            stdin.write(payload)  # not joined with its header: that copy would be one more chunk in memory
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # A worker ended for not answering breaks the pipe under the requests still sending: they
            # fail with the reason it was ended.
            raise self._failed or WorkerError(f"the decode worker stopped: {exc!r}") from None

    async def _read_answers(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while True:
                (length,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
                outcome = pickle.loads(await stdout.readexactly(length))
                answer = await self._waiting.get()
                if answer.done():
                    continue
                if isinstance(outcome, ChunkFailedError):
                    answer.set_exception(outcome)
                else:
                    answer.set_result(outcome)
        except Exception as exc:  # a dead worker, or an answer that does not unpickle: either way, it is gone
            self._fail(WorkerError(f"the decode worker stopped: {exc!r}"))

    def _fail(self, error: WorkerError) -> None:
        """Fail every caller waiting and every later one with the first error (the reader also sees
        the end of a worker killed for not answering, and says less)."""
        if self._failed is None:
            self._failed = error
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()  # a worker still alive (its answer did not unpickle) sees EOF and exits
        while not self._waiting.empty():
            answer = self._waiting.get_nowait()
            if not answer.done():
                answer.set_exception(self._failed)

    async def close(self) -> None:
        """Let the worker answer what it was asked and exit; killed if it has not within
        ANSWER_SECONDS (a stopped worker would hold the daemon's shutdown for ever)."""
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                await end_process(self._process)
        except TimeoutError:
            await discard_process(self._process)
        self._reader.cancel()


if __name__ == "__main__":
    # Run the module under its own name, so that what it pickles is `monitor.decode_worker.ChunkOutcome`
    # (importable by the parent), not `__main__.ChunkOutcome`.
    from monitor import decode_worker

    decode_worker.main()
