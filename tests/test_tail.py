"""End to end: the real tail against the simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from monitor.config import LogSettings, ServerSettings, Settings
from monitor.daemon import EXIT_INCONSISTENT, EXIT_OK, run_forever, run_once
from monitor.pipeline import COMMIT_CHUNKS, COMMIT_SECONDS, ProvenChunks
from monitor.report import log_status
from monitor.simulate.server import RunningSimulator
from monitor.store.models import AlertRow, CheckpointRow
from monitor.store.repository import Batch, EntryError, Store
from monitor.tlog.merkle import CompactRange
from tests.harness import FAST_RETRY, SCHEMA_NOT_YET, base_settings


def settings_for(sim: RunningSimulator, database_url: str, start: str | int = 0, **extra: Any) -> Settings:
    log = LogSettings(url=sim.url, api="v1", start=start)
    return base_settings(sim, database_url, log, server=ServerSettings(listen="127.0.0.1:0"), **extra)


async def fill(sim: RunningSimulator, count: int) -> None:
    await sim.simulator.append_unwatched(count)


async def alerts_of(database_url: str) -> list[AlertRow]:
    async with Store.open(database_url) as store:
        return await store.alerts()


async def test_catch_up_from_zero_verifies_every_entry(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 2345)
    assert await run_once(settings_for(sim, database_url, start=0), FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == row["verified_size"] == row["tree_size"] == 2345
    assert row["lag"] == 0 and row["state"] == "ok"
    async with Store.open(database_url) as store:
        [log_row] = await store.logs()
        folded = CompactRange.from_bytes(log_row.shard_next, log_row.compact_range)
        assert folded.root() == sim.log.active.root(2345)
        async with store.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(CheckpointRow)) == 1


async def test_start_at_head_then_follow_new_entries(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 300)
    settings = settings_for(sim, database_url, start="head")
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 300
    await fill(sim, 77)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == row["verified_size"] == 377


async def test_start_mid_log_bootstraps_from_an_inclusion_proof(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 500)
    assert await run_once(settings_for(sim, database_url, start=123), FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 500


async def test_restart_resumes_without_gaps(sim: RunningSimulator, database_url: str) -> None:
    settings = settings_for(sim, database_url, start=0)
    for count in (10, 1500, 1, 999):
        await fill(sim, count)
        assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 2510
    assert not await alerts_of(database_url)


async def test_daemon_follows_entries_appended_while_running(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 50)
    settings = settings_for(sim, database_url, start=0)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_forever(settings, FAST_RETRY, stop))
    try:
        await wait_for_next_index(database_url, 50)
        await fill(sim, 40)
        await wait_for_next_index(database_url, 90)
    finally:
        stop.set()
        assert await daemon == 0


async def wait_for_next_index(database_url: str, wanted: int, within: float = 20) -> None:
    """Poll `status` until the last shard's cursor reaches `wanted` (the daemon creates the schema)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    rows: list[dict] = []
    while loop.time() < deadline:
        try:
            rows = await log_status(database_url)
        except SCHEMA_NOT_YET:  # the daemon has not migrated the database yet
            rows = []
        if rows and rows[-1]["next_index"] >= wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"next_index never reached {wanted}: {rows}")


