"""The lean decode process answers exactly what in-process analysis answers, reads a Rekor v1 chunk's
answers exactly as the daemon's client reads them (the same entries, the same problems), splits a
tiles chunk's bundles as the client does, imports no more than it needs, and never leaves a caller
waiting on a dead worker."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor import decode_worker
from monitor.analyser import HELPING_SWITCH_SECONDS, THREAD_HELPS_AT, ChunkAnalyser
from monitor.analysis import (
    EntryAnalysis,
    Judges,
    Outcome,
    analyse_bodies,
    analyse_entry,
    unforeseen,
    with_integrated_times,
)
from monitor.child import start_decode_worker
from monitor.config import WatchSettings
from monitor.decode_worker import (
    LENGTH,
    PIPE_BYTES,
    ChunkFailedError,
    DecodeProcess,
    FrameReader,
    WorkerError,
    analyse_answers,
    analyse_bundles,
    analyse_chunk,
    decode_answers,
    decode_bundles,
    decode_chunk,
    encode_answers,
    encode_bundles,
    encode_chunk,
    serve,
)
from monitor.entries import EntryDecodeError
from monitor.policy import Policy
from monitor.simulate.ca import LocalCA
from monitor.simulate.server import start_simulator
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH, PopulateChunk, populate_chunk
from monitor.tlog.ct import CtLogEntry
from monitor.tlog.entry_bundle import EntryBundle
from monitor.tlog.entry_timestamp import EntryTimestamps, IntegratedTime
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.merkle import aligned_subtrees, leaf_hash
from monitor.tlog.rekor_v1 import RekorV1Client
from monitor.tlog.rekor_v1_entries import RetrieveAnswer, chunk_entries, first_misnamed
from monitor.tlog.source import RekorV1Source
from monitor.trust import LogKey, Validity, load_trust_root, parse_trust_root
from tests.stopping import stopped, stopped_and_continued

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
WATCH = {
    "codefresh": [
        {
            "account_id": FULCIO_TEST_CODEFRESH["account_id"],
            "account_name": FULCIO_TEST_CODEFRESH["account_name"],
            "pipelines": [{"id": FULCIO_TEST_CODEFRESH["pipeline_id"]}],
        }
    ]
}


def judges_of(ca: LocalCA, policy: Policy) -> Judges:
    authority = {
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
        "validFor": {"start": "2000-01-01T00:00:00Z"},
    }
    trust = parse_trust_root({"certificateAuthorities": [authority], "tlogs": []}, None, "test")
    return Judges.of(policy, trust)


@pytest.fixture(scope="module")
def setup() -> tuple[Judges, list[bytes]]:
    ca = LocalCA.generate()
    bodies = populate_chunk(
        PopulateChunk(ca.to_pem(), 60, tuple(range(0, 60, 5)), FULCIO_TEST_CODEFRESH, seed=4)
    ).bodies
    bodies += [b"not json", json.dumps({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {}}).encode()]
    return judges_of(ca, Policy(WatchSettings.model_validate(WATCH))), bodies


@pytest.fixture
async def worker(setup: tuple[Judges, list[bytes]]) -> AsyncIterator[DecodeProcess]:
    judges, _ = setup
    process = await DecodeProcess.start(judges)
    yield process
    await process.close()


def comparable(outcomes: dict[int, Outcome]) -> dict[int, Any]:
    return {
        position: (outcome.reason, outcome.detail) if isinstance(outcome, EntryDecodeError) else outcome
        for position, outcome in outcomes.items()
    }


def test_a_chunk_is_analysed_as_each_entry_alone(setup: tuple[Judges, list[bytes]]) -> None:
    """`analyse_bodies` skips making an analysis for entries without findings: what it keeps is what
    `analyse_entry` says of each body, and it drops only analyses without findings."""
    judges, bodies = setup
    expected: dict[int, Outcome] = {}
    for position, body in enumerate(bodies):
        try:
            analysis = analyse_entry(body, judges.policy, judges.chains)
        except EntryDecodeError as exc:
            expected[position] = exc
            continue
        if analysis.findings:
            expected[position] = analysis
    assert comparable(analyse_bodies(bodies, judges)) == comparable(expected)
    assert len(expected) >= 7


def test_an_entry_whose_decoding_fails_unforeseen_is_undecodable_and_the_others_are_analysed(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """No entry stops the tail (monitor/analysis.py). No known entry makes a decoder raise anything but
    EntryDecodeError (a fuzz of 777k mutated certificates found none); a body that is not bytes
    stands in for the bug a hostile entry might find."""
    judges, bodies = setup
    hostile: list[Any] = [*bodies[:10], None, *bodies[10:]]
    outcomes = analyse_bodies(hostile, judges)
    failed = outcomes.pop(10)
    assert isinstance(failed, EntryDecodeError) and failed.reason == "internal_error"
    assert failed.detail.startswith("TypeError: ") and "(at entries.py:" in failed.detail
    shifted = {position - (position > 10): outcome for position, outcome in outcomes.items()}
    assert comparable(shifted) == comparable(analyse_bodies(bodies, judges))
    crossed = pickle.loads(pickle.dumps(failed))  # as a decode process sends it back
    assert (crossed.reason, crossed.detail) == (failed.reason, failed.detail)


def test_an_unforeseen_failure_is_described_in_text_every_store_and_sink_takes() -> None:
    """The detail is stored and sent as an alert: a hostile value in the exception's message must not
    make it text that UTF-8 (PostgreSQL, orjson) refuses."""
    try:
        raise ValueError("a value \ud800 from the entry, é")
    except ValueError as exc:
        detail = unforeseen(exc)
    assert detail.startswith("ValueError: a value \\ud800 from the entry, é (at test_decode_worker.py:")
    detail.encode("utf-8")


async def test_a_chunk_whose_analysis_fails_fails_alone_and_the_worker_goes_on(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """A bug met on a chunk's bytes (on one entry's, it is that entry's internal_error) fails that
    request with the exception and the line that raised it, in a decode process as in the daemon's
    thread, and the worker answers the next: before, the process died and the follower error said
    `WorkerError: stopped`, as for an OOM kill. CT entries without leaf hashes stand in for the bug
    (folding them raises a TypeError)."""
    judges, bodies = setup
    broken: list[Any] = [CtLogEntry(100, b"", b"", None), CtLogEntry(101, b"", b"", None)]  # type: ignore[arg-type]
    expected = comparable(analyse_bodies(bodies, judges))
    for in_thread in (True, False):
        analyser = ChunkAnalyser(judges, in_thread=in_thread)
        try:
            with pytest.raises(ChunkFailedError, match=r"^TypeError: .* \(at merkle\.py:\d+ in "):
                await analyser.analyse_ct(broken, hash_from=100)
            worker = analyser._process
            assert (worker is None) == in_thread
            assert comparable((await analyser.analyse(bodies, hash_from=0)).outcomes) == expected
            assert analyser._process is worker  # the same decode process answered
        finally:
            await analyser.close()


async def test_the_worker_answers_what_in_process_analysis_answers(
    worker: DecodeProcess, setup: tuple[Judges, list[bytes]]
) -> None:
    judges, bodies = setup
    answer = await worker.analyse(bodies, hash_from=1000)
    expected = analyse_bodies(bodies, judges)
    assert comparable(answer.outcomes) == comparable(expected)
    assert sum(not isinstance(outcome, EntryDecodeError) for outcome in expected.values()) >= 5  # watched ones
    assert {expected[len(bodies) - 2].reason, expected[len(bodies) - 1].reason} == {"not_json", "missing_field"}
    assert answer.leaf_hashes == b"".join(leaf_hash(body) for body in bodies)
    assert answer.subtrees == tuple(aligned_subtrees(1000, [leaf_hash(body) for body in bodies]))
    assert (await worker.analyse(bodies[:3])).leaf_hashes == b""


async def test_the_worker_never_imports_a_monitor_package_from_the_working_directory(
    setup: tuple[Judges, list[bytes]], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    judges, bodies = setup
    planted = tmp_path / "monitor"
    planted.mkdir()
    (planted / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    worker = await DecodeProcess.start(judges)
    try:
        answer = await worker.analyse(bodies)
    finally:
        await worker.close()
    assert comparable(answer.outcomes) == comparable(analyse_bodies(bodies, judges))
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize("in_thread", [True, False], ids=["single core: a thread", "a decode process"])
async def test_the_analyser_answers_alike_in_a_thread_and_in_a_decode_process(
    setup: tuple[Judges, list[bytes]], in_thread: bool
) -> None:
    judges, bodies = setup
    analyser = ChunkAnalyser(judges, in_thread=in_thread)
    try:
        assert comparable((await analyser.analyse(bodies)).outcomes) == comparable(analyse_bodies(bodies, judges))
        hashed = await analyser.analyse(bodies, hash_from=5)
        assert hashed.subtrees == tuple(aligned_subtrees(5, [leaf_hash(body) for body in bodies]))
    finally:
        await analyser.close()


async def test_a_decode_process_started_early_is_the_one_used_then_ended(setup: tuple[Judges, list[bytes]]) -> None:
    """`rekorwatch run` starts the decode process before its own imports (cli.py): the analyser
    answers with that process, starts no other, and ends it when closed."""
    judges, bodies = setup
    started = await start_decode_worker()
    analyser = ChunkAnalyser(judges, in_thread=False, started=started)
    try:
        assert comparable((await analyser.analyse(bodies)).outcomes) == comparable(analyse_bodies(bodies, judges))
        assert analyser._process is not None and analyser._process.pid == started.pid
    finally:
        await analyser.close()
    assert started.returncode == 0


async def test_a_decode_process_started_early_and_never_asked_is_ended_at_once(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """Not waited for while it imports: a `run --once` with nothing to read would wait for that."""
    started = await start_decode_worker()
    await ChunkAnalyser(setup[0], in_thread=False, started=started).close()
    assert started.returncode == -signal.SIGKILL


async def test_the_worker_widens_its_input_pipe(worker: DecodeProcess, setup: tuple[Judges, list[bytes]]) -> None:
    """So that a chunk crosses in one or two writes, whatever the daemon's pipe transport exposes."""
    await worker.analyse(setup[1][:2])  # answering: its main() ran
    assert worker._process.stdin is not None
    pipe = worker._process.stdin.transport.get_extra_info("pipe")
    assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_BYTES


