"""Never blinded: what an attacker can put in the log, or serve in front of it, never stops the tail.

Each test is a finding of issue 10 that stopped the daemon (or would have) before: now the tail goes
on, alerts where the contract says, and loses nothing. SQLite and PostgreSQL unless stated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor import decode_worker
from monitor.config import LogSettings, Settings
from monitor.daemon import EXIT_ERROR, EXIT_INCONSISTENT, EXIT_OK, run_once
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.models import INDEXED_TEXT_BYTES, TRUNCATED_MARK, AlertRow, LogRow, SigningRow
from monitor.tlog.errors import LogUnavailableError
from monitor.tlog.http import ByteBudget, HttpFetcher, RetryPolicy
from monitor.tlog.merkle import CompactRange
from tests.harness import FAST_RETRY, base_settings, eventually, metric, rows_of, running_daemon
from tests.test_daemon import ACME, EXPECTED, RELEASE, WATCH, as_config_file

TWO_POW_64_MINUS_1 = 2**64 - 1


@pytest.fixture
async def tiles(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "tiles", api="tiles")
    yield running
    await running.stop()


def settings_for(sim: RunningSimulator, database_url: str, api: str = "v1", **extra: Any) -> Settings:
    return base_settings(sim, database_url, LogSettings(url=sim.url, api=api, start=0), **{"watch": WATCH, **extra})


# what anyone can write into Rekor ----------------------------------------------------------------


async def test_certificate_values_that_fit_no_column_are_stored_cut_and_alerted(
    sim: RunningSimulator, database_url: str
) -> None:
    """Self-signed (here: a rogue CA's) certificates claiming the watched account, with names of
    300 and 5,000 characters and a NUL: on PostgreSQL they failed their whole batch forever."""
    s = sim.simulator
    await s.append_unwatched(30)
    hostile = []
    for number in range(12):
        hostile.append(
            s.append_forged(
                account_id=ACME,
                account_name="a" * 300,
                pipeline_id=f"{number}" + "p" * 5000,
                pipeline_name="x/y\x00z",
                workflow_id="w" * 300,
            )
        )
        await s.append_unwatched(3)
    good = s.append_codefresh(**EXPECTED)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK

    signings = {row.log_index: row for row in await rows_of(database_url, SigningRow)}
    assert sorted(signings) == sorted([*hostile, good]), "every signing stored, none lost"
    forged = signings[hostile[0]]
    assert forged.verdict == "untrusted" and forged.account_name == "a" * 300
    assert forged.pipeline_id.endswith(TRUNCATED_MARK) and len(forged.pipeline_id.encode()) <= INDEXED_TEXT_BYTES
    assert "\x00" not in forged.pipeline_name
    alerts = await rows_of(database_url, AlertRow)
    assert sorted(a.kind for a in alerts) == ["untrusted_certificate"] * 12
    assert signings[good].verdict == "expected" and signings[good].pipeline_id == RELEASE
    [log] = await rows_of(database_url, LogRow)
    assert log.next_index == sim.log.size


# what anyone who can serve the log (or sit in front of it) can send ----------------------------------


async def test_an_unsigned_checkpoint_of_size_2_64_is_refused_before_anything_is_stored(
    tiles: RunningSimulator, database_url: str
) -> None:
    await tiles.simulator.append_unwatched(20)
    settings = settings_for(tiles, database_url, api="tiles")
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    tiles.simulator.hostility.configure({"checkpoint": {"size": TWO_POW_64_MINUS_1, "signed": False}})
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT, "no valid log signature"
    [log] = await rows_of(database_url, LogRow)
    assert (log.tree_size, log.verified_size, log.next_index) == (20, 20, 20), "the unsigned size is not kept"
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.kind == "log_inconsistent" and "no signature by a known log key" in alert.summary


async def test_a_signed_size_beyond_2_63_is_refused_and_the_log_retried(
    sim: RunningSimulator, database_url: str
) -> None:
    await sim.simulator.append_unwatched(20)
    settings = settings_for(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.simulator.hostility.configure({"checkpoint": {"size": 2**63, "signed": True}})
    assert await run_once(settings, FAST_RETRY) == EXIT_ERROR, "unusable, not proof of anything"
    [log] = await rows_of(database_url, LogRow)
    assert (log.tree_size, log.state) == (20, "unreachable")
    sim.simulator.hostility.configure({})
    await sim.simulator.append_unwatched(5)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [log] = await rows_of(database_url, LogRow)
    assert log.next_index == 25


async def test_a_signed_jump_to_a_trillion_entries_costs_nothing_until_read(
    sim: RunningSimulator, database_url: str
) -> None:
    """The chunks of a catch-up are generated lazily: a list of 10^9 chunk bounds took 2.7 GB."""
    await sim.simulator.append_unwatched(20)
    sim.simulator.hostility.configure({"checkpoint": {"size": 10**12, "signed": True}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_ERROR, "it serves no such entries"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000, "under 200 MB more (KiB)"
    [log] = await rows_of(database_url, LogRow)
    assert (log.tree_size, log.next_index) == (10**12, 0), "a signed size is what the log announced"
    sim.simulator.hostility.configure({})
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_INCONSISTENT, (
        "signing 10^12 and then 20 is a shrinking tree: proof the log misbehaved"
    )


async def test_a_tree_size_that_disagrees_with_the_signed_one_is_a_protocol_error(
    sim: RunningSimulator, database_url: str
) -> None:
    """v1's JSON treeSize is unsigned: it set lag to 9.2e18 and fired 'falling behind'."""
    await sim.simulator.append_unwatched(20)
    settings = settings_for(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.simulator.hostility.configure({"claimed_size": 9_200_000_000_000_000_000})
    assert await run_once(settings, FAST_RETRY) == EXIT_ERROR
    [log] = await rows_of(database_url, LogRow)
    assert (log.tree_size, log.next_index) == (20, 20), "no lag from an unsigned number"


SPOILED = {
    "a v1 uuid naming another body": ("v1", {"misnamed": 513}, "entry 513: its uuid does not end with the leaf"),
    "the same, in a chunk the daemon reads itself": (
        "v1",
        {"misnamed": 513, "omitted": {"index": 100, "times": 1}},
        "entry 513: its uuid does not end with the leaf",
    ),
    "a v1 entry never served": ("v1", {"omitted": {"index": 500}}, "does not serve entries [500] below its verified"),
    "a cut v1 answer": (
        "v1",
        {"truncated": {"path": "/api/v1/log/entries/retrieve"}},
        "/api/v1/log/entries/retrieve: retrieve answer is not valid JSON",
    ),
    "a cut tiles bundle": (
        "tiles",
        {"truncated": {"path": "/tile/entries/001"}},
        "/tile/entries/001: entry 255 runs past the end of the bundle",
    ),
}


@pytest.mark.parametrize("case", SPOILED, ids=list(SPOILED))
async def test_a_spoiled_chunk_fails_whole_saying_why_and_is_read_once_the_log_is_honest(
    sim: RunningSimulator, tiles: RunningSimulator, database_url: str, case: str
) -> None:
    """What the decode process reads (v1 answers, tiles bundles) or the daemon reads itself (a v1
    chunk whose answers lacked entries) is judged alike: a misnamed entry, an entry never served, a
    cut answer fail the whole chunk with the protocol error naming it (and the URL), before anything
    of it is stored; the next run, the log honest again, reads it all."""
    api, hostility, problem = SPOILED[case]
    log = sim if api == "v1" else tiles
    await log.simulator.append_unwatched(600)
    settings = settings_for(log, database_url, api=api)
    log.simulator.hostility.configure(hostility)
    assert await run_once(settings, FAST_RETRY) == EXIT_ERROR
    [row] = await rows_of(database_url, LogRow)
    assert (row.next_index, row.state) == (0, "unreachable")
    assert problem in (row.state_detail or "")
    log.simulator.hostility.configure({})
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await rows_of(database_url, LogRow)
    assert row.next_index == 600


async def test_entries_a_log_leaves_out_of_its_answers_are_asked_for_again(
    sim: RunningSimulator, database_url: str
) -> None:
    """A loaded Rekor leaves entries out of its retrieve answers: the chunk is asked for again, up to
    five times, until it is whole (still lacking them, it is a protocol error: above). A signing in
    that chunk, read by the daemon rather than in its decode process, still has its SET checked."""
    await sim.simulator.append_unwatched(1200)
    signed_at = sim.simulator.append_codefresh(**EXPECTED)  # in the chunk [1024, 2048)
    await sim.simulator.append_unwatched(799)
    settings = settings_for(sim, database_url)
    sim.simulator.hostility.configure({"omitted": {"index": 1500, "times": 3}})
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [log] = await rows_of(database_url, LogRow)
    assert log.next_index == 2000
    assert CompactRange.from_bytes(2000, log.compact_range).root() == sim.log.active.root(2000)
    assert sim.simulator.hostility.omitted_left == 0
    [signing] = await rows_of(database_url, SigningRow)
    assert signing.log_index == signed_at and signing.integrated_time is not None
    assert signing.signed_at == signing.integrated_time


async def test_chunks_proven_before_a_bad_one_are_kept_and_the_rest_read_again(
    sim: RunningSimulator, database_url: str
) -> None:
    """Proven chunks are committed together (pipeline.COMMIT_CHUNKS); a chunk that fails at its turn
    keeps the two proven before it, not yet committed, and the next run reads on from there to the
    same tree."""
    await sim.simulator.append_unwatched(3500)  # four chunks; the third holds the misnamed entry
    settings = settings_for(sim, database_url)
    sim.simulator.hostility.configure({"misnamed": 2500})
    assert await run_once(settings, FAST_RETRY) == EXIT_ERROR
    [log] = await rows_of(database_url, LogRow)
    assert log.next_index == 2048
    assert CompactRange.from_bytes(2048, log.compact_range).root() == sim.log.active.root(2048)
    sim.simulator.hostility.configure({})
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [log] = await rows_of(database_url, LogRow)
    assert log.next_index == 3500
    assert CompactRange.from_bytes(3500, log.compact_range).root() == sim.log.active.root(3500)


# memory and time -----------------------------------------------------------------------------------


async def test_answers_in_flight_share_one_byte_budget(sim: RunningSimulator) -> None:
    """Eight endless answers at once took 2.2 GB: each was capped, their sum was not."""
    import aiohttp

    sim.simulator.hostility.configure({"endless": {"path": "/api/v1/log"}})
    budget = ByteBudget(4 * 1024 * 1024)
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    async with aiohttp.ClientSession() as session:
        fetcher = HttpFetcher(session, sim.url, retry=retry, budget=budget)
        outcomes = await asyncio.gather(
            *(fetcher.get("/api/v1/log", endpoint="log") for _ in range(8)), return_exceptions=True
        )
    assert all(isinstance(outcome, LogUnavailableError) for outcome in outcomes)
    assert any("memory budget" in str(outcome) for outcome in outcomes)
    assert budget.used == 0, "every byte taken is given back"


@pytest.mark.parametrize("path", ["/api/v1/log", "/api/v1/log/entries/retrieve"])
async def test_endless_answers_keep_the_daemon_small(sim: RunningSimulator, tmp_path: Path, path: str) -> None:
    """A real `run --once` process against a log whose answers never end: its peak RSS stays low."""
    await sim.simulator.append_unwatched(200)
    sim.simulator.hostility.configure({"endless": {"path": path}})
    settings = settings_for(sim, f"sqlite+aiosqlite:///{tmp_path / 'rw.db'}")
    script = (
        "import asyncio, re, sys; from monitor.config import Settings; from monitor.daemon import run_once;"
        "from monitor.tlog.http import RetryPolicy;"
        "retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05);"
        "code = asyncio.run(run_once(Settings.model_validate_json(sys.argv[1]), retry));"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1));"
        "sys.exit(code)"
    )
    code, peak_kib = await asyncio.to_thread(_run_measured, [sys.executable, "-c", script, settings.model_dump_json()])
    assert code == EXIT_ERROR
    assert 20 * 1024 < peak_kib < 400 * 1024, f"peak RSS {peak_kib // 1024} MiB"


