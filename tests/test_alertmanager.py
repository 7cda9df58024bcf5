"""The Alertmanager sink: one Alertmanager alert per rekorwatch alert, an explicit endsAt, lasting
conditions re-sent until resolved, entry links that answer; and end to end against a real
Alertmanager (Debian's prometheus-alertmanager; the test fails when it is missing, CI installs it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.alerts.alertmanager import EVENT_HOLD, alertmanager_alert
from monitor.alerts.dispatcher import Dispatcher
from monitor.alerts.message import AlertMessage
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.store.models import AlertRow, iso
from monitor.store.repository import Store
from tests.alerting import (
    LOG,
    LOG_URL,
    Receiver,
    deliveries,
    open_store,
    raise_alert,
    resolve,
    running_receiver,
    signing_object,
    sink,
    wait_until,
)

OTHER_LOG = {"url": "https://log2025-1.rekor.example.test", "origin": "log2025-1.rekor.example.test", "api": "tiles"}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")
    yield opened
    await opened.close()


def message(kind: str = "impersonation", **row: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "id": 5,
        "dedup_key": f"{kind}:x",
        "kind": kind,
        "severity": "critical",
        "summary": "s",
        "payload": json.dumps({"signing": signing_object(), "log": LOG}),
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return AlertMessage.from_row(AlertRow(**{**fields, **row}))


# payloads -------------------------------------------------------------------------------------------


def test_a_signing_alert_has_labels_of_its_own_and_ends_an_hour_after_it_is_sent() -> None:
    now = datetime(2026, 1, 2, 3, 10, tzinfo=UTC)
    document = alertmanager_alert(message(), now, resend_interval=60)
    entry = f"{LOG_URL}/api/v1/log/entries?logIndex=1234"
    assert document == {
        "labels": {
            "alertname": "rekorwatch_impersonation",
            "kind": "impersonation",
            "severity": "critical",
            "alert_id": "5",
            "log": LOG_URL,
            "account_id": "628a80b693a15c0f9c13ab75",
            "account": "acme",
            "pipeline": "app/release",
        },
        "annotations": {
            "summary": "s",
            "dedup_key": "impersonation:x",
            "identity": signing_object()["identity"],
            "run_url": "https://g.codefresh.io/build/65f0c0ffee",
            "log_entry": entry,
        },
        "startsAt": "2026-01-02T03:04:05Z",
        "endsAt": iso(now + EVENT_HOLD),
        "generatorURL": entry,
    }


def test_a_lasting_condition_ends_a_few_resends_ahead_or_when_it_was_resolved() -> None:
    log_alert = {"payload": json.dumps({"signing": None, "log": LOG, "reason": "root_mismatch"})}
    now = datetime(2026, 1, 2, 3, 10, tzinfo=UTC)
    holding = alertmanager_alert(message("log_inconsistent", **log_alert), now, resend_interval=60)
    assert holding["endsAt"] == "2026-01-02T03:14:00Z"
    assert holding["labels"] == {
        "alertname": "rekorwatch_log_inconsistent",
        "kind": "log_inconsistent",
        "severity": "critical",
        "alert_id": "5",
        "log": LOG_URL,
    }
    resolved_at = datetime(2026, 1, 2, 3, 7, tzinfo=UTC)
    over = alertmanager_alert(message("log_stalled", resolved_at=resolved_at, **log_alert), now, 60)
    assert over["endsAt"] == "2026-01-02T03:07:00Z"
    skewed = alertmanager_alert(
        message("log_stalled", resolved_at=datetime(2026, 1, 1, tzinfo=UTC), **log_alert), now, 60
    )
    assert skewed["endsAt"] == skewed["startsAt"]  # never before it started: Alertmanager would refuse it


def test_hostile_label_values_are_cut_and_the_body_stays_ascii() -> None:
    signing = signing_object(account_name="a" * 5000 + "\u202e", pipeline_name="p\ud800")
    row = {"payload": json.dumps({"signing": signing, "log": LOG})}
    document = alertmanager_alert(message(**row), datetime(2026, 1, 3, tzinfo=UTC), 60)
    assert len(document["labels"]["account"]) == 256 and document["labels"]["account"].endswith("…")
    assert json.dumps([document]).isascii()


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ("v1", "https://log.example/api/v1/log/entries?logIndex=1234567"),
        ("tiles", "https://log.example/tile/entries/x004/822"),
        ("rfc6962", None),
        (None, None),
    ],
)
def test_the_entry_link_follows_the_log_api(api: str | None, expected: str | None) -> None:
    log = {"url": "https://log.example", "origin": "log.example"} | ({"api": api} if api else {})
    signing = signing_object(log_url="https://log.example", log_index=1234567)
    assert message(payload=json.dumps({"signing": signing, "log": log})).entry_url == expected


@pytest.mark.parametrize("api", ["v1", "tiles"])
async def test_the_entry_link_answers(api: str, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """On a real (simulated) log of each API, the link of an entry is served; on a tiles log, the v1
    link that rekorwatch used to send is not."""
    running: RunningSimulator = await start_simulator(directory=tmp_path / api, api=api)
    try:
        index = (await running.simulator.append_unwatched(600))[300]  # its bundle (256..511) is full
        signing = signing_object(log_url=running.url, log_index=index)
        payload = json.dumps({"signing": signing, "log": {"url": running.url, "origin": "o", "api": api}})
        link = message(payload=payload).entry_url
        assert link is not None
        async with http.get(link) as answer:
            assert answer.status == 200
        if api == "tiles":
            async with http.get(f"{running.url}/api/v1/log/entries?logIndex={index}") as answer:
                assert answer.status == 404
    finally:
        await running.stop()


# re-sends, against a local receiver standing in for Alertmanager ------------------------------------


def sent_to_alertmanager(receiver: Receiver) -> list[dict[str, Any]]:
    documents = []
    for request in receiver.requests:
        assert request.path == "/am/api/v2/alerts"
        [document] = request.json()
        documents.append(document)
    return documents


async def test_a_lasting_alert_is_resent_while_it_holds_then_once_resolved(
    store: Store, http: aiohttp.ClientSession
) -> None:
    """Compressed time. Re-sends go to Alertmanager sinks only, follow the schedule kept in the
    database (a restarted dispatcher keeps it), and stop after the resolution went out."""
    async with running_receiver() as am, running_receiver() as hook:
        sinks = [
            sink(type="alertmanager", url=am.url("/am"), resend_interval="1m"),
            sink(type="webhook", url=hook.url()),
        ]
        lasting = await raise_alert(store, sinks, "inc", kind="log_inconsistent", summary="forked")
        event = await raise_alert(store, sinks, "imp", kind="impersonation", signing=signing_object())
        t0 = datetime.now(UTC)
        dispatcher = Dispatcher(store, sinks, http)

        assert await dispatcher.deliver_due(t0) == 4
        assert await dispatcher.deliver_due(t0 + timedelta(seconds=59)) == 0
        assert await dispatcher.deliver_due(t0 + timedelta(seconds=61)) == 1
        restarted = Dispatcher(store, sinks, http)
        assert await restarted.deliver_due(t0 + timedelta(seconds=90)) == 0
        assert await restarted.deliver_due(t0 + timedelta(seconds=122)) == 1
        resolved_at = await resolve(store, lasting, t0 + timedelta(seconds=150))
        assert await restarted.deliver_due(t0 + timedelta(seconds=183)) == 1
        assert await restarted.deliver_due(t0 + timedelta(hours=10)) == 0

    by_alert: dict[str, list[dict[str, Any]]] = {}
    for document in sent_to_alertmanager(am):
        by_alert.setdefault(document["labels"]["alert_id"], []).append(document)
    assert len(by_alert[str(event.id)]) == 1
    sends = by_alert[str(lasting.id)]
    assert len(sends) == 4
    assert {json.dumps(d["labels"], sort_keys=True) for d in sends} == {json.dumps(sends[0]["labels"], sort_keys=True)}
    for firing in sends[:3]:  # each firing send ends 4 intervals after it was made (on the wall clock)
        assert datetime.fromisoformat(firing["endsAt"]) > datetime.now(UTC) + timedelta(minutes=3)
    assert sends[3]["endsAt"] == iso(resolved_at)
    assert sorted(r.delivery_id for r in hook.requests) == sorted([str(lasting.id), str(event.id)])
    row = (await deliveries(store, lasting))["alertmanager"]
    assert (row.status, row.attempts, row.next_attempt_at) == ("delivered", 1, resolved_at)


async def test_a_lasting_alert_resolved_before_its_first_delivery_is_sent_once_resolved(
    sqlite_store: Store, http: aiohttp.ClientSession
) -> None:
    async with running_receiver() as am:
        sinks = [sink(type="alertmanager", url=am.url("/am"))]
        stalled = await raise_alert(sqlite_store, sinks, "st", kind="log_stalled", severity="warning", summary="s")
        resolved_at = await resolve(sqlite_store, stalled, datetime.now(UTC))
        dispatcher = Dispatcher(sqlite_store, sinks, http)
        assert await dispatcher.deliver_due() == 1
        assert await dispatcher.deliver_due(datetime.now(UTC) + timedelta(days=1)) == 0
    [document] = sent_to_alertmanager(am)
    assert document["endsAt"] == iso(resolved_at)


async def test_a_dead_alertmanager_delays_neither_other_sinks_nor_loses_its_resends(
    sqlite_store: Store, http: aiohttp.ClientSession
) -> None:
    async with running_receiver() as gone:
        dead_url = gone.url("/am")
    async with running_receiver() as am, running_receiver() as hook:
        alive = [
            sink(type="alertmanager", url=am.url("/am"), resend_interval="1m"),
            sink(type="webhook", url=hook.url()),
        ]
        lasting = await raise_alert(sqlite_store, alive, "inc", kind="log_inconsistent", summary="forked")
        t0 = datetime.now(UTC)
        assert await Dispatcher(sqlite_store, alive, http).deliver_due(t0) == 2

        dead = [sink(type="alertmanager", url=dead_url, resend_interval="1m"), alive[1]]
        later = await raise_alert(sqlite_store, dead, "imp", kind="impersonation", signing=signing_object())
        dispatcher = Dispatcher(sqlite_store, dead, http)
        assert await dispatcher.deliver_due(t0 + timedelta(seconds=61)) == 1  # the webhook's
        assert [r.delivery_id for r in hook.requests] == [str(lasting.id), str(later.id)]
        row = (await deliveries(sqlite_store, lasting))["alertmanager"]
        assert row.status == "delivered" and row.last_error is None  # the new alert failed first: resting
        assert row.next_attempt_at <= t0 + timedelta(seconds=61)  # still due: it goes out when the sink is back

        back = Dispatcher(sqlite_store, alive, http)
        assert await back.deliver_due(t0 + timedelta(seconds=70)) == 2  # the new alert and the re-send
    assert sorted(d["labels"]["alert_id"] for d in sent_to_alertmanager(am)) == sorted(
        [str(lasting.id), str(lasting.id), str(later.id)]
    )


# end to end, with a real Alertmanager ---------------------------------------------------------------


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager; .ci/run does it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Alertmanager:
    """A real Alertmanager process on a free port, notifying a local webhook for every alert."""

    binary: str
    directory: Path
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, webhook: str) -> None:
        config = {
            "route": {
                "receiver": "rekorwatch-test",
                "group_by": ["alert_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "rekorwatch-test", "webhook_configs": [{"url": webhook, "send_resolved": True}]}],
        }
        (self.directory / "alertmanager.yml").write_text(yaml.safe_dump(config))

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            f"--config.file={self.directory / 'alertmanager.yml'}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.directory / "alertmanager.log").open("ab"),
        )

        async def ready() -> bool:
            assert self.process is not None and self.process.returncode is None, "Alertmanager exited"
            try:
                async with http.get(f"{self.url}/-/ready") as answer:
                    return answer.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, seconds=15)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 15)

    async def alerts(self, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        """The alerts it holds now (active or not yet cleaned up), by rekorwatch alert id."""
        async with http.get(f"{self.url}/api/v2/alerts") as answer:
            assert answer.status == 200
            return {alert["labels"]["alert_id"]: alert for alert in await answer.json()}


@asynccontextmanager
async def running_alertmanager(
    tmp_path: Path, webhook: str, http: aiohttp.ClientSession
) -> AsyncIterator[Alertmanager]:
    manager = Alertmanager(alertmanager_binary(), tmp_path, free_port())
    manager.write_config(webhook)
    await manager.start(http)
    try:
        yield manager
    finally:
        await manager.stop()


def notified(receiver: Receiver) -> list[tuple[str, str, dict[str, Any]]]:
    """(alert id, status, alert) of every alert in every webhook notification, in order."""
    seen = []
    for request in receiver.requests:
        body = request.json()
        assert len(body["alerts"]) == 1, "grouped by alert_id: one alert per notification"
        seen += [(alert["labels"]["alert_id"], alert["status"], alert) for alert in body["alerts"]]
    return seen


async def test_end_to_end_with_a_real_alertmanager(
    tmp_path: Path, sqlite_store: Store, http: aiohttp.ClientSession
) -> None:
    async with running_receiver() as webhook, running_alertmanager(tmp_path, webhook.url("/notify"), http) as am:
        sinks = [sink(type="alertmanager", url=am.url, resend_interval="1s", timeout="3s")]
        signings = [
            signing_object(id=1, log_url=LOG_URL, log_index=10),
            signing_object(id=2, log_url=OTHER_LOG["url"], log_index=10),
            signing_object(id=3, log_url=LOG_URL, log_index=11, account_id="5f00000000000000000000aa"),
        ]
        logs = [LOG, OTHER_LOG, LOG]
        events = [
            await raise_alert(
                sqlite_store, sinks, f"imp:{i}", kind="impersonation", signing=s, log=log, summary=f"s{i}"
            )
            for i, (s, log) in enumerate(zip(signings, logs, strict=True))
        ]
        forked = await raise_alert(sqlite_store, sinks, "inc", kind="log_inconsistent", summary="forked")
        stalled = await raise_alert(
            sqlite_store, sinks, "st", kind="log_stalled", severity="warning", summary="stalled", log=OTHER_LOG
        )
        ids = {str(alert.id): alert for alert in [*events, forked, stalled]}
        stop = asyncio.Event()
        dispatching = asyncio.create_task(Dispatcher(sqlite_store, sinks, http).run(stop, interval=0.2))
        try:
            # every alert its own Alertmanager alert and notification, with its own annotations
            await wait_until(lambda: {i for i, status, _ in notified(webhook) if status == "firing"} == set(ids), 15)
            for alert_id, _, alert in notified(webhook):
                assert alert["annotations"]["summary"] == ids[alert_id].summary
            held = await am.alerts(http)
            assert set(held) == set(ids)
            sent_by = datetime.now(UTC)
            for event in events:  # a signing event ends an hour after it was sent
                ends = datetime.fromisoformat(held[str(event.id)]["endsAt"])
                assert sent_by + EVENT_HOLD - timedelta(minutes=1) < ends <= sent_by + EVENT_HOLD
            first_end = datetime.fromisoformat(held[str(forked.id)]["endsAt"])
            assert first_end <= sent_by + timedelta(seconds=5)

            # past the end of the first send, the lasting alerts are still firing: they were re-sent
            await asyncio.sleep(5.5)
            held = await am.alerts(http)
            for lasting in (forked, stalled):
                assert held[str(lasting.id)]["status"]["state"] == "active"
                assert datetime.fromisoformat(held[str(lasting.id)]["endsAt"]) > first_end
            assert not [n for n in notified(webhook) if n[1] == "resolved"]

            # Alertmanager restarts and forgets everything: the lasting alerts come back
            await am.stop()
            await am.start(http)

            async def lasting_back() -> bool:
                return {str(forked.id), str(stalled.id)} <= set(await am.alerts(http))

            await wait_until(lasting_back, 10)

            # the fork is resolved: notified as such, with its resolution time; the stall still fires
            resolved_at = await resolve(sqlite_store, forked, datetime.now(UTC))
            await wait_until(lambda: (str(forked.id), "resolved") in {n[:2] for n in notified(webhook)}, 10)
            [(_, _, resolution)] = [n for n in notified(webhook) if n[:2] == (str(forked.id), "resolved")]
            assert abs(datetime.fromisoformat(resolution["endsAt"]) - resolved_at) < timedelta(seconds=1), (
                "to the second, as every time rekorwatch writes"
            )
            await asyncio.sleep(2.5)
            held = await am.alerts(http)
            assert held[str(stalled.id)]["status"]["state"] == "active"
            if str(forked.id) in held:  # kept a while as resolved, never firing again
                assert datetime.fromisoformat(held[str(forked.id)]["endsAt"]) <= datetime.now(UTC)
            assert (await deliveries(sqlite_store, forked))["alertmanager"].next_attempt_at == resolved_at
        finally:
            stop.set()
            await dispatching