async def test_requests_waiting_together_are_answered_each_with_its_own(
    worker: DecodeProcess, setup: tuple[Judges, list[bytes]]
) -> None:
    judges, bodies = setup
    slices = [bodies[start : start + 9] for start in range(0, len(bodies), 9)]
    answers = await asyncio.gather(*(worker.analyse(part) for part in slices))
    for part, answer in zip(slices, answers, strict=True):
        assert comparable(answer.outcomes) == comparable(analyse_bodies(part, judges))


async def test_a_worker_stopped_and_continued_while_it_answers_loses_nothing(
    worker: DecodeProcess, setup: tuple[Judges, list[bytes]]
) -> None:
    """py-spy, a debugger or Ctrl-Z stop the worker in the middle of writing an answer larger than
    its pipe: the rest of that answer was lost (monitor.whole_writes), the next one's header read as
    its end, and the follower stopped on an answer that did not unpickle."""
    judges, bodies = setup
    chunk = bodies * 6
    expected = analyse_bodies(chunk, judges)
    assert len(pickle.dumps(expected)) > 2 * 65_536, "each answer must be larger than the pipe"
    with stopped_and_continued(worker.pid):
        for _ in range(30):
            async with asyncio.timeout(30):  # a lost tail of an answer could leave the reader waiting
                answer = await worker.analyse(chunk)
            assert comparable(answer.outcomes) == comparable(expected)


