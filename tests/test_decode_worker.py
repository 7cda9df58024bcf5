"""The lean decode process answers exactly what in-process analysis answers, imports no more than it
needs, and never leaves a caller waiting on a dead worker."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from monitor.analyser import ChunkAnalyser
from monitor.analysis import Judges, Outcome, analyse_bodies, analyse_entry
from monitor.child import start_decode_worker
from monitor.config import WatchSettings
from monitor.decode_worker import (
    LENGTH,
    PIPE_BYTES,
    DecodeProcess,
    WorkerError,
    decode_chunk,
    encode_chunk,
    serve,
)
from monitor.entries import EntryDecodeError
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import ChainVerifier
from monitor.policy import Policy
from monitor.simulate.ca import LocalCA
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH, PopulateChunk, populate_chunk
from monitor.tlog.merkle import aligned_subtrees, leaf_hash
from monitor.trust import parse_trust_root

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
    return Judges(policy, ChainVerifier(trust), CtChainVerifier(trust))


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


def test_the_worker_imports_no_database_http_or_cli_module() -> None:
    probe = "import sys, monitor.decode_worker; print(sorted(m for m in sys.modules if m.split('.')[0] in {mods}))"
    heavy = {"sqlalchemy", "aiohttp", "click", "alembic", "asyncpg", "aiosqlite", "prometheus_client"}
    output = subprocess.run(
        [sys.executable, "-c", probe.format(mods=sorted(heavy))], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


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
