"""Sinks that fail: Retry-After honoured and capped, the backoff cap per sink, a long outage that costs
a few probes rather than a storm, and a prompt drain when the sink is back. Time is compressed: the
dispatcher is given `now`, the receivers are real HTTP servers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from monitor.alerts.delivery import RETRY_AFTER_LIMIT, parse_retry_after
from monitor.alerts.dispatcher import Dispatcher
from monitor.store.repository import Store
from tests.alerting import Received, deliveries, open_store, raise_alert, running_receiver, sink

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
def t0() -> datetime:
    """The compressed clock's start: a little ahead, so that alerts raised by the test are due."""
    return datetime.now(UTC) + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("9" * 40, RETRY_AFTER_LIMIT),
        (format_datetime(NOW + timedelta(minutes=3), usegmt=True), 180.0),
        (format_datetime(NOW - timedelta(minutes=3), usegmt=True), 0.0),
        ("Sun, 01 Mar 2026 12:03:00 -0000", None),  # no zone: not an HTTP date
        ("-5", None),
        ("1.5", None),
        ("٣", None),  # a digit, but not an ASCII one
        ("soon", None),
        ("", None),
        ("x" * 5000, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_range_checked(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@dataclass
class Outage:
    """A receiver that is down (503, Retry-After) until told it is up."""

    up: bool = False
    retry_after: str | None = "30"

    async def __call__(self, _: Received) -> web.StreamResponse:
        if self.up:
            return web.Response(status=200)
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.Response(status=503, text="maintenance", headers=headers)


async def test_retry_after_is_a_lower_bound_for_the_row_and_the_sink(
    store: Store, http: aiohttp.ClientSession, t0: datetime
) -> None:
    outage = Outage(retry_after="120")
    async with running_receiver(outage) as hook:
        sinks = [sink(type="webhook", url=hook.url())]
        alert = await raise_alert(store, sinks)
        dispatcher = Dispatcher(store, sinks, http)
        assert await dispatcher.deliver_due(t0) == 0
        row = (await deliveries(store, alert))["webhook"]
        assert row.next_attempt_at == t0 + timedelta(seconds=120)
        assert row.last_error == "HTTP 503: maintenance"

        outage.up = True
        assert await dispatcher.deliver_due(t0 + timedelta(seconds=119)) == 0
        assert len(hook.requests) == 1
        assert await dispatcher.deliver_due(t0 + timedelta(seconds=120)) == 1


async def test_retry_after_beyond_the_cap_waits_the_cap(
    store: Store, http: aiohttp.ClientSession, t0: datetime
) -> None:
    async with running_receiver(Outage(retry_after="86400")) as hook:
        sinks = [sink(type="webhook", url=hook.url(), backoff_cap="90s")]
        alert = await raise_alert(store, sinks)
        assert await Dispatcher(store, sinks, http).deliver_due(t0) == 0
    assert (await deliveries(store, alert))["webhook"].next_attempt_at == t0 + timedelta(seconds=90)


async def test_a_retry_after_date_is_honoured(store: Store, http: aiohttp.ClientSession, t0: datetime) -> None:
    until = datetime.now(UTC) + timedelta(minutes=4)
    async with running_receiver(Outage(retry_after=format_datetime(until, usegmt=True))) as hook:
        sinks = [sink(type="webhook", url=hook.url())]
        alert = await raise_alert(store, sinks)
        assert await Dispatcher(store, sinks, http).deliver_due(t0) == 0
    wait = (await deliveries(store, alert))["webhook"].next_attempt_at - t0
    assert timedelta(minutes=3, seconds=50) < wait <= timedelta(minutes=4)


async def test_a_30_minute_outage_costs_a_few_probes_and_the_backlog_drains_at_once(
    store: Store, http: aiohttp.ClientSession, t0: datetime
) -> None:
    """40 alerts wait out a 30-minute outage (503, Retry-After: 30) with a dispatcher pass every 5
    seconds. Retrying each alert on its own backoff would cost about 40 x 11 failed POSTs; the sink's
    lane rests instead and probes with one alert. When it is back, the first success makes every
    waiting alert due: all are delivered in that same pass, each once."""
    outage = Outage()
    async with running_receiver(outage) as hook:
        sinks = [sink(type="webhook", url=hook.url(), backoff_cap="5m")]
        alerts = [await raise_alert(store, sinks, f"event-{i}") for i in range(40)]
        dispatcher = Dispatcher(store, sinks, http)
        probes: list[datetime] = []
        now = t0
        while now < t0 + timedelta(minutes=30):
            before = len(hook.requests)
            await dispatcher.deliver_due(now)
            probes += [now] * (len(hook.requests) - before)
            now += timedelta(seconds=5)

        assert 5 <= len(probes) <= 20, len(probes)
        gaps = [later - earlier for earlier, later in itertools.pairwise(probes) if later != earlier]
        assert min(gaps) >= timedelta(seconds=30)  # Retry-After
        assert max(gaps) <= timedelta(minutes=5, seconds=5)  # the cap (plus one pass)
        assert probes.count(t0) == 4  # one round at full concurrency found it down; then one at a time

        outage.up = True
        back, delivered = now, 0
        while delivered == 0:
            assert now <= back + timedelta(minutes=5, seconds=5), "the sink was not tried again within its cap"
            delivered = await dispatcher.deliver_due(now)
            now += timedelta(seconds=5)
        assert delivered == 40

    assert await dispatcher.pending_count() == 0
    succeeded = [r.delivery_id for r in hook.requests if r.status == 200]
    assert sorted(succeeded) == sorted(str(alert.id) for alert in alerts)


async def test_a_failing_alert_does_not_hold_up_the_others(
    store: Store, http: aiohttp.ClientSession, t0: datetime
) -> None:
    """An answer that rejects one alert (a 400) parks that alert for the cap; the rest go out."""
    poison: set[str] = set()

    async def picky(received: Received) -> web.StreamResponse:
        return web.Response(status=400 if received.delivery_id in poison else 200, text="invalid_payload")

    async with running_receiver(picky) as hook:
        sinks = [sink(type="webhook", url=hook.url(), backoff_cap="10m")]
        bad = await raise_alert(store, sinks, "bad")
        poison.add(str(bad.id))
        good = [await raise_alert(store, sinks, f"good-{i}") for i in range(6)]
        dispatcher = Dispatcher(store, sinks, http)
        delivered = 0
        for second in range(0, 30, 5):
            delivered += await dispatcher.deliver_due(t0 + timedelta(seconds=second))
        assert delivered == len(good)
        assert [r.delivery_id for r in hook.requests].count(str(bad.id)) == 1
    row = (await deliveries(store, bad))["webhook"]
    assert (row.status, row.next_attempt_at) == ("pending", t0 + timedelta(minutes=10))