async def test_a_dead_worker_fails_its_callers_instead_of_leaving_them_waiting(
    worker: DecodeProcess, setup: tuple[Judges, list[bytes]]
) -> None:
    bodies = setup[1]
    await worker.analyse(bodies[:2])
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerError):
        async with asyncio.timeout(30):
            await worker.analyse(bodies)
    with pytest.raises(WorkerError):
        await worker.analyse(bodies)


async def test_a_worker_that_stops_answering_is_ended_and_its_callers_fail(
    worker: DecodeProcess, setup: tuple[Judges, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped (or stuck) worker left its callers, and the follower, waiting for ever."""
    monkeypatch.setattr(decode_worker, "ANSWER_SECONDS", 1.0)
    bodies = setup[1]
    await worker.analyse(bodies[:2])
    with stopped(worker.pid):
        waiting = [worker.analyse(bodies), worker.analyse(bodies * 40)]  # the second, 2.5 MB, fills the pipe
        failures = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)
    for failure in failures:
        assert isinstance(failure, WorkerError) and "did not answer within 1 s" in str(failure)
    assert await asyncio.wait_for(worker._process.wait(), 30) == -signal.SIGKILL
    with pytest.raises(WorkerError, match="did not answer"):
        await worker.analyse(bodies[:2])


async def test_a_stopped_worker_does_not_hold_the_close(
    setup: tuple[Judges, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while idle, it held the daemon's shutdown for ever."""
    monkeypatch.setattr(decode_worker, "ANSWER_SECONDS", 1.0)
    worker = await DecodeProcess.start(setup[0])
    await worker.analyse(setup[1][:2])
    with stopped(worker.pid):
        await asyncio.wait_for(worker.close(), 30)
    assert worker._process.returncode == -signal.SIGKILL


async def test_the_next_chunk_after_a_worker_is_ended_starts_a_new_one(
    setup: tuple[Judges, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_worker, "ANSWER_SECONDS", 1.0)
    judges, bodies = setup
    analyser = ChunkAnalyser(judges, in_thread=False)
    try:
        await analyser.analyse(bodies[:2])
        ended = analyser._process
        assert ended is not None
        with stopped(ended.pid), pytest.raises(WorkerError):
            await asyncio.wait_for(analyser.analyse(bodies), 30)
        answer = await analyser.analyse(bodies)
        assert analyser._process is not ended
        assert comparable(answer.outcomes) == comparable(analyse_bodies(bodies, judges))
    finally:
        await analyser.close()


async def test_a_chunk_is_analysed_in_the_thread_while_the_decode_process_is_behind(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """Two chunks wait on a (stopped) decode process: the next is answered by the daemon's thread,
    as the decode process would answer it, and the two waiting are answered once it goes on."""
    judges, bodies = setup
    expected = comparable(analyse_bodies(bodies, judges))
    switch_interval = sys.getswitchinterval()
    analyser = ChunkAnalyser(judges, in_thread=False)
    try:
        await analyser.analyse(bodies[:2])
        worker = analyser._process
        assert worker is not None
        with stopped(worker.pid):
            waiting = [asyncio.create_task(analyser.analyse(bodies, hash_from=0)) for _ in range(THREAD_HELPS_AT)]
            await asyncio.sleep(0.2)
            helping = asyncio.create_task(analyser.analyse(bodies, hash_from=0))
            intervals = set()
            while not helping.done():  # the loop's view while the thread analyses
                intervals.add(sys.getswitchinterval())
                await asyncio.sleep(0)
            helped = await asyncio.wait_for(helping, 30)
            assert not any(task.done() for task in waiting)
            assert HELPING_SWITCH_SECONDS in intervals, "the GIL switches often while the thread helps"
            assert sys.getswitchinterval() == switch_interval, "and as before once it is done"
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert analyser._process is worker
        for answer in [helped, *answers]:
            assert comparable(answer.outcomes) == expected
            assert answer.subtrees == tuple(aligned_subtrees(0, [leaf_hash(body) for body in bodies]))
    finally:
        await analyser.close()


async def test_the_worker_ignores_ctrl_c_and_exits_with_its_parent(setup: tuple[Judges, list[bytes]]) -> None:
    """Ctrl-C sends SIGINT to the whole process group: the worker printed a 20-line traceback; and a
    daemon killed with -9 left its worker alive. The worker leaves SIGINT to the daemon and ends when
    its input closes (the kernel closes it when the daemon dies)."""
    judges, bodies = setup
    worker = await DecodeProcess.start(judges)
    await worker.analyse(bodies[:2])
    os.kill(worker.pid, signal.SIGINT)
    assert (await worker.analyse(bodies[:2])).outcomes is not None, "still answering after SIGINT"
    await worker.close()  # closes its stdin, as the kernel does for a daemon that died
    assert worker._process.returncode == 0


def test_a_worker_whose_input_ends_answers_everything_it_was_sent_then_exits_0(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """It exits without the interpreter's teardown (`exit_without_teardown`): only once every
    answer is written, whole, however many were sent just before the input closed."""
    judges, bodies = setup
    chunks = [bodies * 4, bodies[:3], bodies[3:6]]  # the last answers small: a buffer would hold them
    frames = [pickle.dumps(judges), *(encode_chunk(chunk) for chunk in chunks)]
    sent = b"".join(LENGTH.pack(len(frame)) + frame for frame in frames)
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-P", "-m", "monitor.decode_worker"]
    done = subprocess.run(command, input=sent, capture_output=True, timeout=60, check=False, env=buffered)
    assert (done.returncode, done.stderr) == (0, b"")
    answers = FrameReader(io.BytesIO(done.stdout))
    for chunk in chunks:
        frame = answers.next()
        assert frame is not None
        assert comparable(pickle.loads(frame).outcomes) == comparable(analyse_bodies(chunk, judges))
    assert answers.next() is None


def test_the_worker_imports_no_database_http_cli_or_config_module() -> None:
    probe = "import sys, monitor.decode_worker; print(sorted(m for m in sys.modules if m.split('.')[0] in {mods}))"
    heavy = {
        "sqlalchemy",
        "aiohttp",
        "click",
        "alembic",
        "asyncpg",
        "aiosqlite",
        "prometheus_client",
        "pydantic",
        "yaml",
    }
    output = subprocess.run(
        [sys.executable, "-c", probe.format(mods=sorted(heavy))], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


def test_the_judges_sent_to_the_worker_hold_no_config_object_and_no_secret(setup: tuple[Judges, list[bytes]]) -> None:
    """The watch rules cross as plain data: the worker needs no pydantic, and never gets an API key."""
    account = {**WATCH["codefresh"][0], "api_key": "cf-secret-key"}
    judges = replace(setup[0], policy=Policy(WatchSettings.model_validate({"codefresh": [account]})))
    sent = pickle.dumps(judges)
    assert b"cf-secret-key" not in sent
    probe = "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print({m.split('.')[0] for m in sys.modules})"
    loaded = subprocess.run([sys.executable, "-c", probe], input=sent, capture_output=True, check=True).stdout.decode()
    assert "pydantic" not in loaded and "yaml" not in loaded and "monitor" in loaded


def test_chunks_round_trip_and_malformed_input_is_refused() -> None:
    bodies = [b"", b"a", b"x" * 70_000]
    assert decode_chunk(encode_chunk(bodies, hash_from=2**40 + 3)) == (bodies, 2**40 + 3)
    assert decode_chunk(encode_chunk([])) == ([], None)
    for bad in (b"", encode_chunk(bodies)[:-1], b"\x00\x00\x00", encode_chunk([], hash_from=7)[:5]):
        with pytest.raises(ValueError):
            decode_chunk(bad)
    truncated = io.BytesIO(LENGTH.pack(100) + b"short")
    with pytest.raises(ValueError, match="inside a frame"):
        serve(truncated, io.BytesIO())


def test_frames_are_read_whole_into_one_buffer() -> None:
    """Each frame is read whole (a pipe gives at most its size at a time) and valid until the next."""
    payloads = [b"a" * 70_000, b"", b"b" * 5, b"c" * 300_000]
    frames = FrameReader(io.BytesIO(b"".join(LENGTH.pack(len(payload)) + payload for payload in payloads)))
    assert [bytes(frame) for frame in iter(frames.next, None)] == payloads
    with pytest.raises(ValueError, match="inside a frame header"):
        FrameReader(io.BytesIO(b"\x00\x00")).next()


# -- Rekor v1 retrieve answers, read in the decode process ------------------------------------------------


def retrieve_answer(bodies: dict[int, bytes], requested: tuple[int, ...] | None = None) -> RetrieveAnswer:
    """A retrieve answer as Rekor sends it, for these bodies at these global indexes."""
    document = [
        {
            leaf_hash(body).hex(): {
                "body": base64.b64encode(body).decode(),
                "integratedTime": 1_700_000_000 + index,
                "logID": "ab" * 32,
                "logIndex": index,
                "verification": {"signedEntryTimestamp": base64.b64encode(b"SET %d" % index).decode()},
            }
        }
        for index, body in bodies.items()
    ]
    return RetrieveAnswer(requested or tuple(bodies), json.dumps(document).encode())


def answers_for(bodies: list[bytes], first: int) -> list[RetrieveAnswer]:
    """Batches of ten, as the client asks; the last two of five, as halves of a batch Rekor found too large."""
    indexed = dict(enumerate(bodies, start=first))
    batches = [list(indexed)[start : start + 10] for start in range(0, len(indexed), 10)]
    last = batches.pop()
    batches += [last[: len(last) // 2], last[len(last) // 2 :]]
    return [retrieve_answer({index: indexed[index] for index in batch}) for batch in batches if batch]


def analysed_as_bodies(answers: list[RetrieveAnswer], judges: Judges) -> dict[int, Outcome]:
    """What reading answers in the daemon gives: their bodies analysed, then the SETs of those with
    findings checked (these answers' SETs are not signed by any key the judges know)."""
    entries = chunk_entries(answers)
    assert entries is not None
    return with_integrated_times(analyse_bodies([e.body for e in entries], judges), entries, judges.timestamps)


async def test_a_v1_chunk_is_read_in_the_decode_process_as_the_daemon_reads_it(tmp_path: Path) -> None:
    """The simulator's answers (1% watched signings) are read there whole; the outcomes, the subtrees
    and the entries kept (those with outcomes) are what reading them in the daemon and analysing
    their bodies gives, and each signing's integratedTime is proven by its SET there."""
    sim = await start_simulator(directory=tmp_path, prefill=1100)
    trust = load_trust_root(str(sim.trust_files.trusted_root))
    judges = Judges.of(Policy(WatchSettings.model_validate(WATCH)), trust)
    analyser = ChunkAnalyser(judges, in_thread=False)
    try:
        async with aiohttp.ClientSession() as http:
            source = RekorV1Source(sim.url, RekorV1Client(sim.url, http))
            [head] = await source.heads()
            chunk = await source.entries(76, 1100, head, 1100)
            answer = await analyser.analyse_answers(chunk.answers, hash_from=76)
            entries = await chunk.read_again()
        expected = await analyser.analyse([entry.body for entry in entries], hash_from=76)
    finally:
        await analyser.close()
        await sim.stop()
    read_here = with_integrated_times(expected.outcomes, entries, judges.timestamps)
    assert comparable(answer.outcomes) == comparable(read_here)
    assert len(answer.outcomes) >= 5
    proven = [outcome.integrated for outcome in answer.outcomes.values() if isinstance(outcome, EntryAnalysis)]
    assert proven and all(time.at is not None and time.problem is None for time in proven)
    assert answer.subtrees == expected.subtrees
    assert answer.kept == {position: entries[position] for position in expected.outcomes}
    assert answer.leaf_hashes == b""
    assert (answer.misnamed, answer.refused, answer.missing) == (None, None, False)
    assert chunk.answers == [], "sent to the decode process: not held twice"


@pytest.mark.parametrize("in_thread", [True, False], ids=["single core: a thread", "a decode process"])
async def test_answers_are_read_alike_in_a_thread_and_in_a_decode_process(
    setup: tuple[Judges, list[bytes]], in_thread: bool
) -> None:
    judges, bodies = setup
    answers = answers_for(bodies, 2**40)
    analyser = ChunkAnalyser(judges, in_thread=in_thread)
    try:
        answer = await analyser.analyse_answers(answers, hash_from=300)
    finally:
        await analyser.close()
    assert comparable(answer.outcomes) == comparable(analysed_as_bodies(answers_for(bodies, 2**40), judges))
    assert answer.subtrees == tuple(aligned_subtrees(300, [leaf_hash(body) for body in bodies]))
    assert set(answer.kept) == set(answer.outcomes)
    assert all(answer.kept[position].body == bodies[position] for position in answer.kept)
    assert [answer.kept[position].log_index for position in sorted(answer.kept)] == [
        2**40 + position for position in sorted(answer.outcomes)
    ]


def test_answers_lacking_entries_are_left_to_the_daemon_unanalysed(setup: tuple[Judges, list[bytes]]) -> None:
    """The daemon asks the log again for the chunk (a loaded Rekor omits entries)."""
    judges, bodies = setup
    good = answers_for(bodies, 0)
    for lacking in (
        retrieve_answer({10: bodies[10]}, requested=good[1].requested),
        RetrieveAnswer(good[1].requested, b"[]"),
    ):
        answer = analyse_answers([good[0], lacking, *good[2:]], judges, hash_from=0)
        assert answer.missing
        assert (answer.outcomes, answer.kept, answer.subtrees, answer.refused) == ({}, {}, (), None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>busy</html>", "retrieve answer is not valid JSON: "),
        (b"{}", "malformed retrieve answer: answer: is an object of length 0, not a list"),
        (json.dumps([{"ab" * 32: {"logIndex": 10}}]).encode(), "malformed retrieve answer: [0].body: is missing"),
    ],
    ids=["not JSON", "not a list", "an entry without a body"],
)
def test_a_malformed_answer_is_refused_with_the_problem_the_client_names(
    setup: tuple[Judges, list[bytes]], raw: bytes, problem: str
) -> None:
    judges, bodies = setup
    good = answers_for(bodies, 0)
    answers = [good[0], RetrieveAnswer(good[1].requested, raw), *good[2:]]
    answer = analyse_answers(answers, judges, hash_from=0)
    assert answer.refused is not None and answer.refused.startswith(problem)
    with pytest.raises(LogProtocolError) as raised:
        RekorV1Client("http://log", None).read_answer(answers[1], proofs=False)  # type: ignore[arg-type]
    assert raised.value.problem == answer.refused
    assert (answer.outcomes, answer.kept, answer.missing) == ({}, {}, False)


def test_an_entry_whose_uuid_names_another_leaf_is_named_and_the_rest_analysed(
    setup: tuple[Judges, list[bytes]],
) -> None:
    judges, bodies = setup
    good = answers_for(bodies, 100)
    misnamed = json.loads(good[1].raw)
    misnamed[3] = {leaf_hash(b"another body").hex(): next(iter(misnamed[3].values()))}
    answers = [good[0], RetrieveAnswer(good[1].requested, json.dumps(misnamed).encode()), *good[2:]]
    answer = analyse_answers(answers, judges, hash_from=100)
    assert answer.misnamed == 113
    assert comparable(answer.outcomes) == comparable(analysed_as_bodies(answers, judges))
    assert analyse_answers(answers_for(bodies, 100), judges, hash_from=100).misnamed is None
    read = chunk_entries(answers)  # as the daemon reads a chunk itself, then has its bodies hashed
    assert read is not None
    hashed = b"".join(leaf_hash(entry.body) for entry in read)
    assert (first_misnamed(read, hashed), first_misnamed(read[:13], hashed[: 13 * 32])) == (113, None)


def test_a_set_check_that_raises_proves_nothing_and_the_other_entries_are_still_checked(
    setup: tuple[Judges, list[bytes]],
) -> None:
    """No entry stops the tail: a SET check that raises what no check raises for bad input (a body
    that is not bytes stands in for such a bug) leaves that entry's integratedTime unproven, saying
    why, and the next entry's SET is checked as usual (here: it is not the log key's signature)."""
    judges, bodies = setup
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    log_key = LogKey("https://rekor.test", bytes.fromhex("ab" * 32), spki, "PKIX_ECDSA_P256_SHA_256", Validity(EPOCH))
    entries = chunk_entries(answers_for(bodies, 100))
    assert entries is not None
    outcomes = analyse_bodies(bodies, judges)
    first, second = sorted(p for p, outcome in outcomes.items() if isinstance(outcome, EntryAnalysis))[:2]
    entries[first] = entries[first]._replace(body="not bytes")
    checked = with_integrated_times(outcomes, entries, EntryTimestamps([log_key]))
    assert checked[first].integrated.at is None
    assert checked[first].integrated.problem.startswith("the SET could not be checked: TypeError")
    assert checked[second].integrated == IntegratedTime(problem="the signature does not verify")


def test_answers_round_trip_and_malformed_input_is_refused() -> None:
    answers = [RetrieveAnswer((7, 2**62), b"[]"), RetrieveAnswer((), b""), RetrieveAnswer((1,), b"x" * 70_000)]
    assert decode_answers(encode_answers(answers, 2**40 + 3)) == (answers, 2**40 + 3)
    assert decode_answers(encode_answers([], 0)) == ([], 0)
    payload = encode_answers(answers, 5)
    for bad in (payload[:5], payload[:-1], payload[:12], payload[:9] + LENGTH.pack(1000) + payload[13:]):
        with pytest.raises(ValueError):
            decode_answers(bad)


# -- tiles entry bundles, split in the decode process ------------------------------------------------------


def bundles_of(bodies: list[bytes], first: int) -> list[EntryBundle]:
    """The bundles of 256 holding `bodies` from tree index `first`, as a tail fetches them."""
    start, bundles = first % 256, []
    while bodies:
        part, bodies = bodies[: 256 - start], bodies[256 - start :]
        served = [b"unwanted"] * start + part
        raw = b"".join(len(body).to_bytes(2, "big") + body for body in served)
        bundles.append(EntryBundle(len(served), start, len(served), raw))
        start = 0
    return bundles


@pytest.mark.parametrize("in_thread", [True, False], ids=["single core: a thread", "a decode process"])
async def test_bundles_are_split_and_analysed_as_their_bodies_are(
    setup: tuple[Judges, list[bytes]], in_thread: bool
) -> None:
    judges, bodies = setup
    many = bodies * 5  # across bundles
    analyser = ChunkAnalyser(judges, in_thread=in_thread)
    try:
        answer = await analyser.analyse_bundles(bundles_of(many, 2**40 + 200), hash_from=2**40 + 200)
    finally:
        await analyser.close()
    expected = analyse_chunk(many, judges, hash_from=2**40 + 200)
    assert comparable(answer.outcomes) == comparable(expected.outcomes)
    assert (answer.leaf_hashes, answer.subtrees) == (expected.leaf_hashes, expected.subtrees)
    assert answer.kept == {position: many[position] for position in expected.outcomes}
    assert answer.refused is None


def test_a_malformed_bundle_is_refused_with_the_problem_the_client_names(setup: tuple[Judges, list[bytes]]) -> None:
    judges, bodies = setup
    bundles = bundles_of(bodies * 5, 0)
    bundles[1] = bundles[1]._replace(raw=bundles[1].raw[:-1])
    answer = analyse_bundles(bundles, judges, hash_from=0)
    assert (answer.refused_in, answer.refused) == (1, "entry 53 runs past the end of the bundle")
    assert (answer.outcomes, answer.kept, answer.leaf_hashes) == ({}, {}, b"")


def test_bundles_round_trip_and_malformed_input_is_refused() -> None:
    bundles = [EntryBundle(256, 3, 256, b"x" * 70_000), EntryBundle(0, 0, 0, b""), EntryBundle(7, 0, 2, b"yz")]
    decoded, first = decode_bundles(encode_bundles(bundles, 2**40 + 3))
    assert ([bundle._replace(raw=bytes(bundle.raw)) for bundle in decoded], first) == (bundles, 2**40 + 3)
    payload = encode_bundles(bundles, 5)
    for bad in (payload[:5], payload[:-1], payload[:15], payload[:21] + LENGTH.pack(10**6) + payload[25:]):
        with pytest.raises(ValueError):
            decode_bundles(bad)