def _run_measured(command: list[str]) -> tuple[int, int]:
    """(exit code, peak RSS in KiB) of a command run to its end, which prints its own VmHWM last.

    Not wait4's ru_maxrss: it counts the memory of the process that forked the command (here a
    pytest worker that may hold 500 MB late in the suite), which the child had until its exec."""
    process = subprocess.run(
        command, env={**os.environ, "REKORWATCH_LOG_LEVEL": "error"}, capture_output=True, text=True, check=False
    )
    return process.returncode, int(process.stdout.split()[-1])


async def test_a_slow_drip_log_is_stalled_after_five_poll_intervals(sim: RunningSimulator, database_url: str) -> None:
    """The stall watch ran between cycles: a log dripping one byte a second got log_stalled after 155 s."""
    await sim.simulator.append_unwatched(5)
    settings = settings_for(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    # A log info answer is about 1 KB: dripped at 4 ms a byte it takes some 4 s, the stall limit is 1 s.
    sim.simulator.hostility.configure({"drip": {"path": "/api/v1/log", "seconds_per_byte": 0.004}})
    async with running_daemon(settings) as daemon:

        async def stalled() -> bool:
            return any(a.kind == "log_stalled" for a in await rows_of(database_url, AlertRow))

        await eventually(stalled, "log_stalled while the answer is still dripping", within=15)
        sim.simulator.hostility.configure({})
        await sim.simulator.append_unwatched(5)

        async def resolved() -> bool:
            [alert] = [a for a in await rows_of(database_url, AlertRow) if a.kind == "log_stalled"]
            return alert.resolved_at is not None

        await eventually(resolved, "the stall resolved once the log moves again", within=60)
        _, alerts = await daemon.get("/api/v1/alerts?kind=log_stalled")
        [shown] = alerts["items"]
        assert shown["resolved_at"] is not None, "the API says the stall is over"


async def test_a_trust_refresh_during_a_catch_up_cancels_no_work(sim: RunningSimulator, database_url: str) -> None:
    """The refresh closed the old decoder with cancel_futures: queued chunks failed and the follower died."""
    s = sim.simulator
    for _ in range(6):
        await s.append_unwatched(1000)
        s.append_codefresh(**EXPECTED)
    settings = settings_for(sim, database_url)
    async with running_daemon(settings, trust_refresh_seconds=0.05) as daemon:

        async def caught_up() -> bool:
            return metric(await daemon.metrics(), "rekorwatch_log_next_index", log=sim.url) == sim.log.size

        await eventually(caught_up, "the catch-up through a refresh every 50 ms", within=120)
        exposition = await daemon.metrics()
    assert "rekorwatch_follower_errors_total{" not in exposition, "no follower ever failed"
    assert "rekorwatch_task_failures_total{" not in exposition
    assert len(await rows_of(database_url, SigningRow)) == 6


# the worker process --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(child) for task in tasks for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


async def test_kill_9_while_the_worker_starts_leaves_no_process_behind(sim: RunningSimulator, tmp_path: Path) -> None:
    """5 of 5 tries left the worker (~98 MB) and the resource tracker alive forever."""
    await sim.simulator.append_unwatched(3000)
    settings = settings_for(sim, f"sqlite+aiosqlite:///{tmp_path / 'rw.db'}")
    config = tmp_path / "daemon.yaml"
    config.write_text(as_config_file(settings))
    for _ in range(3):
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "monitor", "run", "-c", str(config)),
            env={**os.environ, "REKORWATCH_LOG_LEVEL": "error"},
        )
        children: list[int] = []
        for _ in range(600):
            children = _children(process.pid)
            if children:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert children, "the daemon starts a decode worker (and a resource tracker)"
        for _ in range(200):
            if not _running(children):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"processes {children} outlived the killed daemon")


