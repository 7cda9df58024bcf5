"""Alert delivery against real local HTTP receivers, on SQLite and PostgreSQL: every sink's payload,
the webhook HMAC, severity filters, outages, a kill -9 between send and record, and secrets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import update
from structlog.testing import capture_logs

from monitor.alerts.dispatcher import Dispatcher, outbox_sinks, retry_delay
from monitor.alerts.message import AlertMessage
from monitor.alerts.pagerduty import pagerduty_dedup_key
from monitor.config import AlertSink
from monitor.store import outbox
from monitor.store.models import AlertRow, iso
from monitor.store.repository import NewAlert, Store
from tests.alerting import (
    LOG,
    LOG_URL,
    ROUTING_KEY,
    SLACK_TOKEN_PATH,
    WEBHOOK_SECRET,
    Received,
    Receiver,
    deliveries,
    open_store,
    raise_alert,
    running_receiver,
    signing_object,
    sink,
    wait_until,
)

FAST = {"backoff_base": 0.01, "lease_margin": 0.3}


# receivers ----------------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as started:
        yield started


# store, alerts, dispatchers -------------------------------------------------------------------------


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The outbox on each backend."""
    opened = await open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """For what the backend cannot change (payload formats): SQLite only, to keep the suite fast."""
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")
    yield opened
    await opened.close()


async def deliver_once(
    store: Store, sinks: list[AlertSink], http: aiohttp.ClientSession, **options: Any
) -> tuple[int, list[tuple[str, str]]]:
    results: list[tuple[str, str]] = []
    dispatcher = Dispatcher(store, sinks, http, **{**FAST, **options}, on_result=lambda s, r: results.append((s, r)))
    return await dispatcher.deliver_due(), results


# payloads -------------------------------------------------------------------------------------------


