"""End to end: signings, alerts, history, API and metrics from a simulated log, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import (
    MIN_POLL_INTERVAL,
    AlertSink,
    CodefreshAccount,
    CodefreshPipeline,
    ServerSettings,
    Settings,
    WatchSettings,
)
from monitor.daemon import EXIT_OK, run_forever, run_once
from monitor.simulate.server import RunningSimulator
from monitor.store.models import AlertRow, EntryErrorRow, LogRow, SigningRow
from tests.harness import FAST_RETRY, SCHEMA_NOT_YET, base_settings, free_port, rows_of

ACME = "628a80b693a15c0f9c13ab75"
RELEASE = "6612ad6384ef42f18019b7e9"
OTHER_PIPELINE = "65e6d5551e47e5bc243ca93f"
OTHER_ACCOUNT = "77aa80b693a15c0f9c13ab99"
WATCH = WatchSettings(
    issuers=["https://oidc.codefresh.io"],
    codefresh=[
        CodefreshAccount(
            account_id=ACME, account_name="acme", pipelines=[CodefreshPipeline(id=RELEASE, name="app/release")]
        )
    ],
)


def signing(account_id: str, account_name: str, pipeline_id: str, pipeline_name: str) -> dict[str, str]:
    return {
        "account_id": account_id,
        "account_name": account_name,
        "pipeline_id": pipeline_id,
        "pipeline_name": pipeline_name,
    }


EXPECTED = signing(ACME, "acme", RELEASE, "app/release")
RENAMED = signing(ACME, "acme", RELEASE, "app/release-v2")
UNEXPECTED = signing(ACME, "acme", OTHER_PIPELINE, "app/debug")
IMPERSONATOR = signing(OTHER_ACCOUNT, "ACME", RELEASE, "app/release")
STRANGER = signing(OTHER_ACCOUNT, "someone-else", OTHER_PIPELINE, "x/y")


def settings_for(sim: RunningSimulator, database_url: str, **extra: Any) -> Settings:
    return base_settings(sim, database_url, **{"watch": WATCH, "server": ServerSettings(listen="127.0.0.1:0"), **extra})


def as_config_file(settings: Settings) -> str:
    """The settings as a config file for a daemon in a subprocess (JSON is YAML); a file may not ask
    a log more often than MIN_POLL_INTERVAL."""
    slowest = max(settings.poll_interval, MIN_POLL_INTERVAL)
    return settings.model_copy(update={"poll_interval": slowest}).model_dump_json()


async def populate_scenario(sim: RunningSimulator) -> dict[int, str]:
    """Watched signings among hundreds of unwatched entries; returns {log index: expected verdict}."""
    s = sim.simulator
    expected: dict[int, str] = {}
    await s.append_unwatched(150)
    expected[s.append_codefresh(**EXPECTED)] = "expected"
    await s.append_unwatched(120)
    expected[s.append_codefresh(**RENAMED)] = "renamed"
    expected[s.append_codefresh(**UNEXPECTED)] = "unexpected_pipeline"
    await s.append_unwatched(130)
    expected[s.append_codefresh(**IMPERSONATOR)] = "impersonation"
    expected[s.append_forged(**EXPECTED)] = "untrusted"
    expected[s.append_codefresh(**STRANGER)] = "unwatched"
    await s.append_unwatched(101)
    return expected


EXPECTED_ALERTS = {
    "renamed": ("renamed", "info"),
    "unexpected_pipeline": ("unexpected_pipeline", "critical"),
    "impersonation": ("impersonation", "critical"),
    "untrusted": ("untrusted_certificate", "warning"),
}


async def test_a_log_of_watched_and_unwatched_entries_yields_exactly_the_right_rows(
    sim: RunningSimulator, database_url: str
) -> None:
    expected = await populate_scenario(sim)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK

    signings = await rows_of(database_url, SigningRow)
    assert {s.log_index: s.verdict for s in signings} == expected
    by_verdict = {s.verdict: s for s in signings}
    good = by_verdict["expected"]
    assert (good.account_id, good.account_name, good.pipeline_id, good.pipeline_name) == (
        ACME,
        "acme",
        RELEASE,
        "app/release",
    )
    assert good.provider == "codefresh" and good.chain_verified and good.integrated_time is not None
    assert good.run_url and good.run_url.startswith("https://g.codefresh.io/build/")
    assert json.loads(good.extensions)["build_config_uri"].endswith(RELEASE)
    assert not by_verdict["untrusted"].chain_verified

    alerts = await rows_of(database_url, AlertRow)
    got = sorted((a.kind, a.severity, a.signing_id) for a in alerts)
    want = sorted(
        (*EXPECTED_ALERTS[verdict], by_verdict[verdict].id) for verdict in EXPECTED_ALERTS if verdict in by_verdict
    )
    assert got == want
    for alert in alerts:
        payload = json.loads(alert.payload)
        assert payload["signing"]["id"] == alert.signing_id and payload["log"]["url"] == sim.url
    assert await rows_of(database_url, EntryErrorRow) == []


async def test_history_api_and_metrics_agree_with_the_tables(
    sim: RunningSimulator, database_url: str, tmp_path: Path
) -> None:
    expected = await populate_scenario(sim)
    settings = settings_for(sim, database_url, server=ServerSettings(listen="127.0.0.1:0", api_token="t0ken"))
    assert await run_once(settings, FAST_RETRY) == EXIT_OK

    config = tmp_path / "rekorwatch.yaml"
    config.write_text(f"database: {database_url}\ntrust: {{root: {sim.trust_files.trusted_root}, refresh: false}}\n")
    history = cli("history", "--format", "json", "-c", str(config))
    assert {row["log_index"]: row["verdict"] for row in json.loads(history)} == expected
    only_acme = json.loads(cli("history", "--account", "acme", "--format", "json", "-c", str(config)))
    assert {row["verdict"] for row in only_acme} == {"expected", "renamed", "unexpected_pipeline", "untrusted"}
    by_pipeline = json.loads(cli("history", "--pipeline", OTHER_PIPELINE, "--format", "json", "-c", str(config)))
    assert {row["verdict"] for row in by_pipeline} == {"unexpected_pipeline", "unwatched"}
    csv_lines = cli("history", "--format", "csv", "-c", str(config)).strip().splitlines()
    assert len(csv_lines) == len(expected) + 1 and csv_lines[0].startswith("id,")
    table_text = cli("history", "-c", str(config))
    assert "impersonation" in table_text
    alerts = json.loads(cli("alerts", "--format", "json", "-c", str(config)))
    assert sorted(a["kind"] for a in alerts) == sorted(kind for kind, _ in EXPECTED_ALERTS.values())

    stop = asyncio.Event()
    listen_port = await free_port()
    settings = settings_for(
        sim, database_url, server=ServerSettings(listen=f"127.0.0.1:{listen_port}", api_token="t0ken")
    )
    daemon = asyncio.create_task(run_forever(settings, FAST_RETRY, stop))
    base = f"http://127.0.0.1:{listen_port}"
    auth = {"Authorization": "Bearer t0ken"}
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, base)
            async with http.get(f"{base}/api/v1/signings") as response:
                assert response.status == 401
            items = await _all_pages(http, f"{base}/api/v1/signings?limit=2", auth)
            assert [item["log_index"] for item in items] == sorted(expected, reverse=True)
            async with http.get(f"{base}/api/v1/signings?verdict=impersonation", headers=auth) as response:
                [item] = (await response.json())["items"]
                assert item["account_name"] == "ACME" and item["account_id"] == OTHER_ACCOUNT
            async with http.get(f"{base}/api/v1/signings/{item['id']}", headers=auth) as response:
                assert (await response.json()) == item
            huge = base64.urlsafe_b64encode(b"9" * 30).decode()
            bad_queries = ["limit=0", "limit=x", "since=yesterday", "verdict=nope", "cursor=%%%", f"cursor={huge}"]
            for bad in [*bad_queries, "since=0001-01-01T00:00:00%2B14:00"]:
                async with http.get(f"{base}/api/v1/signings?{bad}", headers=auth) as response:
                    assert response.status == 400 and "error" in await response.json(), bad
            async with http.get(f"{base}/api/v1/signings/999999", headers=auth) as response:
                assert response.status == 404
            async with http.get(f"{base}/api/v1/signings/{'9' * 30}", headers=auth) as response:
                assert response.status == 400
            async with http.get(f"{base}/api/v1/alerts?kind=impersonation", headers=auth) as response:
                [alert] = (await response.json())["items"]
                assert alert["signing_id"] == item["id"] and alert["log_url"] == sim.url
            async with http.get(f"{base}/api/v1/logs", headers=auth) as response:
                [log] = await response.json()
                assert log["next_index"] == sim.log.size and log["state"] == "ok"
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
            assert f'rekorwatch_log_next_index{{log="{sim.url}"}} {float(sim.log.size)}' in metrics
            assert f'rekorwatch_log_lag_entries{{log="{sim.url}"}} 0.0' in metrics
            assert 'rekorwatch_checkpoint_verifications_total{log="' in metrics
    finally:
        stop.set()
        assert await daemon == EXIT_OK


async def _wait_ready(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the daemon never became ready")


async def _all_pages(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    next_url: str | None = url
    while next_url:
        async with http.get(next_url, headers=headers) as response:
            page = await response.json()
        items += page["items"]
        next_url = f"{url}&cursor={page['next_cursor']}" if page["next_cursor"] else None
    return items


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_undecodable_entries_are_recorded_alerted_and_passed(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(10)
    bad = sim.log.append(b'{"apiVersion":"0.0.1","kind":"nonsense","spec":{}}')
    good = sim.simulator.append_codefresh(**EXPECTED)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK
    [error] = await rows_of(database_url, EntryErrorRow)
    assert error.log_index == bad and error.reason == "unknown_kind"
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.kind == "entry_undecodable" and alert.severity == "warning"
    [stored] = await rows_of(database_url, SigningRow)
    assert stored.log_index == good


async def test_kill_9_mid_catch_up_then_restart_gives_the_identical_database(
    sim: RunningSimulator, database_url: str, tmp_path: Path
) -> None:
    s = sim.simulator
    for _ in range(5):
        await s.append_unwatched(500)
        s.append_codefresh(**EXPECTED)
        s.append_codefresh(**UNEXPECTED)
        s.append_forged(**IMPERSONATOR)
    settings = settings_for(sim, database_url)
    config = tmp_path / "daemon.yaml"
    config.write_text(as_config_file(settings))
    sim.faults.inject(count=100_000, delay=0.06)  # slow enough to be killed between chunks, even when loaded
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor", "run", "--once", "-c", str(config)),
        env={**os.environ, "REKORWATCH_LOG_LEVEL": "error"},
    )
    await _wait_for_some_progress(database_url)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    sim.faults.inject(count=0)
    [row] = await rows_of(database_url, LogRow)
    assert 0 < row.next_index < sim.log.size, "the kill should land mid catch-up"
    assert workers, "the daemon decodes in a worker process"
    for _ in range(100):  # the orphaned worker follows its parent
        if not _alive(workers):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"worker processes {workers} outlived the killed daemon")

    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    killed = await _snapshot(database_url)
    fresh = await _replay_on_a_new_database(sim, database_url)
    assert killed == fresh
    assert len(killed[0]) == 15 and len(killed[1]) == 10


def _alive(pids: list[int]) -> bool:
    return any(os.path.exists(f"/proc/{pid}") for pid in pids)


def _children(pid: int) -> list[int]:
    return [
        int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()
    ]


async def _wait_for_some_progress(database_url: str) -> None:
    for _ in range(600):
        try:
            rows = await rows_of(database_url, LogRow)
        except SCHEMA_NOT_YET:  # schema not created yet
            rows = []
        if rows and rows[0].next_index > 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no progress before the kill")


async def _snapshot(database_url: str) -> tuple:
    signings = [
        (s.log_index, s.certificate_sha256, s.verdict, s.account_id, s.pipeline_id, s.integrated_time)
        for s in await rows_of(database_url, SigningRow)
    ]
    alerts = [(a.dedup_key, a.kind, a.severity) for a in await rows_of(database_url, AlertRow)]
    [log] = await rows_of(database_url, LogRow)
    return sorted(signings), sorted(alerts), (log.next_index, log.verified_size, log.compact_range)


async def _replay_on_a_new_database(sim: RunningSimulator, database_url: str) -> tuple:
    other = database_url.replace("rekorwatch.db", "replay.db") if database_url.startswith("sqlite") else None
    if other is None:  # PostgreSQL: a second fresh database beside the first
        from tests.conftest import fresh_postgres_database

        async with fresh_postgres_database() as other:
            assert await run_once(settings_for(sim, other), FAST_RETRY) == EXIT_OK
            return await _snapshot(other)
    assert await run_once(settings_for(sim, other), FAST_RETRY) == EXIT_OK
    return await _snapshot(other)


async def test_run_once_delivers_the_alerts_it_raised_before_exiting(sim: RunningSimulator, database_url: str) -> None:
    received: list[tuple[dict, str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(
            (
                json.loads(body),
                request.headers["X-Rekorwatch-Delivery"],
                request.headers.get("X-Rekorwatch-Signature", ""),
            )
        )
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, request.headers["X-Rekorwatch-Signature"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await sim.simulator.append_unwatched(20)
        sim.simulator.append_codefresh(**UNEXPECTED)
        sim.simulator.append_codefresh(**RENAMED)  # info: below the sink's min_severity
        sink = AlertSink(type="webhook", url=f"http://127.0.0.1:{port}/hook", secret="s3cret", min_severity="warning")
        assert await run_once(settings_for(sim, database_url, alerts=[sink]), FAST_RETRY) == EXIT_OK
    finally:
        await runner.cleanup()
    [(body, delivery_id, _)] = received
    assert body["kind"] == "unexpected_pipeline" and body["signing"]["pipeline_id"] == OTHER_PIPELINE
    assert delivery_id == body["id"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
async def test_sigterm_or_ctrl_c_stops_cleanly_at_a_chunk_boundary(
    sim: RunningSimulator, database_url: str, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM (an orchestrator) exits 0, Ctrl-C 130 (the shell's convention), both quietly."""
    total = 8000  # chunks enough that a loaded machine cannot read them all before the signal lands
    await sim.simulator.append_unwatched(total)
    settings = settings_for(sim, database_url)
    config = tmp_path / "daemon.yaml"
    config.write_text(as_config_file(settings))
    sim.faults.inject(count=100_000, delay=0.03)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor", "run", "-c", str(config)),
        env={**os.environ, "REKORWATCH_LOG_LEVEL": "error"},
        stderr=asyncio.subprocess.PIPE,
    )
    await _wait_for_some_progress(database_url)
    process.send_signal(signum)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert (process.returncode, stderr) == (code, b"")
    sim.faults.inject(count=0)
    [row] = await rows_of(database_url, LogRow)
    assert row.next_index % 1024 == 0 and 0 < row.next_index < total, "stopped between two chunks"
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [row] = await rows_of(database_url, LogRow)
    assert row.next_index == total


