"""Issue 13 end to end: Fulcio's CT log watched beside Rekor. Every certificate issued to a watched
identity is stored with its verdict, joined with its Rekor signing whichever log is read first, and
one never used in Rekor is `unlogged_certificate` after the grace. The simulator's CA logs every
precertificate in its CT log (RFC 6962 and static-ct-api), over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from monitor.config import CtLogSettings, LogSettings, Settings
from monitor.daemon import EXIT_ERROR, EXIT_INCONSISTENT, EXIT_OK, ct_logs_to_follow, run_once
from monitor.report import log_status
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.db import upgrade
from monitor.store.models import AlertRow, CertificateRow, EntryErrorRow, LogRow, SigningRow
from monitor.store.repository import Store
from monitor.trust import TrustRootError, load_trust_root
from monitor.unlogged import UnloggedSweep
from tests.harness import FAST_RETRY, base_settings, free_port, rows_of, running_daemon
from tests.test_daemon import EXPECTED, IMPERSONATOR, RENAMED, STRANGER, UNEXPECTED, WATCH, as_config_file


@pytest.fixture(params=["rfc6962", "static"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "sim", ct_api=request.param)
    yield running
    await running.stop()


def settings_for(
    sim: RunningSimulator, database_url: str, *, rekor: bool = True, ct: bool = True, grace: float = 600.0
) -> Settings:
    ct_logs = [CtLogSettings(url=sim.ct_url, api=sim.simulator.ct_api, start=0)] if ct else []
    settings = base_settings(sim, database_url, ct_logs=ct_logs, ct_grace=grace, watch=WATCH)
    return settings if rekor else settings.model_copy(update={"logs": []})


async def sign_each_verdict(sim: RunningSimulator) -> None:
    s = sim.simulator
    await s.append_unwatched(50)
    for identity in (EXPECTED, RENAMED, UNEXPECTED, IMPERSONATOR, STRANGER):
        s.append_codefresh(**identity)
        await s.append_unwatched(20)


async def test_certificates_get_the_verdicts_of_their_signings_and_are_joined_with_them(
    sim: RunningSimulator, database_url: str
) -> None:
    await sign_each_verdict(sim)
    assert await run_once(settings_for(sim, database_url), FAST_RETRY) == EXIT_OK
    signings = {(s.issuer_ca, s.certificate_serial): s for s in await rows_of(database_url, SigningRow)}
    certificates = await rows_of(database_url, CertificateRow)
    assert len(certificates) == len(signings) == 5
    for certificate in certificates:
        signing = signings[(certificate.issuer_ca, certificate.serial)]
        assert certificate.verdict == signing.verdict and certificate.signing_id == signing.id
        assert (certificate.account_id, certificate.pipeline_id) == (signing.account_id, signing.pipeline_id)
        assert certificate.chain_verified and certificate.entry_type == "precert"
    issued = sorted(a.kind for a in await rows_of(database_url, AlertRow) if a.kind == "certificate_issued")
    assert issued == ["certificate_issued"] * 2, "unexpected_pipeline and impersonation"
    [ct_log] = [log for log in await log_status(database_url) if log["kind"] == "ct"]
    assert ct_log["next_index"] == sim.simulator.ct.size and ct_log["state"] == "ok"


@pytest.mark.parametrize("first", ["ct", "rekor"])
async def test_certificate_and_signing_are_linked_whichever_log_is_read_first(
    sim: RunningSimulator, database_url: str, first: str
) -> None:
    await sign_each_verdict(sim)
    only_ct = settings_for(sim, database_url, rekor=False)
    only_rekor = settings_for(sim, database_url, ct=False)
    for settings in (only_ct, only_rekor) if first == "ct" else (only_rekor, only_ct):
        assert await run_once(settings, FAST_RETRY) == EXIT_OK
    certificates = await rows_of(database_url, CertificateRow)
    signings = {s.id: s for s in await rows_of(database_url, SigningRow)}
    assert len(certificates) == 5 and all(c.signing_id in signings for c in certificates)
    for certificate in certificates:
        assert signings[certificate.signing_id].certificate_serial == certificate.serial


async def test_a_certificate_used_nowhere_is_unlogged_once_after_the_grace_across_a_restart(
    sim: RunningSimulator, database_url: str
) -> None:
    await sim.simulator.append_unwatched(10)
    quiet = sim.simulator.issue_only(**UNEXPECTED)  # a stolen token, used without Rekor
    sim.simulator.append_codefresh(**EXPECTED)
    # The first run must end within the grace of the certificate's issuance: 1 s was too short for a
    # loaded CI machine (migrations, the decode process starting).
    settings = settings_for(sim, database_url, grace=4.0)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    kinds = [a.kind for a in await rows_of(database_url, AlertRow)]
    assert "unlogged_certificate" not in kinds, "not within the grace"
    await asyncio.sleep(4.2)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK  # a restart: the sweep reads the database
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [unlogged] = [a for a in await rows_of(database_url, AlertRow) if a.kind == "unlogged_certificate"]
    assert unlogged.severity == "critical"
    [certificate] = [c for c in await rows_of(database_url, CertificateRow) if c.signing_id is None]
    assert certificate.ct_index == quiet.ct_index and certificate.verdict == "unexpected_pipeline"
    assert json.loads(unlogged.payload)["certificate"]["serial"] == certificate.serial
    issued = [a for a in await rows_of(database_url, AlertRow) if a.kind == "certificate_issued"]
    assert len(issued) == 1, "certificate_issued once, however often the log is read"


async def test_a_certificate_and_its_signing_that_missed_each_other_are_linked_not_alerted(
    sim: RunningSimulator, database_url: str
) -> None:
    """A Rekor chunk and a CT chunk holding the same certificate, committed at the same moment, each
    miss the other's row and leave the certificate unlinked: the sweep links it, never alerts."""
    sim.simulator.append_codefresh(**UNEXPECTED)
    settings = settings_for(sim, database_url, grace=0.5)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [signing] = await rows_of(database_url, SigningRow)
    async with Store.open(database_url) as store, store.sessions.begin() as session:
        await session.execute(update(CertificateRow).values(signing_id=None))  # what the race leaves
    await asyncio.sleep(0.7)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    assert not [a for a in await rows_of(database_url, AlertRow) if a.kind == "unlogged_certificate"]
    [certificate] = await rows_of(database_url, CertificateRow)
    assert certificate.signing_id == signing.id


