"""Operations that do not go quiet: series that exist before anything happens, states that survive a
restart, logs as they really are (private names, mirrors), and the way back from an inconsistency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from monitor.alerting import AlertRaiser
from monitor.config import CtLogSettings, LogSettings
from monitor.contract import AlertKind, LogState
from monitor.daemon import EXIT_ERROR, EXIT_INCONSISTENT, EXIT_OK, run_once
from monitor.metrics import Metrics
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.db import upgrade
from monitor.store.models import AlertRow, LogRow
from monitor.store.repository import Store
from monitor.tailcore import LogInconsistent
from tests.harness import FAST_RETRY, base_settings, eventually, free_port, metric, rows_of, running_daemon
from tests.test_daemon import as_config_file


async def test_a_log_that_never_answers_has_its_series_and_zero_counters_from_the_first_scrape(
    sim: RunningSimulator, database_url: str
) -> None:
    silent = f"http://127.0.0.1:{await free_port()}"
    silent_ct = f"http://127.0.0.1:{await free_port()}"
    settings = base_settings(sim, database_url, LogSettings(url=silent, api="v1", start=0)).model_copy(
        # a mirror of the simulator's CT log that never answers: the origin finds the log's key
        update={"ct_logs": [CtLogSettings(url=silent_ct, origin=sim.ct_url.split("://")[1], start=0)]}
    )
    async with running_daemon(settings) as daemon:
        first = await daemon.metrics()
        for url, reason, absent in ((silent, "not_json", "malformed_leaf"), (silent_ct, "malformed_leaf", "not_json")):
            assert f'rekorwatch_entry_errors_total{{log="{url}",reason="{reason}"}} 0.0' in first
            assert f'rekorwatch_entry_errors_total{{log="{url}",reason="{absent}"}}' not in first
        for gauge in ("tree_size", "verified_size", "next_index", "lag_entries", "last_checkpoint_timestamp_seconds"):
            assert f'rekorwatch_log_{gauge}{{log="{silent}"}} 0.0' in first, gauge
        for result in ("ok", "failed"):
            assert f'rekorwatch_checkpoint_verifications_total{{log="{silent}",result="{result}"}} 0.0' in first
        assert f'rekorwatch_entries_processed_total{{log="{silent}"}} 0.0' in first
        assert 'rekorwatch_alerts_total{kind="log_inconsistent",severity="critical"} 0.0' in first
        assert 'rekorwatch_alerts_total{kind="impersonation",severity="critical"} 0.0' in first
        assert 'rekorwatch_signings_total{verdict="unexpected_pipeline"} 0.0' in first
        assert "rekorwatch_build_info{version=" in first and "process_resident_memory_bytes" in first
        assert "_created" not in first

        async def unreachable() -> bool:
            return metric(await daemon.metrics(), "rekorwatch_log_state", log=silent, state="unreachable") == 1

        await eventually(unreachable, "the silent log's state is unreachable")
        exposition = await daemon.metrics()
        assert metric(exposition, "rekorwatch_fetch_errors_total", log=silent, reason="connection") > 0
        assert metric(exposition, "rekorwatch_log_state", log=silent, state="ok") == 0
        status, logs = await daemon.get("/api/v1/logs")
        [silent_log] = [log for log in logs if log["url"] == silent]
        assert silent_log["state"] == "unreachable" and "ClientConnectorError" in silent_log["state_detail"]
        status, landing = await daemon.get("/")
        assert status == 200 and 'href="/metrics"' in landing


async def test_a_restart_publishes_at_once_what_the_database_knows(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(300)
    settings = base_settings(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.log.fork(at=100)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    await sim.stop()  # the log is gone too: only the database can tell
    async with running_daemon(settings) as daemon:
        exposition = await daemon.metrics()
    assert metric(exposition, "rekorwatch_log_next_index", log=sim.url) == 300
    assert metric(exposition, "rekorwatch_log_verified_size", log=sim.url) == 300
    assert metric(exposition, "rekorwatch_log_state", log=sim.url, state="inconsistent") == 1


async def test_alerts_about_logs_are_counted_like_every_other(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(50)
    settings = base_settings(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.log.fork(at=10)
    await sim.simulator.append_unwatched(5)
    async with running_daemon(settings) as daemon:

        async def counted() -> bool:
            return (
                metric(await daemon.metrics(), "rekorwatch_alerts_total", kind="log_inconsistent", severity="critical")
                == 1
            )

        await eventually(counted, "log_inconsistent counted in alerts_total")
        sim.faults.inject(count=1_000_000, status=503)

        async def stalled() -> bool:
            return (
                metric(await daemon.metrics(), "rekorwatch_alerts_total", kind="log_stalled", severity="warning") == 1
            )

        await eventually(stalled, "log_stalled counted in alerts_total")


async def test_a_private_rekor_signing_under_its_hostname_is_followed(tmp_path: Path, database_url: str) -> None:
    """A private Rekor v1 signs as `--rekor_server.hostname` (rekor-0), not its URL: Rekor's own
    verifier and sigstore-python match by key id, and so does rekorwatch (FORMATS.md §3)."""
    private = await start_simulator(directory=tmp_path / "private", hostname="rekor-0")
    try:
        await private.simulator.append_unwatched(40)
        settings = base_settings(private, database_url)
        assert await run_once(settings, FAST_RETRY) == EXIT_OK
        [log] = await rows_of(database_url, LogRow)
        assert log.origin.startswith("rekor-0 - ") and log.next_index == 40 and log.state == "ok"
    finally:
        await private.stop()


async def test_a_tiles_log_read_through_another_address_keeps_its_own_origin(tmp_path: Path, database_url: str) -> None:
    tiles = await start_simulator(directory=tmp_path / "tiles", api="tiles")
    try:
        await tiles.simulator.append_unwatched(300)
        origin = tiles.url.removeprefix("http://")
        mirror = tiles.url.replace("127.0.0.1", "localhost")
        configured = base_settings(tiles, database_url, LogSettings(url=mirror, api="tiles", start=0, origin=origin))
        assert await run_once(configured, FAST_RETRY) == EXIT_OK
        [log] = await rows_of(database_url, LogRow)
        assert (log.url, log.origin, log.next_index) == (mirror, origin, 300)
    finally:
        await tiles.stop()


async def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, stdin=subprocess.DEVNULL)


async def test_an_operator_resets_an_inconsistent_log_and_it_is_followed_again(
    sim: RunningSimulator, database_url: str, tmp_path: Path
) -> None:
    await sim.simulator.append_unwatched(200)
    settings = base_settings(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.log.fork(at=150)
    await sim.simulator.append_unwatched(10)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(as_config_file(settings))
    command = (sys.executable, "-m", "monitor", "log", "reset", sim.url, "-c", str(config))
    refused = await _run(*command)
    assert refused.returncode == 2 and "--confirm" in refused.stderr, "not at a terminal: never without --confirm"
    reset = await _run(*command, "--confirm", "--reason", "looked at the fork with the log operator")
    assert reset.returncode == 0 and "reset 1 shard(s)" in reset.stdout, reset.stderr
    again = await _run(*command, "--confirm")
    assert again.returncode == 1 and "nothing to reset" in again.stderr
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [log] = await rows_of(database_url, LogRow)
    assert (log.state, log.next_index, log.verified_size) == (LogState.OK, 210, 210)
    alerts = {alert.kind: alert for alert in await rows_of(database_url, AlertRow)}
    assert alerts[AlertKind.LOG_INCONSISTENT].resolved_at is not None
    assert (
        alerts[AlertKind.LOG_RESET].severity == "info" and "looked at the fork" in alerts[AlertKind.LOG_RESET].summary
    )


async def test_a_log_that_never_answers_fails_run_once_with_1(sim: RunningSimulator, database_url: str) -> None:
    silent = f"http://127.0.0.1:{await free_port()}"
    settings = base_settings(sim, database_url, LogSettings(url=silent, api="v1", start=0))
    assert await run_once(settings, FAST_RETRY) == EXIT_ERROR


async def test_a_log_dropped_from_the_config_takes_its_stall_alerts_with_it_but_not_its_fork(
    sim: RunningSimulator, database_url: str
) -> None:
    gone = f"http://127.0.0.1:{await free_port()}"
    since = datetime(2026, 11, 1, tzinfo=UTC)
    await upgrade(database_url)
    async with Store.open(database_url) as store:
        raiser = AlertRaiser(store, (), Metrics())
        await raiser.log_stalled(gone, "gone.example", "v1", since, 600)
        await raiser.log_stalled(sim.url, "sim", "v1", since, 600)
        await raiser.log_inconsistent(gone, "gone.example", "v1", None, LogInconsistent("split_view", "two roots"))
    assert await run_once(base_settings(sim, database_url), FAST_RETRY) == EXIT_OK
    open_alerts = {(a.kind, a.log_url) for a in await rows_of(database_url, AlertRow) if a.resolved_at is None}
    assert open_alerts == {(AlertKind.LOG_STALLED, sim.url), (AlertKind.LOG_INCONSISTENT, gone)}
