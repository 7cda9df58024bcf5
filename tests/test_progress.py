"""A catch-up shows where it is: rate and ETA per log, a live line at a terminal, log lines elsewhere,
and the rate in `status`."""

from __future__ import annotations

import io

import pytest
from structlog.testing import capture_logs

from monitor.config import LogSettings, Settings, TrustSettings
from monitor.progress import CLEAR_LINE, LogProgress, ProgressReport, format_duration
from monitor.report import log_status
from monitor.simulate.server import RunningSimulator
from tests.harness import eventually, running_daemon


def test_rate_and_eta_come_from_the_last_half_minute_of_commits() -> None:
    progress = LogProgress("https://log")
    progress.update(0, 10_000, now=100.0)
    assert progress.rate is None and progress.eta_seconds is None
    progress.update(1_000, 10_000, now=101.0)
    progress.update(2_000, 10_000, now=102.0)
    assert progress.rate == 1_000.0 and progress.eta_seconds == 8.0
    progress.update(2_500, 10_000, now=200.0)  # samples older than 30 s are dropped
    assert progress.rate == pytest.approx(500 / 98)
    assert format_duration(3725) == "1h02m" and format_duration(125) == "2m05s" and format_duration(None) == "?"


def test_at_a_terminal_one_live_line_is_drawn_and_cleared() -> None:
    stream = io.StringIO()
    report = ProgressReport(stream, live=True)
    report.of("https://a").update(10, 100, now=0.0)
    report.of("https://a").update(20, 100, now=1.0)
    report.of("https://b").update(5, 5, now=1.0)  # caught up: not shown
    report.show()
    assert stream.getvalue() == "https://a 20/100 10/s ETA 8s"
    report.clear()
    assert stream.getvalue().endswith(CLEAR_LINE)


def test_elsewhere_a_structured_line_per_lagging_log() -> None:
    report = ProgressReport(io.StringIO(), live=False)
    report.of("https://a").update(10, 100, now=0.0)
    report.of("https://a").update(20, 100, now=2.0)
    with capture_logs() as logs:
        report.show()
    assert logs == [
        {
            "event": "catch_up_progress",
            "log_level": "info",
            "log_url": "https://a",
            "next_index": 20,
            "tree_size": 100,
            "rate": 5.0,
            "eta_seconds": 16,
        }
    ]


async def test_status_shows_the_rate_and_eta_of_a_log_that_lags(sim: RunningSimulator, database_url: str) -> None:
    await sim.simulator.append_unwatched(8000)
    settings = Settings(
        ct_logs=[],
        database=database_url,
        trust=TrustSettings(root=str(sim.trust_files.trusted_root), refresh=False),
        logs=[LogSettings(url=sim.url, api="v1", start=0, concurrency=2)],
        poll_interval=0.2,
    )
    sim.faults.inject(count=1_000_000, delay=0.01)
    async with running_daemon(settings):

        async def measured() -> bool:
            rows = await log_status(database_url)
            return bool(rows) and rows[0]["rate"] is not None

        await eventually(measured, "a rate while catching up", within=60)
        [row] = await log_status(database_url)
        assert row["lag"] > 0 and row["rate"] > 0
        assert row["eta_seconds"] == pytest.approx(row["lag"] / row["rate"], rel=0.05, abs=1)
        sim.faults.inject(count=0)

        async def done() -> bool:
            [row] = await log_status(database_url)
            return row["lag"] == 0

        await eventually(done, "caught up", within=120)
    [row] = await log_status(database_url)
    assert (row["rate"], row["eta_seconds"]) == (None, None), "no ETA once caught up"