async def test_no_certificate_is_unlogged_before_rekor_is_read_through_its_grace(
    sim: RunningSimulator, database_url: str
) -> None:
    """A restart after a day down reads CT in seconds and Rekor in minutes: signings not read yet
    are no evidence that a certificate was used quietly."""
    sim.simulator.append_codefresh(**EXPECTED)
    quiet = sim.simulator.issue_only(**UNEXPECTED)
    settings = settings_for(sim, database_url, grace=0.5)
    rekor_down = settings.model_copy(
        update={"logs": [LogSettings(url=f"http://127.0.0.1:{await free_port()}", api="v1", start=0)]}
    )
    assert await run_once(rekor_down, FAST_RETRY) == EXIT_ERROR
    await asyncio.sleep(0.7)
    assert await run_once(rekor_down, FAST_RETRY) == EXIT_ERROR
    assert len(await rows_of(database_url, CertificateRow)) == 2, "CT was read"
    assert not [a for a in await rows_of(database_url, AlertRow) if a.kind == "unlogged_certificate"]
    assert await run_once(settings, FAST_RETRY) == EXIT_OK  # Rekor read through the grace at last
    [unlogged] = [a for a in await rows_of(database_url, AlertRow) if a.kind == "unlogged_certificate"]
    assert json.loads(unlogged.payload)["certificate"]["ct_index"] == quiet.ct_index, "the signed one is linked"