def _decode_processes_of(pid: int) -> list[int]:
    return [child for child in _children(pid) if b"decode_worker" in Path(f"/proc/{child}/cmdline").read_bytes()]


def _running(pids: list[int]) -> list[int]:
    """The pids that are still running processes (not gone, not zombies)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":
            running.append(pid)
    return running


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"], ids=["killed", "stopped"])
async def test_a_decode_process_killed_or_stopped_costs_a_retry_not_the_tail(
    sim: RunningSimulator, database_url: str, signal_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode process ended by an OOM kill, or stopped (a debugger; stuck on an entry): the chunk
    fails, a new process reads it again. Stopped, it left the tail waiting for ever."""
    monkeypatch.setattr(decode_worker, "ANSWER_SECONDS", 1.0)
    s = sim.simulator
    await s.append_unwatched(300)
    async with running_daemon(settings_for(sim, database_url)) as daemon:

        async def read_to_the_end() -> bool:
            return metric(await daemon.metrics(), "rekorwatch_log_next_index", log=sim.url) == sim.log.size

        await eventually(read_to_the_end, "the first catch-up")
        [worker] = _decode_processes_of(os.getpid())
        os.kill(worker, getattr(signal, signal_name))
        try:
            s.append_codefresh(**EXPECTED)
            await s.append_unwatched(300)
            await eventually(read_to_the_end, "the entries after, read by a new decode process", within=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)  # else, never ended, it would hang the daemon's stop
    assert not _running([worker])
    assert len(await rows_of(database_url, SigningRow)) == 1


