"""The alert dispatcher: reads due outbox rows, sends them, records the outcome. Never drops one.

Delivery is at least once. Each attempt is recorded right after its send; a crash in between
(kill -9, power loss) means the row is sent again once its lease runs out, with the same delivery id
(the alert id), so receivers de-duplicate. A failed attempt leaves the row `pending` and schedules
the next one with exponential backoff and jitter, capped by the sink's `backoff_cap`, forever: a sink
down for a day gets its alerts when it is back. An answer that retrying as is cannot fix (a 4xx,
e.g. a revoked Slack webhook) waits the full cap, so an operator who fixes the config sees it
delivered. A `Retry-After` (429, 503) is a lower bound of the wait, up to the cap. Only a row whose
sink is not configured becomes `failed`, and it is pending again when its sink comes back (see
store/outbox.py).

Each sink drains in its own lane, `concurrency` sends at a time, so a dead or slow receiver delays
only its own alerts; a lane stops for this pass at its first failing round. A round in which every
send failed means the sink is down: its lane then waits (exponential backoff per sink, in memory,
at least any Retry-After) and probes with one delivery at a time, so an outage costs a few requests,
not one per alert and retry. The first success after failures makes the sink's
deliveries that wait out a backoff due at once: a sink that comes back is drained promptly.

Alertmanager lanes also re-send the lasting alerts (AlertKind.lasting) they delivered, every
`resend_interval` while the condition holds, then once with its resolution (alerts/alertmanager.py;
the schedule is kept in the outbox, store/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import aiohttp
import structlog

from monitor.alerts.delivery import DeliveryError, Sink
from monitor.alerts.message import AlertMessage
from monitor.alerts.secrets import Secrets, sink_secrets
from monitor.alerts.sinks import build_sink
from monitor.config import AlertSink
from monitor.contract import LASTING_KINDS
from monitor.store import outbox
from monitor.store.models import AlertRow, utcnow
from monitor.store.repository import Store

log = structlog.get_logger(__name__)

ResultCallback = Callable[[str, str], None]
"""(sink name, result) with result `delivered`, `error` (an attempt failed, retried later) or `failed`
(abandoned: the sink is no longer configured); feeds alert_deliveries_total{sink,result}."""
ATTEMPT_FAILED = "error"
T = TypeVar("T")
Clock = Callable[[], datetime]
Claim = Callable[[Store, str, datetime, datetime, int], Awaitable[list[outbox.ClaimedDelivery]]]

ERROR_LIMIT = 300
MAX_EXPONENT = 60


def outbox_sinks(configs: Iterable[AlertSink]) -> list[tuple[str, str]]:
    """(name, min_severity) of each configured sink: what the store needs to create delivery rows."""
    return [(config.sink_name, config.min_severity) for config in configs]


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempt` (1 = after the first failure): base·2^(attempt-1), capped,
    then jittered into its upper half so that a burst of failures does not retry in lockstep."""
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, MAX_EXPONENT))
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Route:
    config: AlertSink
    sink: Sink
    secrets: Secrets = field(repr=False)
    lease_margin: float = 30.0

    @property
    def name(self) -> str:
        return self.config.sink_name

    @property
    def lease(self) -> timedelta:
        """How long a claimed row is held: long enough to send and record, short enough to resend soon
        after a crash."""
        return timedelta(seconds=self.config.timeout + self.lease_margin)

    @property
    def resends(self) -> bool:
        """Whether lasting alerts are sent again while they hold (Alertmanager forgets them otherwise)."""
        return self.config.type == "alertmanager"

    def wait_after(self, failure: DeliveryError, backoff: float) -> float:
        """Seconds until a failed send is tried again: `backoff`, or the cap when retrying as is cannot
        help, at least the receiver's Retry-After, at most the sink's cap."""
        cap = self.config.backoff_cap
        wait = backoff if failure.retryable else cap
        return min(cap, max(wait, failure.retry_after or 0.0))


@dataclass(frozen=True)
class Outcome:
    """How one send went (a value, so that gathering sends never mistakes a failure for a crash)."""

    failure: DeliveryError | None = None


SENT = Outcome()