async def test_rekor_is_read_through_its_oldest_caught_up_checkpoint(database_url: str) -> None:
    await upgrade(database_url)
    now = datetime.now(UTC)
    earlier, later = now - timedelta(minutes=5), now - timedelta(minutes=1)
    shards = [
        LogRow(url="https://a", api="v1", origin="a - 1", tree_id="1", verified_size=10, next_index=10,
               retired=True, last_checkpoint_at=now - timedelta(days=9)),
        LogRow(url="https://a", api="v1", origin="a - 2", tree_id="2", shard_offset=10, verified_size=5,
               next_index=15, last_checkpoint_at=later),
        LogRow(url="https://b", api="tiles", origin="b", verified_size=7, next_index=6, last_checkpoint_at=earlier),
    ]  # fmt: skip
    async with Store.open(database_url) as store:
        async with store.sessions.begin() as session:
            session.add_all(shards)
        sweep = UnloggedSweep(store, grace=60)
        assert await sweep.rekor_read_through(now) == now, "no Rekor log followed: the grace runs from now"
        sweep.rekor_logs = lambda: ["https://a"]
        assert await sweep.rekor_read_through(now) == later
        sweep.rekor_logs = lambda: ["https://a", "https://b"]
        assert await sweep.rekor_read_through(now) is None, "b lags behind its checkpoint"
        sweep.rekor_logs = lambda: ["https://a", "https://never-read"]
        assert await sweep.rekor_read_through(now) is None, "a log never read holds the sweep back"
        async with store.sessions.begin() as session:
            await session.execute(update(LogRow).where(LogRow.url == "https://b").values(next_index=7))
        sweep.rekor_logs = lambda: ["https://a", "https://b"]
        assert await sweep.rekor_read_through(now) == earlier


async def test_an_expected_certificate_unlogged_is_a_warning(sim: RunningSimulator, database_url: str) -> None:
    sim.simulator.issue_only(**EXPECTED)
    settings = settings_for(sim, database_url, grace=0.5)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    await asyncio.sleep(0.7)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    [unlogged] = [a for a in await rows_of(database_url, AlertRow) if a.kind == "unlogged_certificate"]
    assert unlogged.severity == "warning"


async def test_truncated_get_entries_answers_are_read_in_full(rfc6962_sim: RunningSimulator, database_url: str) -> None:
    """RFC 6962 only: a static-ct-api log serves whole data tiles."""
    sim = rfc6962_sim
    await sign_each_verdict(sim)
    sim.simulator.ct.max_get_entries = 3
    assert await run_once(settings_for(sim, database_url, rekor=False), FAST_RETRY) == EXIT_OK
    assert len(await rows_of(database_url, CertificateRow)) == 5
    [ct_log] = await log_status(database_url)
    assert ct_log["next_index"] == sim.simulator.ct.size


async def test_a_forked_ct_log_exits_3(sim: RunningSimulator, database_url: str) -> None:
    await sign_each_verdict(sim)
    settings = settings_for(sim, database_url, rekor=False)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    sim.simulator.ct.fork(2)
    sim.simulator.append_codefresh(**EXPECTED)
    assert await run_once(settings, FAST_RETRY) == EXIT_INCONSISTENT
    [alert] = [a for a in await rows_of(database_url, AlertRow) if a.kind == "log_inconsistent"]
    assert sim.ct_url in alert.summary