# the database under the daemon ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB file system of its own (tmpfs: the tests run as root, as CI does)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_a_full_disk_is_an_error_state_and_the_tail_resumes_when_space_is_freed(
    sim: RunningSimulator, small_disk: Path
) -> None:
    """A full SQLite disk stopped the follower for good; freeing space did not help."""
    disk = small_disk
    database = f"sqlite+aiosqlite:///{disk / 'rw.db'}"
    settings = settings_for(sim, database)
    await sim.simulator.append_unwatched(10)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (6 * 1024 * 1024 - (disk / "rw.db").stat().st_size - 200_000))
    for _ in range(40):
        sim.simulator.append_codefresh(**EXPECTED)
        await sim.simulator.append_unwatched(50)
    async with running_daemon(settings) as daemon:

        async def failing() -> bool:
            _, health = await daemon.get("/healthz")
            return health["logs"][sim.url]["state"] == "error"

        await eventually(failing, "the follower reports the full disk as its error state")
        exposition = await daemon.metrics()
        assert metric(exposition, "rekorwatch_follower_errors_total", log=sim.url, error="OperationalError") > 0
        assert metric(exposition, "rekorwatch_log_state", log=sim.url, state="error") == 1
        status, ready = await daemon.get("/readyz")
        assert status == 503 and "full" in ready["reason"]
        filler.unlink()

        async def caught_up() -> bool:
            return metric(await daemon.metrics(), "rekorwatch_log_next_index", log=sim.url) == sim.log.size

        await eventually(caught_up, "the tail resumes once space is freed", within=60)

        async def healthy() -> bool:
            _, health = await daemon.get("/healthz")
            return health["logs"][sim.url]["state"] == "ok"

        await eventually(healthy, "the error state clears")
    assert len(await rows_of(database, SigningRow)) == 40, "nothing lost"