@dataclass(frozen=True)
class SinkHealth:
    """A lane's memory of its sink: rounds failed in a row, and until when to leave it alone."""

    failures: int = 0
    until: datetime | None = None

    def resting(self, now: datetime) -> bool:
        return self.until is not None and now < self.until


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sinks: Sequence[AlertSink],
        session: aiohttp.ClientSession,
        *,
        backoff_base: float = 5.0,
        concurrency: int = 4,
        lease_margin: float = 30.0,
        on_result: ResultCallback | None = None,
    ) -> None:
        """`concurrency`: sends in flight per sink. A claimed row is leased for its sink's timeout plus
        `lease_margin`."""
        self.store = store
        self.routes = [
            Route(config, build_sink(config, session), sink_secrets(config), lease_margin) for config in sinks
        ]
        self.backoff_base = backoff_base
        self.concurrency = concurrency
        self.on_result = on_result
        self.health: dict[str, SinkHealth] = {route.name: SinkHealth() for route in self.routes}

    async def deliver_due(self, now: datetime | None = None, stop: asyncio.Event | None = None) -> int:
        """One pass over every sink: send what is due (at `now`, default the clock) until nothing is
        due, a sink fails, or `stop` is set. Returns how many sends succeeded (re-sends included)."""
        clock = (lambda: now) if now is not None else utcnow
        await self._reconcile_sinks(clock())
        lanes = [self._drain(route, clock, stop) for route in self.routes]
        return sum(await _all_settled(lanes))

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Deliver every `interval` seconds until `stop` is set. A pass that fails (the database is down)
        is logged and retried on the next: the outbox keeps everything, so the loop must keep going."""
        while not stop.is_set():
            try:
                await self.deliver_due(stop=stop)
            except Exception as exc:
                # No traceback: a console renderer showing locals could print a sink's secret.
                log.error("alert_dispatch_failed", error=type(exc).__name__, detail=self._scrub_all(str(exc)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def pending_count(self) -> int:
        return await outbox.pending_count(self.store)

    async def pending_by_sink(self) -> dict[str, int]:
        return await outbox.pending_by_sink(self.store)

    async def _reconcile_sinks(self, now: datetime) -> None:
        """Rows of sinks not configured: failed, visibly; rows failed that way whose sink is back: pending."""
        names = [route.name for route in self.routes]
        for sink, count in (await outbox.fail_unconfigured(self.store, names)).items():
            log.warning("alert_deliveries_abandoned", sink=sink, count=count, reason=outbox.SINK_REMOVED)
            for _ in range(count):
                self._report(sink, outbox.FAILED)
        for sink, count in (await outbox.revive_configured(self.store, names, now)).items():
            log.info("alert_deliveries_revived", sink=sink, count=count)

    async def _drain(self, route: Route, clock: Clock, stop: asyncio.Event | None) -> int:
        """The new deliveries of one sink, then (Alertmanager) its re-sends, unless the sink fails."""
        delivered, healthy = await self._lane(route, clock, stop, outbox.claim_due, self._deliver)
        if healthy and route.resends:
            resent, _ = await self._lane(route, clock, stop, outbox.claim_resends, self._resend)
            delivered += resent
        return delivered

    async def _lane(
        self,
        route: Route,
        clock: Clock,
        stop: asyncio.Event | None,
        claim: Claim,
        send: Callable[[Route, outbox.ClaimedDelivery, Clock], Awaitable[Outcome]],
    ) -> tuple[int, bool]:
        """Rounds of claimed rows until none is due, a round has a failure, the sink rests, or `stop`.
        Returns how many sends succeeded, and whether none failed."""
        succeeded = 0
        while stop is None or not stop.is_set():
            now = clock()
            health = self.health[route.name]
            if health.resting(now):
                return succeeded, False
            limit = 1 if health.failures else self.concurrency
            claimed = await claim(self.store, route.name, now, now + route.lease, limit)
            if not claimed:
                break
            outcomes = await _all_settled(send(route, delivery, clock) for delivery in claimed)
            failures = [outcome.failure for outcome in outcomes if outcome.failure is not None]
            succeeded += len(claimed) - len(failures)
            await self._after_round(route, clock(), len(claimed) - len(failures), failures)
            if failures:
                return succeeded, False
            if len(claimed) < limit:
                break
        return succeeded, True

    async def _after_round(self, route: Route, now: datetime, successes: int, failures: list[DeliveryError]) -> None:
        """A round where every send failed makes the sink rest; the first round where every send
        succeeded after that makes its deliveries waiting out a backoff due now."""
        health = self.health[route.name]
        if successes == 0 and failures:
            count = health.failures + 1
            backoff = retry_delay(count, self.backoff_base, route.config.backoff_cap)
            rest = max(route.wait_after(failure, backoff) for failure in failures)
            self.health[route.name] = SinkHealth(count, now + timedelta(seconds=rest))
            log.warning("alert_sink_resting", sink=route.name, failed_rounds=count, retry_in=round(rest, 2))
            return
        if health.failures and not failures:
            revived = await outbox.make_due(self.store, route.name, now, now + route.lease)
            log.info("alert_sink_back", sink=route.name, failed_rounds=health.failures, due_now=revived)
        if not failures:
            self.health[route.name] = SinkHealth()

    async def _deliver(self, route: Route, delivery: outbox.ClaimedDelivery, clock: Clock) -> Outcome:
        """A first delivery: recorded delivered, or failed and scheduled again."""
        bound = log.bind(sink=route.name, alert_id=delivery.alert.id, attempt=delivery.attempts + 1)
        failure = await self._attempt(route, delivery.alert)
        if failure is None:
            now = clock()
            await outbox.record_delivered(self.store, delivery.id, now, self._next_resend(route, delivery.alert, now))
            bound.info("alert_delivered")
            self._report(route.name, outbox.DELIVERED)
            return SENT
        error = route.secrets.scrub(failure.message)[:ERROR_LIMIT]
        attempt = delivery.attempts + 1
        delay = route.wait_after(failure, retry_delay(attempt, self.backoff_base, route.config.backoff_cap))
        await outbox.record_failure(self.store, delivery.id, error, clock() + timedelta(seconds=delay))
        bound.warning("alert_delivery_failed", error=error, retryable=failure.retryable, retry_in=round(delay, 2))
        self._report(route.name, ATTEMPT_FAILED)
        return Outcome(failure)

    async def _resend(self, route: Route, delivery: outbox.ClaimedDelivery, clock: Clock) -> Outcome:
        """A lasting alert sent again (firing, or with its resolution), and its next re-send scheduled."""
        bound = log.bind(sink=route.name, alert_id=delivery.alert.id)
        failure = await self._attempt(route, delivery.alert)
        now = clock()
        if failure is None:
            await outbox.schedule_resend(self.store, delivery.id, self._next_resend(route, delivery.alert, now))
            bound.debug("alert_resent", resolved=delivery.alert.resolved_at is not None)
            self._report(route.name, outbox.DELIVERED)
            return SENT
        error = route.secrets.scrub(failure.message)[:ERROR_LIMIT]
        delay = route.wait_after(failure, route.config.resend_interval)
        await outbox.schedule_resend(self.store, delivery.id, now + timedelta(seconds=delay), error)
        bound.warning("alert_resend_failed", error=error, retry_in=round(delay, 2))
        self._report(route.name, ATTEMPT_FAILED)
        return Outcome(failure)

    @staticmethod
    def _next_resend(route: Route, alert: AlertRow, now: datetime) -> datetime | None:
        """When to send a delivered alert again: for a lasting one to Alertmanager, after an interval
        while it holds, never once its resolution went out (`resolved_at` marks that); else never."""
        if not (route.resends and alert.kind in LASTING_KINDS):
            return None
        if alert.resolved_at is not None:
            return alert.resolved_at
        return now + timedelta(seconds=route.config.resend_interval)

    @staticmethod
    async def _attempt(route: Route, alert: AlertRow) -> DeliveryError | None:
        """Send once; every way it can go wrong becomes a DeliveryError."""
        try:
            async with asyncio.timeout(route.config.timeout):
                await route.sink.send(AlertMessage.from_row(alert))
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"timed out after {route.config.timeout:g}s")
        except Exception as exc:  # a bug in one sink or one odd payload must not lose the alert
            return DeliveryError(f"internal error: {type(exc).__name__}: {exc}", retryable=False)
        return None

    def _scrub_all(self, text: str) -> str:
        for route in self.routes:
            text = route.secrets.scrub(text)
        return text[:ERROR_LIMIT]

    def _report(self, sink: str, result: str) -> None:
        if self.on_result is not None:
            self.on_result(sink, result)


async def _all_settled(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await all, concurrently; only then raise the first error. Sends already under way still get
    their outcome recorded when a sibling fails."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]
