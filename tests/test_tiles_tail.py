"""End to end over tlog-tiles (Rekor v2): the same signings and alerts as over v1; forks and tampered
tiles detected; discovery of logs from the trust root."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import LogSettings, ServerSettings, Settings, TrustSettings
from monitor.daemon import EXIT_INCONSISTENT, EXIT_OK, logs_to_follow, run_forever, run_once
from monitor.report import log_status
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.models import AlertRow, LogRow, SigningRow
from monitor.trust import load_trust_root, parse_trust_root
from tests.harness import FAST_RETRY, SCHEMA_NOT_YET, base_settings, rows_of
from tests.paths import SIGSTORE as FIXTURES
from tests.test_daemon import (
    EXPECTED,
    EXPECTED_ALERTS,
    IMPERSONATOR,
    RENAMED,
    STRANGER,
    UNEXPECTED,
    WATCH,
)


@pytest.fixture
async def tiles(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "tiles", api="tiles")
    yield running
    await running.stop()


@pytest.fixture
async def v1(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "v1")
    yield running
    await running.stop()


def settings_for(sim: RunningSimulator, database_url: str, api: str, start: str | int = 0) -> Settings:
    log = LogSettings(url=sim.url, api=api, start=start)
    return base_settings(sim, database_url, log, watch=WATCH, server=ServerSettings(listen="127.0.0.1:0"))


async def same_story(sim: RunningSimulator) -> list[str]:
    """The same sequence of signings on any simulator; returns the verdict of each, in order."""
    s = sim.simulator
    verdicts = []
    for identity, verdict, forged in [
        (EXPECTED, "expected", False),
        (RENAMED, "renamed", False),
        (UNEXPECTED, "unexpected_pipeline", False),
        (IMPERSONATOR, "impersonation", False),
        (EXPECTED, "untrusted", True),
        (STRANGER, "unwatched", False),
    ]:
        await s.append_unwatched(97)
        (s.append_forged if forged else s.append_codefresh)(**identity)
        verdicts.append(verdict)
    await s.append_unwatched(300)  # past a full tile and bundle of 256
    return verdicts


def outcome(signings: list[SigningRow], alerts: list[AlertRow]) -> tuple:
    by_id = {s.id: s for s in signings}
    return (
        [(s.verdict, s.account_id, s.account_name, s.pipeline_id, s.pipeline_name, s.chain_verified) for s in signings],
        sorted((a.kind, a.severity, by_id[a.signing_id].verdict) for a in alerts),
    )


async def test_tiles_and_v1_give_the_same_signings_and_alerts(
    tiles: RunningSimulator, v1: RunningSimulator, database_url: str, tmp_path: Path
) -> None:
    verdicts = await same_story(tiles)
    assert await same_story(v1) == verdicts
    assert await run_once(settings_for(tiles, database_url, "tiles"), FAST_RETRY) == EXIT_OK
    tiles_signings, tiles_alerts = await rows_of(database_url, SigningRow), await rows_of(database_url, AlertRow)
    assert [s.verdict for s in tiles_signings] == verdicts
    assert all(s.kind == "hashedrekord" and s.integrated_time is None for s in tiles_signings)
    assert all(s.signed_at == s.not_before for s in tiles_signings), "v2 has no time: not_before stands in"
    assert sorted(a.kind for a in tiles_alerts) == sorted(kind for kind, _ in EXPECTED_ALERTS.values())

    v1_db = f"sqlite+aiosqlite:///{tmp_path / 'v1.db'}"
    assert await run_once(settings_for(v1, v1_db, "v1"), FAST_RETRY) == EXIT_OK
    v1_outcome = outcome(await rows_of(v1_db, SigningRow), await rows_of(v1_db, AlertRow))
    assert outcome(tiles_signings, tiles_alerts) == v1_outcome

    [row] = await log_status(database_url)
    assert row["api"] == "tiles" and row["origin"] == tiles.url.split("://")[1] and row["tree_id"] == ""
    assert row["next_index"] == row["verified_size"] == tiles.log.size


async def test_tiles_start_at_head_then_follow(tiles: RunningSimulator, database_url: str) -> None:
    await tiles.simulator.append_unwatched(700)
    settings = settings_for(tiles, database_url, "tiles", start="head")
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    index = tiles.simulator.append_codefresh(**UNEXPECTED)
    await tiles.simulator.append_unwatched(5)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [signing] = await rows_of(database_url, SigningRow)
    assert signing.log_index == index and signing.verdict == "unexpected_pipeline"
    [row] = await log_status(database_url)
    assert row["next_index"] == 706


async def test_a_forked_tiles_log_is_inconsistent(tiles: RunningSimulator, database_url: str) -> None:
    await tiles.simulator.append_unwatched(300)
    settings = settings_for(tiles, database_url, "tiles")
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    tiles.log.fork(at=10)
    await tiles.simulator.append_unwatched(20)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.kind == "log_inconsistent" and json.loads(alert.payload)["reason"] == "consistency_failed"


async def test_a_tampered_tile_is_detected(tiles: RunningSimulator, database_url: str) -> None:
    await tiles.simulator.append_unwatched(600)
    settings = settings_for(tiles, database_url, "tiles", start=0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    await tiles.simulator.append_unwatched(300)
    tiles.simulator.tiled.tamper_tile(0, 2)  # leaves 512..767: read before, used in the new proof
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    [alert] = await rows_of(database_url, AlertRow)
    assert alert.kind == "log_inconsistent"
    [row] = await rows_of(database_url, LogRow)
    assert row.state == "inconsistent" and row.next_index == 600


async def test_a_tampered_tile_at_bootstrap_is_detected(tiles: RunningSimulator, database_url: str) -> None:
    await tiles.simulator.append_unwatched(600)
    tiles.simulator.tiled.tamper_tile(0, 2)
    assert await run_once(settings_for(tiles, database_url, "tiles", start="head"), FAST_RETRY) == EXIT_INCONSISTENT


def test_discovery_follows_every_log_of_the_trust_root_valid_now() -> None:
    trust = load_trust_root("public-good", refresh=False)
    logs = logs_to_follow(Settings(), trust)
    assert {(log.url, log.api, log.start) for log in logs} == {
        ("https://rekor.sigstore.dev", "v1", "head"),
        ("https://log2025-1.rekor.sigstore.dev", "tiles", "head"),
    }


def test_discovery_without_a_signing_config_infers_the_api_from_the_key() -> None:
    raw = json.loads((FIXTURES / "trusted_root.staging.json").read_text())
    trust = parse_trust_root(raw, None, "staging")
    now = datetime.now(UTC)
    logs = {log.url: log.api for log in logs_to_follow(Settings(), trust)}
    valid = {key.base_url for key in trust.tlogs if key.validity.contains(now)}
    assert set(logs) == valid
    for url, api in logs.items():
        assert api == ("v1" if url == "https://rekor.sigstage.dev" else "tiles")


def merged_trust_root(*sims: RunningSimulator) -> dict:
    roots = [json.loads(sim.trust_files.trusted_root.read_text()) for sim in sims]
    merged = dict(roots[0])
    merged["tlogs"] = [tlog for root in roots for tlog in root["tlogs"]]
    merged["certificateAuthorities"] = [ca for root in roots for ca in root["certificateAuthorities"]]
    return merged


async def test_a_log_added_by_a_trust_refresh_is_followed_from_its_start(
    v1: RunningSimulator, tiles: RunningSimulator, database_url: str, tmp_path: Path
) -> None:
    await v1.simulator.append_unwatched(30)
    await tiles.simulator.append_unwatched(40)
    early = tiles.simulator.append_codefresh(**UNEXPECTED)  # before rekorwatch knows the log
    root = tmp_path / "trust" / "trusted_root.json"
    root.parent.mkdir()
    root.write_text(json.dumps(merged_trust_root(v1)))
    settings = Settings(
        ct_logs=[],
        database=database_url,
        trust=TrustSettings(root=str(root), refresh=False),
        poll_interval=0.2,
        watch=WATCH,
        server=ServerSettings(listen="127.0.0.1:0"),
    )
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_forever(settings, FAST_RETRY, stop, trust_refresh_seconds=0.3))
    try:
        await wait_for(lambda logs: set(logs) == {v1.url}, database_url)
        root.write_text(json.dumps(merged_trust_root(v1, tiles)))  # the refresh brings a new shard
        logs = await wait_for(lambda logs: logs.get(tiles.url, {}).get("next_index") == 41, database_url)
        assert {url: (r["api"], r["next_index"]) for url, r in logs.items()} == {
            v1.url: ("v1", 30),
            tiles.url: ("tiles", 41),
        }
    finally:
        stop.set()
        assert await daemon == EXIT_OK
    [signing] = await rows_of(database_url, SigningRow)
    assert signing.log_index == early and signing.log_url == tiles.url


async def wait_for(
    condition: Callable[[dict[str, dict]], bool], database_url: str, within: float = 20.0
) -> dict[str, dict]:
    """Poll `status` until `condition({url: log object})` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    logs: dict[str, dict] = {}
    while loop.time() < deadline:
        try:
            logs = {row["url"]: row for row in await log_status(database_url)}
        except SCHEMA_NOT_YET:  # the daemon has not created the schema yet
            logs = {}
        if logs and condition(logs):
            return logs
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition never met: {logs}")