async def test_a_ct_log_read_through_another_address_keeps_its_own_origin_and_key(
    sim: RunningSimulator, database_url: str
) -> None:
    await sign_each_verdict(sim)
    origin = sim.ct_url.removeprefix("http://")
    mirror = sim.ct_url.replace("127.0.0.1", "localhost")
    settings = settings_for(sim, database_url, rekor=False)
    unnamed = CtLogSettings(url=mirror, api=sim.simulator.ct_api, start=0)
    with pytest.raises(TrustRootError, match="no key for http://localhost"):
        await run_once(settings.model_copy(update={"ct_logs": [unnamed]}), FAST_RETRY)
    named = unnamed.model_copy(update={"origin": origin})
    assert await run_once(settings.model_copy(update={"ct_logs": [named]}), FAST_RETRY) == EXIT_OK
    [ct_log] = await log_status(database_url)
    assert (ct_log["url"], ct_log["origin"], ct_log["next_index"]) == (mirror, origin, sim.simulator.ct.size)
    assert len(await rows_of(database_url, CertificateRow)) == 5


@pytest.fixture
async def rfc6962_sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path / "sim", ct_api="rfc6962")
    yield running
    await running.stop()


async def test_a_precertificate_that_is_not_its_leafs_is_undecodable_not_a_certificate(
    rfc6962_sim: RunningSimulator, database_url: str
) -> None:
    """get-entries' extra data is not in the tree: a log may serve any; it must match the leaf (the
    static-ct-api data tiles' own case is in test_ct.py)."""
    sim = rfc6962_sim
    sim.simulator.append_codefresh(**EXPECTED)
    sim.simulator.append_codefresh(**UNEXPECTED)
    sim.simulator.ct.tamper_extra_data(at=1, like=0)
    assert await run_once(settings_for(sim, database_url, rekor=False), FAST_RETRY) == EXIT_OK
    [error] = await rows_of(database_url, EntryErrorRow)
    assert (error.log_index, error.reason) == (1, "precertificate_mismatch")
    [certificate] = await rows_of(database_url, CertificateRow)
    assert certificate.ct_index == 0
    assert [a.kind for a in await rows_of(database_url, AlertRow)] == ["entry_undecodable"]


async def test_certificates_in_the_cli_and_the_api(sim: RunningSimulator, database_url: str, tmp_path: Path) -> None:
    await sign_each_verdict(sim)
    quiet = sim.simulator.issue_only(**EXPECTED)
    settings = settings_for(sim, database_url)
    assert await run_once(settings, FAST_RETRY) == EXIT_OK
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(as_config_file(settings))
    listing = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor", "certificates", "--unlogged", "--format", "json", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
    )
    listed, _ = await listing.communicate()
    [unlogged] = json.loads(listed)
    assert unlogged["ct_index"] == quiet.ct_index and unlogged["signing_id"] is None
    assert unlogged["logged"] is False
    async with running_daemon(settings) as daemon:
        status, page = await daemon.get("/api/v1/certificates?logged=false")
        assert status == 200 and [item["ct_index"] for item in page["items"]] == [quiet.ct_index]
        assert set(page["items"][0]) == set(unlogged), "the CLI's JSON objects are the API's"
        status, page = await daemon.get("/api/v1/certificates?verdict=impersonation&logged=true")
        assert status == 200 and len(page["items"]) == 1
        status, logs = await daemon.get("/api/v1/logs")
        assert {log["kind"] for log in logs} == {"rekor", "ct"}
        status, error = await daemon.get("/api/v1/certificates?logged=maybe")
        assert status == 400 and "logged" in error["error"]


async def test_the_trust_roots_ct_logs_are_found_with_the_api_they_answer_unless_followed_already(
    sim: RunningSimulator, database_url: str
) -> None:
    settings = settings_for(sim, database_url).model_copy(update={"ct_logs": None})
    trust = load_trust_root(str(sim.trust_files.trusted_root))
    async with aiohttp.ClientSession() as session:
        [ct_settings] = await ct_logs_to_follow(settings, trust, session, start=0)
        assert (ct_settings.url, ct_settings.api, ct_settings.start) == (sim.ct_url, sim.simulator.ct_api, 0)
        assert await ct_logs_to_follow(settings, trust, session, followed=[sim.ct_url]) == []