async def test_forked_history_is_detected_and_exits_3(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 200)
    settings = settings_for(sim, database_url, start=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.log.fork(at=150)
    await fill(sim, 10)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    [row] = await log_status(database_url)
    assert row["state"] == "inconsistent" and row["next_index"] == 200
    [alert] = await alerts_of(database_url)
    assert alert.kind == "log_inconsistent" and alert.severity == "critical"
    assert json.loads(alert.payload)["log"] == {"url": sim.url, "origin": row["origin"], "api": "v1"}, (
        "the webhook's log object"
    )
    # the cursor stays stopped, and the event is not alerted twice
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    assert len(await alerts_of(database_url)) == 1


async def test_rewriting_entries_no_checkpoint_covered_is_no_false_alarm(
    sim: RunningSimulator, database_url: str
) -> None:
    """Entries beyond every checkpoint we verified may still change: that is not an inconsistency,
    and what is then read must be the rewritten tree, leaf for leaf."""
    await fill(sim, 100)
    settings = settings_for(sim, database_url, start="head")
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    await fill(sim, 100)
    sim.log.fork(at=120)  # after our verified size 100: the new tree is consistent with it
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    assert not await alerts_of(database_url)
    async with Store.open(database_url) as store:
        [log_row] = await store.logs()
    assert log_row.next_index == 200
    assert CompactRange.from_bytes(200, log_row.compact_range).root() == sim.log.active.root(200)


async def test_checkpoint_signed_by_the_wrong_key_is_rejected(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 20)
    settings = settings_for(sim, database_url, start=0)
    sim.log.sign_with_wrong_key(True)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    [row] = await log_status(database_url)
    assert row["next_index"] == 0 and row["verified_size"] == 0
    [alert] = await alerts_of(database_url)
    assert alert.kind == "log_inconsistent"


@pytest.mark.parametrize("status", [429, 500])
async def test_error_bursts_are_ridden_out(sim: RunningSimulator, database_url: str, status: int) -> None:
    await fill(sim, 300)
    sim.faults.inject(count=4, status=status, retry_after=0 if status == 429 else None)
    assert await run_once(settings_for(sim, database_url, start=0), FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 300
    assert sim.faults.remaining == 0


async def test_shard_rotation_finishes_the_retired_shard(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 120)
    settings = settings_for(sim, database_url, start=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    await fill(sim, 30)  # written to the old shard, not read yet
    sim.log.rotate_shard()
    await fill(sim, 45)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    old, new = await log_status(database_url)
    assert old["next_index"] == old["verified_size"] == 150 and old["retired"]
    assert new["next_index"] == 195 and new["verified_size"] == 45


async def test_start_zero_covers_every_shard(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 64)
    sim.log.rotate_shard()
    await fill(sim, 10)
    assert await run_once(settings_for(sim, database_url, start=0), FAST_RETRY) == EXIT_OK
    rows = await log_status(database_url)
    assert [r["next_index"] for r in rows] == [64, 74]


async def test_unreachable_log_exits_1_without_losing_the_cursor(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 40)
    settings = settings_for(sim, database_url, start=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    before = await log_status(database_url)
    await fill(sim, 10)
    sim.faults.inject(count=1_000_000, status=503)
    assert await run_once(settings, FAST_RETRY) == 1
    [after] = await log_status(database_url)
    assert after.pop("state") == "unreachable" and "HTTP 503" in after.pop("state_detail")
    assert after == {key: value for key, value in before[0].items() if key not in ("state", "state_detail")}, (
        "nothing moved, nothing was lost"
    )
    sim.faults.inject(count=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 50


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_log_tailed_by_another_replica_is_left_alone(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 50)
    settings = settings_for(sim, database_url, start=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK  # creates the schema and the row
    await fill(sim, 50)
    other_replica = Store.open(database_url)
    try:
        assert await other_replica.hold_log_lock(sim.url)
        assert await run_once(settings, FAST_RETRY) == EXIT_OK
        [row] = await log_status(database_url)
        assert row["next_index"] == 50, "the standby replica read nothing"
    finally:
        await other_replica.close()
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 100, "and takes over once the holder is gone"


async def test_a_start_beyond_the_end_waits_for_the_log(sim: RunningSimulator, database_url: str) -> None:
    await fill(sim, 10)
    settings = settings_for(sim, database_url, start=25)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 25 and row["verified_size"] == 10
    await fill(sim, 20)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await log_status(database_url)
    assert row["next_index"] == 30


def test_proven_chunks_are_committed_as_one_batch_ending_where_the_last_ends() -> None:
    first, second = Batch(7, 1000, 2024, b"a"), Batch(7, 2024, 3048, b"b", retired=True)
    first.errors.append(EntryError(1500, "bad_json", "x"))
    second.errors.append(EntryError(2500, "bad_json", "y"))
    proven = ProvenChunks(first, CompactRange.from_bytes(0, b""), 1024)
    proven.add(second, CompactRange.from_bytes(0, b""), 1024)
    batch = proven.batch
    assert (batch.expected_next, batch.next_index, batch.compact_range, batch.retired) == (1000, 3048, b"b", True)
    assert [error.log_index for error in batch.errors] == [1500, 2500]
    assert (proven.entries, proven.chunks) == (2048, 2)


def test_proven_chunks_are_due_when_enough_or_when_the_first_waited_long_enough() -> None:
    def proven(chunks: int, waited: float) -> ProvenChunks:
        group = ProvenChunks(Batch(1, 0, 0, b""), CompactRange.from_bytes(0, b""), 0, started=time.monotonic() - waited)
        for _ in range(chunks - 1):
            group.add(Batch(1, 0, 0, b""), group.compact, 0)
        return group

    assert not proven(COMMIT_CHUNKS - 1, 0).due()
    assert proven(COMMIT_CHUNKS, 0).due()
    assert proven(1, COMMIT_SECONDS).due()