async def _terminate_connections(database_url: str) -> int:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database="postgres", password=url.password
    )
    try:
        return len(
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                url.database,
            )
        )
    finally:
        await admin.close()


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    for _ in range(60):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0:
            return
        subprocess.run(["sleep", "0.5"], check=False)
    raise AssertionError("PostgreSQL did not come back")


async def _next_index(database_url: str) -> int:
    try:
        return sum(row.next_index for row in await rows_of(database_url, LogRow))
    except Exception:  # the database is restarting
        return -1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("outage", ["terminated connections", pytest.param("restart", marks=pytest.mark.serial)])
async def test_two_replicas_survive_a_database_outage_and_the_standby_takes_over(
    sim: RunningSimulator, database_url: str, outage: str
) -> None:
    """A PostgreSQL restart killed the follower (and the standby's), and the active replica kept
    tailing on its dead lock connection."""
    settings = settings_for(sim, database_url)
    await sim.simulator.append_unwatched(100)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    async with running_daemon(settings) as first, running_daemon(settings):
        await sim.simulator.append_unwatched(100)
        await eventually(lambda: _has(database_url, 200), "one replica reads the new entries")
        if outage == "restart":
            await asyncio.to_thread(_restart_postgres)
        else:
            assert await _terminate_connections(database_url) > 0
        await sim.simulator.append_unwatched(100)
        await eventually(lambda: _has(database_url, 300), "a replica tails again after the outage", within=60)
        first.stop.set()
        await first.task
        await sim.simulator.append_unwatched(100)
        await eventually(lambda: _has(database_url, 400), "the remaining replica tails alone", within=60)
    alerts = await rows_of(database_url, AlertRow)
    assert [a.kind for a in alerts if a.kind != "log_stalled"] == [], "an outage is no inconsistency"


async def _has(database_url: str, size: int) -> bool:
    return await _next_index(database_url) == size
