"""Issue 12 in the tail: checkpoints count only once their policy witnesses' cosignatures meet the
quorum (enforce), or are read and alerted (alert); an invalid cosignature refuses a checkpoint. Against
the simulator's three witnesses, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.config import LogSettings, Settings
from monitor.daemon import EXIT_OK, run_once
from monitor.report import log_status
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.models import AlertRow, CheckpointRow
from monitor.store.repository import Store
from tests.harness import FAST_RETRY, base_settings, eventually, metric, rows_of, running_daemon


@pytest.fixture(params=["v1", "tiles"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "sim", api=request.param)
    yield running
    await running.stop()


def policy_with(sim: RunningSimulator, group: str) -> str:
    """The simulator's witness lines with another group line (`group g 2 a b c` as written)."""
    lines = [line for line in sim.witness_policy.read_text().splitlines() if line.startswith("witness ")]
    return "\n".join([*lines, group, "quorum g"]) + "\n"


def settings_for(sim: RunningSimulator, database_url: str, mode: str = "enforce", group: str | None = None) -> Settings:
    policy = {"witness_policy": policy_with(sim, group)} if group else {"witness_policy_file": str(sim.witness_policy)}
    api = "tiles" if sim.log.tiles else "v1"
    return base_settings(sim, database_url, LogSettings(url=sim.url, api=api, start=0, witness_mode=mode, **policy))


async def the_log(database_url: str) -> dict:
    [log] = await log_status(database_url)
    return log


async def test_a_witnessed_log_is_followed_and_its_cosigners_kept(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(300)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK
    log = await the_log(database_url)
    assert (log["next_index"], log["state"], log["witnesses"]) == (300, "ok", ["a", "b", "c"])
    async with Store.open(database_url) as store, store.sessions() as session:
        [checkpoint] = (await session.scalars(select(CheckpointRow))).all()
    assert '"name": "a"' in (checkpoint.cosigners or "")
    assert await rows_of(database_url, AlertRow) == []


async def test_enforce_waits_at_the_last_witnessed_checkpoint_and_alerts_once(
    sim: RunningSimulator, database_url: str
) -> None:
    settings = settings_for(sim, database_url)
    await sim.simulator.append_unwatched(100)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.simulator.witnesses.configure(cosign=["a"])  # 1 of the 2 the quorum needs
    await sim.simulator.append_unwatched(50)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    log = await the_log(database_url)
    assert (log["next_index"], log["verified_size"], log["tree_size"]) == (100, 100, 150), "the 50 wait, as lag"
    assert log["state"] == "unwitnessed"
    [alert] = await rows_of(database_url, AlertRow)
    assert (alert.kind, alert.severity, alert.resolved_at) == ("checkpoint_unwitnessed", "warning", None)
    sim.simulator.witnesses.configure(cosign=["a", "c"])
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    log = await the_log(database_url)
    assert (log["next_index"], log["state"], log["witnesses"]) == (150, "ok", ["a", "c"])
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.resolved_at is not None, "the episode ends with a witnessed checkpoint"


async def test_alert_mode_reads_on_and_alerts_once(sim: RunningSimulator, database_url: str) -> None:
    settings = settings_for(sim, database_url, mode="alert")
    sim.simulator.witnesses.configure(cosign=[])
    await sim.simulator.append_unwatched(100)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    await sim.simulator.append_unwatched(20)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    log = await the_log(database_url)
    assert (log["next_index"], log["state"]) == (120, "unwitnessed")
    assert [alert.kind for alert in await rows_of(database_url, AlertRow)] == ["checkpoint_unwitnessed"]


async def test_an_invalid_cosignature_refuses_the_checkpoint_and_the_cursor_waits(
    sim: RunningSimulator, database_url: str
) -> None:
    settings = settings_for(sim, database_url)
    await sim.simulator.append_unwatched(100)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.simulator.witnesses.configure(cosign=["a", "b", "c"], bad=["b"])
    await sim.simulator.append_unwatched(10)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK, "not inconsistent: the cursor only waits"
    log = await the_log(database_url)
    assert (log["next_index"], log["state"]) == (100, "unwitnessed")
    [alert] = await rows_of(database_url, AlertRow)
    assert (alert.kind, alert.severity) == ("witness_invalid", "critical") and "by b" in alert.summary
    sim.simulator.witnesses.configure(bad=[])
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    assert (await the_log(database_url))["next_index"] == 110
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.resolved_at is not None


@pytest.mark.parametrize(
    ("group", "cosigning", "witnessed"),
    [
        ("group g 2 a b c", ["a", "b"], True),
        ("group g 2 a b c", ["c"], False),
        ("group g any a b c", ["b"], True),
        ("group g any a b c", [], False),
        ("group g all a b c", ["a", "b", "c"], True),
        ("group g all a b c", ["a", "c"], False),
    ],
)
async def test_quorums_decide_what_is_read(
    sim: RunningSimulator, database_url: str, group: str, cosigning: list[str], witnessed: bool
) -> None:
    sim.simulator.witnesses.configure(cosign=cosigning)
    await sim.simulator.append_unwatched(30)
    assert await run_once(settings_for(sim, database_url, group=group), FAST_RETRY) == EXIT_OK
    log = await the_log(database_url)
    assert log["next_index"] == (30 if witnessed else 0)
    assert log["state"] == ("ok" if witnessed else "unwitnessed")


async def test_the_daemon_exports_cosignatures_and_the_unwitnessed_state(
    sim: RunningSimulator, database_url: str
) -> None:
    await sim.simulator.append_unwatched(10)
    async with running_daemon(settings_for(sim, database_url)) as daemon:

        async def cosigned() -> bool:
            exposition = await daemon.metrics()
            return (
                metric(exposition, "rekorwatch_checkpoint_cosignature_timestamp_seconds", log=sim.url, witness="b") > 0
            )

        await eventually(cosigned, "the cosignature timestamps exported")
        sim.simulator.witnesses.configure(cosign=[])
        await sim.simulator.append_unwatched(10)

        async def unwitnessed() -> bool:
            return metric(await daemon.metrics(), "rekorwatch_log_state", log=sim.url, state="unwitnessed") == 1

        await eventually(unwitnessed, "the log's state is unwitnessed")
