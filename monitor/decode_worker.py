"""A lean decode process: `python -m monitor.decode_worker`, fed chunks of log entries over a pipe.

Why not a multiprocessing worker: a spawned worker re-runs the parent's main module first, which for
the `rekorwatch` command is the whole CLI (the database, HTTP, the API: about 45 MiB and a second of
CPU per worker). This module imports only what decoding and judging need (`monitor.analysis`), and
what crosses the pipe is plain bytes: each body once, length-prefixed, instead of a pickled list.

Protocol (stdin -> stdout, each frame a 4-byte big-endian length then that many bytes):
- the first frame is the pickled `Judges`, from the parent (trusted);
- then each request is a chunk: a flag byte, then for Rekor entry bodies (flag bit 0: also hash
  them, the 8-byte big-endian tree index of the first following) each body as a 4-byte big-endian
  length and its bytes, or for CT entries (flag bit 1) the pickled list of `CtLogEntry` (from the
  parent: trusted);
- each answer, in request order, is the pickled `ChunkOutcome`.
The worker exits when its stdin closes: a parent that dies takes its workers with it. It ignores
SIGINT: Ctrl-C is the daemon's to handle, by finishing the chunk in flight.

Invariants: the bodies are analysed exactly as `analyse_entry` does in process (same findings, same
`EntryDecodeError`s); a malformed frame from the parent ends the worker with a message on stderr,
never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from monitor.analysis import CtOutcome, Judges, Outcome, analyse_bodies, analyse_ct_entries
from monitor.child import end_process, start_decode_worker
from monitor.tlog.ct import CtLogEntry
from monitor.tlog.merkle import Subtree, aligned_subtrees, leaf_hash

LENGTH = struct.Struct(">I")
FIRST_INDEX = struct.Struct(">Q")
WITH_LEAF_HASHES = 1
CT_ENTRIES = 2
MAX_FRAME_BYTES = 1 << 30


@dataclass(frozen=True)
class ChunkOutcome:
    """{position: outcome} for the bodies that yield findings or cannot be decoded, and when asked,
    every body's leaf hash, concatenated (32 bytes each, in order), and the aligned subtrees those
    leaves make (what the tail folds into its compact range: the same as folding every leaf)."""

    outcomes: dict[int, Outcome] | dict[int, CtOutcome]
    leaf_hashes: bytes = b""
    subtrees: tuple[Subtree, ...] = ()


class WorkerError(Exception):
    """The decode process failed or answered something malformed."""


def encode_ct_chunk(entries: Sequence[CtLogEntry]) -> bytes:
    """A request frame's payload for CT entries."""
    return bytes([CT_ENTRIES]) + pickle.dumps(list(entries))


def encode_chunk(bodies: Sequence[bytes], *, hash_from: int | None = None) -> bytes:
    """A request frame's payload: the flag byte (and the first body's tree index, to hash them),
    then each body length-prefixed."""
    parts = [bytes([0]) if hash_from is None else bytes([WITH_LEAF_HASHES]) + FIRST_INDEX.pack(hash_from)]
    for body in bodies:
        parts += (LENGTH.pack(len(body)), body)
    return b"".join(parts)


def decode_chunk(payload: bytes) -> tuple[list[bytes], int | None]:
    """The bodies of a request and the tree index to hash them from (None: not wanted); ValueError
    if malformed."""
    if not payload:
        raise ValueError("an empty request")
    hash_from, offset, size = None, 1, len(payload)
    if payload[0] == WITH_LEAF_HASHES:
        if size < 1 + FIRST_INDEX.size:
            raise ValueError("a request to hash ends inside its first index")
        (hash_from,), offset = FIRST_INDEX.unpack_from(payload, 1), 1 + FIRST_INDEX.size
    bodies = []
    while offset < size:
        if offset + LENGTH.size > size:
            raise ValueError("a body length runs past the request")
        (length,) = LENGTH.unpack_from(payload, offset)
        offset += LENGTH.size
        if offset + length > size:
            raise ValueError("a body runs past the request")
        bodies.append(payload[offset : offset + length])
        offset += length
    return bodies, hash_from


def analyse_chunk(bodies: Sequence[bytes], judges: Judges, *, hash_from: int | None = None) -> ChunkOutcome:
    outcomes = analyse_bodies(bodies, judges)
    if hash_from is None:
        return ChunkOutcome(outcomes)
    hashes = [leaf_hash(body) for body in bodies]
    return ChunkOutcome(outcomes, b"".join(hashes), tuple(aligned_subtrees(hash_from, hashes)))


def answer(payload: bytes, judges: Judges) -> ChunkOutcome:
    """The answer to one request frame; ValueError if it is malformed."""
    if payload[:1] == bytes([CT_ENTRIES]):
        return ChunkOutcome(analyse_ct_entries(pickle.loads(payload[1:]), judges))
    bodies, hash_from = decode_chunk(payload)
    return analyse_chunk(bodies, judges, hash_from=hash_from)


# -- the worker side -------------------------------------------------------------------------------


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame, None at a clean end of input."""
    header = stream.read(LENGTH.size)
    if not header:
        return None
    if len(header) < LENGTH.size:
        raise ValueError("input ends inside a frame header")
    (length,) = LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {length} bytes")
    payload = stream.read(length)
    if len(payload) < length:
        raise ValueError("input ends inside a frame")
    return payload


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(LENGTH.pack(len(payload)) + payload)
    stream.flush()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer chunks until the input ends."""
    setup = read_frame(requests)
    if setup is None:
        return
    judges: Judges = pickle.loads(setup)
    while (payload := read_frame(requests)) is not None:
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


# -- the parent side -------------------------------------------------------------------------------


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

    async def analyse_ct(self, entries: Sequence[CtLogEntry]) -> ChunkOutcome:
        return await self._request(encode_ct_chunk(entries))

    async def _request(self, payload: bytes) -> ChunkOutcome:
        waiting: asyncio.Future[ChunkOutcome] = asyncio.get_running_loop().create_future()
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            self._waiting.put_nowait(waiting)
            await self._send(payload)
        del payload  # sent: a chunk's frame (1.5 MB of entries) is not held while the worker works
        return await waiting

    async def _send(self, payload: bytes) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(LENGTH.pack(len(payload)))
            stdin.write(payload)  # not joined with its header: that copy would be one more chunk in memory
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerError(f"the decode worker stopped: {exc!r}") from None

    async def _read_answers(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while True:
                (length,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
                outcome = pickle.loads(await stdout.readexactly(length))
                answer = await self._waiting.get()
                if not answer.done():
                    answer.set_result(outcome)
        except Exception as exc:  # a dead worker, or an answer that does not unpickle: either way, it is gone
            self._fail(WorkerError(f"the decode worker stopped: {exc!r}"))

    def _fail(self, error: WorkerError) -> None:
        self._failed = error
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()  # a worker still alive (its answer did not unpickle) sees EOF and exits
        while not self._waiting.empty():
            answer = self._waiting.get_nowait()
            if not answer.done():
                answer.set_exception(error)

    async def close(self) -> None:
        await end_process(self._process)
        self._reader.cancel()


if __name__ == "__main__":
    # Run the module under its own name, so that what it pickles is `monitor.decode_worker.ChunkOutcome`
    # (importable by the parent), not `__main__.ChunkOutcome`.
    from monitor import decode_worker

    decode_worker.main()