async def test_a_log_that_makes_no_progress_raises_log_stalled_once(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(5)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK
    sim.faults.inject(count=1_000_000, status=503)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_forever(settings_for(sim, database_url), FAST_RETRY, stop))
    try:
        for _ in range(200):
            alerts = await _alerts_if_any(database_url)
            if alerts:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # more failed cycles: still one alert for this stall
    finally:
        stop.set()
        assert await daemon == EXIT_OK
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.kind == "log_stalled" and alert.severity == "warning" and sim.url in alert.summary
    [row] = await rows_of(database_url, LogRow)
    assert row.state == "unreachable"


async def _alerts_if_any(database_url: str) -> list:
    try:
        return await rows_of(database_url, AlertRow)
    except SCHEMA_NOT_YET:  # schema not created yet
        return []


async def test_integrated_time_is_kept_only_when_the_log_key_was_valid_then(
    sim: RunningSimulator, database_url: str
) -> None:
    root = json.loads(sim.trust_files.trusted_root.read_text())
    root["tlogs"][0]["publicKey"]["validFor"]["end"] = "2020-01-01T00:00:00Z"  # retired before these SETs
    sim.trust_files.trusted_root.write_text(json.dumps(root))
    sim.simulator.append_codefresh(**EXPECTED)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK
    [stored] = await rows_of(database_url, SigningRow)
    assert stored.integrated_time is None and stored.signed_at == stored.not_before