async def test_webhook_body_headers_and_hmac(store: Store, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    sinks = [sink(type="webhook", url=receiver.url(), secret=WEBHOOK_SECRET)]
    signing = signing_object()
    alert = await raise_alert(store, sinks, signing=signing, reason="pipeline not allowed")

    assert await deliver_once(store, sinks, http) == (1, [("webhook", "delivered")])

    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.delivery_id == str(alert.id)
    expected = hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Rekorwatch-Signature"], f"sha256={expected}")
    body = request.json()
    assert set(body) == {"id", "kind", "severity", "created_at", "summary", "signing", "log"}
    assert body["id"] == str(alert.id)
    assert body["kind"] == "unexpected_pipeline"
    assert body["severity"] == "critical"
    assert body["created_at"] == iso(alert.created_at) and body["created_at"].endswith("Z")
    assert datetime.fromisoformat(body["created_at"]) == alert.created_at.replace(microsecond=0), "to the second"
    assert body["summary"] == "unexpected pipeline app/release of acme signed"
    assert body["signing"] == signing
    assert body["log"] == LOG
    [row] = (await deliveries(store, alert)).values()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None


async def test_webhook_without_secret_is_unsigned(
    sqlite_store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sinks = [sink(type="webhook", url=receiver.url())]
    await raise_alert(sqlite_store, sinks, kind="log_stalled", severity="warning", key="log_stalled:x")

    await deliver_once(sqlite_store, sinks, http)

    [request] = receiver.requests
    assert "X-Rekorwatch-Signature" not in request.headers
    assert request.json()["signing"] is None and request.json()["log"] == LOG


async def test_slack_message_reads_at_a_glance(
    sqlite_store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sinks = [sink(type="slack", url=receiver.url(SLACK_TOKEN_PATH))]
    signing = signing_object(pipeline_name="app/<!channel>", identity="https://x/a&b")
    alert = await raise_alert(sqlite_store, sinks, signing=signing, summary="pipeline <app> & co signed")

    await deliver_once(sqlite_store, sinks, http)

    [request] = receiver.requests
    assert request.path == SLACK_TOKEN_PATH
    message = request.json()
    assert message["text"] == "[CRITICAL] unexpected_pipeline: pipeline &lt;app&gt; &amp; co signed"
    header, summary, facts, links, footer = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rotating_light: Unexpected pipeline signed (critical)", "emoji": True},
    }
    assert summary["text"] == {"type": "mrkdwn", "text": "pipeline &lt;app&gt; &amp; co signed"}
    texts = [f["text"] for f in facts["fields"]]
    assert texts == [
        "*Account*\nacme (628a80b693a15c0f9c13ab75)",
        "*Pipeline*\napp/&lt;!channel&gt; (6612ad6384ef42f18019b7e9)",
        "*Identity*\nhttps://x/a&amp;b",
        "*Issuer*\nhttps://oidc.codefresh.io",
        "*Verdict*\nunexpected_pipeline",
        "*Source*\nhttps://github.com/acme/app @ refs/heads/main",
        "*Artifact*\nsha256:" + "ab" * 32,
        "*Signed at*\n2026-01-02T03:04:05Z",
    ]
    assert links["text"]["text"] == (
        "*Run:* <https://g.codefresh.io/build/65f0c0ffee>\n"
        f"*Log entry:* <{LOG_URL}/api/v1/log/entries?logIndex=1234|{LOG_URL} #1234>"
    )
    assert footer["elements"][0]["text"] == f"rekorwatch alert {alert.id} · {iso(alert.created_at)}"


async def test_slack_log_alert_shows_the_log_and_the_reason(
    sqlite_store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sinks = [sink(type="slack", url=receiver.url())]
    await raise_alert(
        sqlite_store, sinks, "log_inconsistent:x", kind="log_inconsistent", summary="log forked", reason="root_mismatch"
    )

    await deliver_once(sqlite_store, sinks, http)

    header, _, facts, _ = receiver.requests[0].json()["blocks"]
    assert header["text"]["text"] == ":rotating_light: Transparency log is inconsistent (critical)"
    assert [f["text"] for f in facts["fields"]] == [
        f"*Log*\n{LOG_URL}",
        f"*Origin*\n{LOG['origin']}",
        "*Reason*\nroot_mismatch",
    ]


async def test_pagerduty_event_per_severity(
    sqlite_store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sinks = [sink(type="pagerduty", url=receiver.url("/v2/enqueue"), routing_key=ROUTING_KEY)]
    signing = signing_object()
    alerts = {
        severity: await raise_alert(sqlite_store, sinks, f"k:{severity}", severity=severity, signing=signing)
        for severity in ("critical", "warning", "info")
    }

    assert (await deliver_once(sqlite_store, sinks, http))[0] == 3

    events = {request.json()["dedup_key"]: request.json() for request in receiver.requests}
    for severity, alert in alerts.items():
        event = events[f"k:{severity}"]
        assert set(event) == {"routing_key", "event_action", "dedup_key", "client", "payload", "links"}
        assert event["routing_key"] == ROUTING_KEY
        assert event["event_action"] == "trigger"
        assert event["client"] == "rekorwatch"
        payload = event["payload"]
        assert payload["summary"] == alert.summary
        assert payload["source"] == "rekorwatch"
        assert payload["severity"] == severity
        assert payload["timestamp"] == iso(alert.created_at)
        assert payload["class"] == "unexpected_pipeline"
        assert (payload["group"], payload["component"]) == ("acme", "app/release")
        assert payload["custom_details"] == {
            "alert_id": str(alert.id),
            "dedup_key": f"k:{severity}",
            "kind": "unexpected_pipeline",
            "signing": signing,
            "log": LOG,
            "details": {},
        }
        assert event["links"] == [
            {"href": "https://g.codefresh.io/build/65f0c0ffee", "text": "CI run"},
            {"href": f"{LOG_URL}/api/v1/log/entries?logIndex=1234", "text": "Log entry"},
        ]
    assert {r.path for r in receiver.requests} == {"/v2/enqueue"}


def test_pagerduty_dedup_key_fits_its_limit() -> None:
    assert pagerduty_dedup_key("short") == "short"
    long_key = "log_inconsistent:" + "x" * 290
    hashed = pagerduty_dedup_key(long_key)
    assert hashed == "sha256:" + hashlib.sha256(long_key.encode()).hexdigest() and len(hashed) <= 255


async def test_log_sink_writes_one_line_at_the_alert_severity(sqlite_store: Store, http: aiohttp.ClientSession) -> None:
    sinks = [sink(type="log", name="audit")]
    alert = await raise_alert(sqlite_store, sinks, signing=signing_object())
    await raise_alert(sqlite_store, sinks, "renamed:1", kind="renamed", severity="info", summary="renamed")

    with capture_logs() as logs:
        assert (await deliver_once(sqlite_store, sinks, http))[0] == 2

    lines = {line["alert_id"]: line for line in logs if line["event"] == "alert"}
    assert lines[alert.id] == {
        "event": "alert",
        "log_level": "critical",
        "sink": "audit",
        "alert_id": alert.id,
        "dedup_key": alert.dedup_key,
        "kind": "unexpected_pipeline",
        "severity": "critical",
        "summary": alert.summary,
        "account": "acme",
        "pipeline": "app/release",
        "identity": signing_object()["identity"],
        "run_url": "https://g.codefresh.io/build/65f0c0ffee",
        "log_url": LOG_URL,
        "log_entry": f"{LOG_URL}/api/v1/log/entries?logIndex=1234",
    }
    assert [line["log_level"] for line in lines.values() if line["kind"] == "renamed"] == ["info"]


# routing and the outbox -------------------------------------------------------------------------------


async def test_severity_filters_make_exactly_the_right_rows(store: Store, http: aiohttp.ClientSession) -> None:
    async with running_receiver() as everything, running_receiver() as warnings, running_receiver() as pager:
        sinks = [
            sink(type="webhook", name="all", url=everything.url()),
            sink(type="webhook", name="warn", url=warnings.url(), min_severity="warning"),
            sink(type="pagerduty", url=pager.url(), routing_key=ROUTING_KEY, min_severity="critical"),
        ]
        info = await raise_alert(store, sinks, "i", severity="info")
        warning = await raise_alert(store, sinks, "w", severity="warning")
        critical = await raise_alert(store, sinks, "c", severity="critical")

        rows = await outbox.deliveries_for(store, [info.id, warning.id, critical.id, 999])
        assert {alert_id: sorted(r.sink for r in found) for alert_id, found in rows.items()} == {
            info.id: ["all"],
            warning.id: ["all", "warn"],
            critical.id: ["all", "pagerduty", "warn"],
            999: [],
        }
        assert await outbox.pending_count(store) == 6

        assert (await deliver_once(store, sinks, http))[0] == 6

    assert sorted(r.delivery_id for r in everything.requests) == sorted(str(a.id) for a in (info, warning, critical))
    assert sorted(r.delivery_id for r in warnings.requests) == sorted(str(a.id) for a in (warning, critical))
    assert [r.json()["dedup_key"] for r in pager.requests] == ["c"]
    assert await outbox.pending_count(store) == 0


async def test_an_event_is_alerted_once_across_restarts(database_url: str, store: Store) -> None:
    sinks = [sink(type="log")]
    first = await raise_alert(store, sinks, "same-event")
    restarted = Store.open(database_url)
    try:
        again = NewAlert("same-event", "unexpected_pipeline", "critical", "again", {"signing": None, "log": LOG})
        assert not await restarted.raise_alert(again, sinks=outbox_sinks(sinks))
        assert [a.id for a in await restarted.alerts()] == [first.id]
        assert len((await outbox.deliveries_for(restarted, [first.id]))[first.id]) == 1
    finally:
        await restarted.close()


async def test_a_sink_missing_from_the_config_fails_its_rows_until_it_is_back(
    store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    old = [sink(type="webhook", name="old", url=receiver.url()), sink(type="log")]
    alert = await raise_alert(store, old)

    delivered, results = await deliver_once(store, [sink(type="log")], http)

    assert delivered == 1 and sorted(results) == [("log", "delivered"), ("old", "failed")]
    rows = await deliveries(store, alert)
    assert (rows["old"].status, rows["old"].last_error, rows["old"].attempts) == (
        "failed",
        "sink no longer configured",
        0,
    )
    assert rows["log"].status == "delivered"
    assert receiver.requests == []

    assert await deliver_once(store, old, http) == (1, [("old", "delivered")])  # the sink is back
    rows = await deliveries(store, alert)
    assert (rows["old"].status, rows["old"].attempts) == ("delivered", 1)
    assert [r.delivery_id for r in receiver.requests] == [str(alert.id)]


async def test_an_answer_retrying_cannot_fix_waits_the_cap_and_stays_pending(
    store: Store, http: aiohttp.ClientSession
) -> None:
    async def bad_request(_: Received) -> web.StreamResponse:
        return web.Response(status=400, text="invalid_payload\n")

    async with running_receiver(bad_request) as slack:
        sinks = [sink(type="slack", url=slack.url(), backoff_cap="10m")]
        alert = await raise_alert(store, sinks)
        now = datetime.now(UTC)
        dispatcher = Dispatcher(store, sinks, http, backoff_base=1.0)
        assert await dispatcher.deliver_due(now) == 0

    [row] = (await deliveries(store, alert)).values()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 400: invalid_payload")
    assert row.next_attempt_at == now + timedelta(seconds=600)


async def test_an_unreadable_payload_parks_its_alert_and_stops_nothing(
    sqlite_store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sinks = [sink(type="webhook", url=receiver.url())]
    broken = await raise_alert(sqlite_store, sinks, "broken")
    fine = await raise_alert(sqlite_store, sinks, "fine")
    async with sqlite_store.sessions.begin() as session:
        await session.execute(update(AlertRow).where(AlertRow.id == broken.id).values(payload="{not json"))

    assert await Dispatcher(sqlite_store, sinks, http).deliver_due() == 1

    assert [r.delivery_id for r in receiver.requests] == [str(fine.id)]
    row = (await deliveries(sqlite_store, broken))["webhook"]
    assert row.status == "pending" and (row.last_error or "").startswith("internal error: JSONDecodeError")


async def test_an_unreachable_sink_keeps_its_alerts_pending(store: Store, http: aiohttp.ClientSession) -> None:
    async with running_receiver() as gone:
        url = gone.url()
    sinks = [sink(type="webhook", url=url)]
    alert = await raise_alert(store, sinks)

    assert (await deliver_once(store, sinks, http))[0] == 0

    [row] = (await deliveries(store, alert)).values()
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("ClientConnectorError: ")
    assert "/hook" not in row.last_error


async def test_the_run_loop_outlives_a_database_that_fails(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    unmigrated = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables: every pass fails
    stop = asyncio.Event()
    try:
        with capture_logs() as logs:
            running = asyncio.create_task(Dispatcher(unmigrated, [sink(type="log")], http).run(stop, interval=0.01))

            async def failed_twice() -> bool:
                return sum(line["event"] == "alert_dispatch_failed" for line in logs) >= 2

            await wait_until(failed_twice)
            stop.set()
            await running
    finally:
        await unmigrated.close()
    assert {line["error"] for line in logs if line["event"] == "alert_dispatch_failed"} == {"OperationalError"}


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 40):
        ceiling = min(900.0, 5.0 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, 5.0, 900.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert 450.0 <= retry_delay(10**6, 5.0, 900.0) <= 900.0


# outages, crashes, replicas --------------------------------------------------------------------------


@dataclass
class Flaky:
    """Answers 500, or too slowly, or 200, as the test switches it; remembers which mode met which alert."""

    mode: str = "500"
    timeout: float = 0.2
    met: list[tuple[str | None, str]] = field(default_factory=list)

    def each_alert_met(self, alerts: list[AlertRow], mode: str, times: int) -> bool:
        return all(self.met.count((str(alert.id), mode)) >= times for alert in alerts)

    async def __call__(self, received: Received) -> web.StreamResponse:
        self.met.append((received.delivery_id, self.mode))
        if self.mode == "500":
            return web.Response(status=500, text="upstream down")
        if self.mode == "slow":
            await asyncio.sleep(self.timeout * 3)
        return web.Response(status=200)


async def test_every_alert_arrives_once_after_an_outage(store: Store, http: aiohttp.ClientSession) -> None:
    """Errors, then timeouts, then the sink is back: each alert is delivered once, always with the same
    bytes. Time is compressed: each pass is 10 minutes (more than the backoff cap) after the last."""
    flaky = Flaky()
    async with running_receiver(flaky) as hook:
        sinks = [sink(type="webhook", url=hook.url(), secret=WEBHOOK_SECRET, timeout=flaky.timeout)]
        alerts = [await raise_alert(store, sinks, f"event-{i}") for i in range(3)]
        results: list[tuple[str, str]] = []
        dispatcher = Dispatcher(store, sinks, http, **FAST, on_result=lambda s, r: results.append((s, r)))
        now = datetime.now(UTC)

        async def pass_until(done: Callable[[], bool]) -> None:
            nonlocal now
            for _ in range(20):
                if done():
                    return
                await dispatcher.deliver_due(now)
                now += timedelta(minutes=10)
            raise AssertionError("not reached in 20 passes")

        await pass_until(lambda: flaky.each_alert_met(alerts, "500", 2))
        flaky.mode = "slow"
        await pass_until(lambda: flaky.each_alert_met(alerts, "slow", 2))
        assert (await deliveries(store, alerts[0]))["webhook"].status == "pending"
        flaky.mode = "200"
        assert await dispatcher.deliver_due(now) == 3
        assert await dispatcher.pending_count() == 0

    for alert in alerts:
        seen = [r for r in hook.requests if r.delivery_id == str(alert.id)]
        assert len(seen) >= 5
        assert len([r for r in seen if r.status == 200]) == 1
        assert {r.json()["id"] for r in seen} == {str(alert.id)}
        assert len({r.body for r in seen}) == 1 and len({r.headers["X-Rekorwatch-Signature"] for r in seen}) == 1
        row = (await deliveries(store, alert))["webhook"]
        assert row.status == "delivered" and row.attempts >= 5
        assert row.last_error in ("HTTP 500: upstream down", "timed out after 0.2s")
    assert results.count(("webhook", "delivered")) == 3
    assert results.count(("webhook", "error")) >= 12


CRASHING_DISPATCHER = """
import asyncio, sys
import aiohttp
from monitor.alerts.dispatcher import Dispatcher
from monitor.config import AlertSink
from monitor.store.repository import Store

async def main(database, url, secret):
    store = Store.open(database)
    sinks = [AlertSink.model_validate({"type": "webhook", "url": url, "secret": secret, "timeout": 0.5})]
    async with aiohttp.ClientSession() as session:
        await Dispatcher(store, sinks, session, lease_margin=0.2).deliver_due()
    sys.exit("the receiver should have killed this process")

asyncio.run(main(*sys.argv[1:]))
"""


async def test_kill_9_between_send_and_record_repeats_never_loses(
    database_url: str, store: Store, http: aiohttp.ClientSession
) -> None:
    dispatcher_started = asyncio.Event()
    child: list[asyncio.subprocess.Process] = []

    async def kill_sender_on_first_request(_: Received) -> web.StreamResponse:
        if child[0].returncode is None:  # the bytes arrived; the sender dies before it reads the answer
            await dispatcher_started.wait()
            os.kill(child[0].pid, signal.SIGKILL)
            await child[0].wait()
        return web.Response(status=200)

    async with running_receiver(kill_sender_on_first_request) as receiver:
        sinks = [sink(type="webhook", url=receiver.url(), secret=WEBHOOK_SECRET, timeout=0.5)]
        alert = await raise_alert(store, sinks)
        args = [database_url, receiver.url(), WEBHOOK_SECRET]
        child.append(await asyncio.create_subprocess_exec(sys.executable, "-c", CRASHING_DISPATCHER, *args))
        dispatcher_started.set()
        assert await asyncio.wait_for(child[0].wait(), 20) == -signal.SIGKILL

        [row] = (await deliveries(store, alert)).values()
        assert (row.status, row.attempts) == ("pending", 0)  # sent, never recorded

        restarted = Dispatcher(store, sinks, http, lease_margin=0.2)

        async def delivered() -> bool:
            return await restarted.deliver_due() == 1

        await wait_until(delivered)

    first, second = receiver.requests
    assert first.delivery_id == second.delivery_id == str(alert.id)
    assert first.body == second.body
    assert first.headers["X-Rekorwatch-Signature"] == second.headers["X-Rekorwatch-Signature"]
    [row] = (await deliveries(store, alert)).values()
    assert (row.status, row.attempts) == ("delivered", 1)


async def test_two_dispatchers_do_not_send_the_same_delivery(
    database_url: str, store: Store, http: aiohttp.ClientSession
) -> None:
    async def slow_ok(_: Received) -> web.StreamResponse:
        await asyncio.sleep(0.02)
        return web.Response(status=200)

    async with running_receiver(slow_ok) as hook:
        sinks = [sink(type="webhook", url=hook.url())]
        alerts = [await raise_alert(store, sinks, f"e{i}") for i in range(12)]
        replica = Store.open(database_url)
        try:
            first = Dispatcher(store, sinks, http, concurrency=2)
            second = Dispatcher(replica, sinks, http, concurrency=2)
            counts = await asyncio.gather(first.deliver_due(), second.deliver_due())
        finally:
            await replica.close()

    assert sum(counts) == 12
    assert sorted(int(r.delivery_id or 0) for r in hook.requests) == sorted(a.id for a in alerts)


def test_alert_message_keeps_extra_payload_keys_as_details() -> None:
    row = AlertRow(
        id=3,
        dedup_key="d",
        kind="log_inconsistent",
        severity="critical",
        summary="s",
        payload=json.dumps({"signing": None, "log": LOG, "reason": "fork", "detail": "two roots"}),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    message = AlertMessage.from_row(row)
    assert (message.signing, message.log, dict(message.details)) == (
        None,
        LOG,
        {"reason": "fork", "detail": "two roots"},
    )
    assert message.entry_url is None and message.log_url == LOG_URL
    assert message.webhook_body() == message.webhook_body()
