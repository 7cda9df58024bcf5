"""The supervisor at unit speed: a background task that fails or ends is logged, counted and restarted."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from monitor.metrics import Metrics
from monitor.supervisor import Backoff, Supervisor
from tests.harness import metric


async def test_a_failing_task_is_logged_with_its_class_counted_and_started_again() -> None:
    stop, metrics, runs = asyncio.Event(), Metrics(), []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise KeyError("a bug nobody expected")
        await stop.wait()

    supervisor = Supervisor(stop, metrics, backoff_base=0.01)
    with capture_logs() as logs:
        supervisor.start("flaky", flaky)
        for _ in range(200):
            if len(runs) == 3:
                break
            await asyncio.sleep(0.01)
        await supervisor.shutdown(grace=1)
    assert len(runs) == 3, "started again after each failure"
    failures = [entry for entry in logs if entry["event"] == "task_failed"]
    assert [(entry["task"], entry["error"]) for entry in failures] == [("flaky", "KeyError")] * 2
    exposition = metrics.exposition().decode()
    assert metric(exposition, "rekorwatch_task_failures_total", task="flaky") == 2


async def test_a_task_that_ends_while_the_daemon_runs_is_a_failure_too() -> None:
    stop, metrics, runs = asyncio.Event(), Metrics(), []

    async def returns_early() -> None:
        runs.append(1)
        if len(runs) > 1:
            await stop.wait()

    supervisor = Supervisor(stop, metrics, backoff_base=0.01)
    with capture_logs() as logs:
        supervisor.start("early", returns_early)
        for _ in range(200):
            if len(runs) == 2:
                break
            await asyncio.sleep(0.01)
        await supervisor.shutdown(grace=1)
    assert len(runs) == 2
    assert [entry["event"] for entry in logs if entry.get("task") == "early"] == ["task_ended"]
    assert metric(metrics.exposition().decode(), "rekorwatch_task_failures_total", task="early") == 1


async def test_a_task_stopped_on_purpose_is_not_counted() -> None:
    stop, metrics = asyncio.Event(), Metrics()
    supervisor = Supervisor(stop, metrics)
    supervisor.start("steady", stop.wait)
    await supervisor.shutdown(grace=1)
    assert "rekorwatch_task_failures_total{" not in metrics.exposition().decode()


def test_backoff_doubles_to_its_cap_and_resets_on_success() -> None:
    backoff = Backoff(1.0, cap=5.0)
    assert [backoff.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.succeeded()
    assert backoff.failed() == 1.0
    huge = Backoff(1.0, cap=300.0)
    huge.failures = 10**6
    assert huge.failed() == 300.0, "no overflow after a long outage"
