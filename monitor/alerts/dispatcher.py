"""The alert dispatcher: reads due outbox rows, sends them, records the outcome. Never drops one.

Delivery is at least once. Each attempt is recorded right after its send; a crash in between
(kill -9, power loss) means the row is sent again once its lease runs out, with the same delivery id
(the alert id), so receivers de-duplicate. A failed attempt leaves the row `pending` and schedules
the next one with exponential backoff and jitter, capped, forever: a sink down for a day gets its
alerts when it is back (within one `backoff_cap`). An answer that retrying as is cannot fix (a 4xx,
e.g. a revoked Slack webhook) waits the full cap, so an operator who fixes the config sees it
delivered. Only a row whose sink is not configured becomes `failed`, and it is pending again when
its sink comes back (see store/outbox.py).

Each sink drains in its own lane, `concurrency` sends at a time, so a dead or slow receiver delays
only its own alerts; a lane stops for this pass at its first failing round.
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
from monitor.alerts.sinks import build_sink, scrub, secret_values
from monitor.config import AlertSink
from monitor.store import outbox
from monitor.store.models import utcnow
from monitor.store.repository import Store

log = structlog.get_logger(__name__)

ResultCallback = Callable[[str, str], None]
"""(sink name, result) with result `delivered`, `error` (an attempt failed, retried later) or `failed`
(abandoned: the sink is no longer configured); feeds alert_deliveries_total{sink,result}."""
ATTEMPT_FAILED = "error"
T = TypeVar("T")

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
    secrets: tuple[str, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return self.config.sink_name


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sinks: Sequence[AlertSink],
        session: aiohttp.ClientSession,
        *,
        backoff_base: float = 5.0,
        backoff_cap: float = 900.0,
        concurrency: int = 4,
        lease_margin: float = 30.0,
        on_result: ResultCallback | None = None,
    ) -> None:
        """`concurrency`: sends in flight per sink. A claimed row is leased for its sink's timeout plus
        `lease_margin`: long enough to record the outcome, short enough to resend soon after a crash."""
        self.store = store
        self.routes = [Route(config, build_sink(config, session), secret_values(config)) for config in sinks]
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.concurrency = concurrency
        self.lease_margin = lease_margin
        self.on_result = on_result

    async def deliver_due(self, now: datetime | None = None, stop: asyncio.Event | None = None) -> int:
        """One pass over every sink: send what is due (at `now`, default the clock) until nothing is
        due, a sink fails, or `stop` is set. Returns how many deliveries succeeded."""
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
                log.error("alert_dispatch_failed", error=type(exc).__name__, detail=str(exc)[:ERROR_LIMIT])
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

    async def _drain(self, route: Route, clock: Callable[[], datetime], stop: asyncio.Event | None) -> int:
        delivered = 0
        lease = timedelta(seconds=route.config.timeout + self.lease_margin)
        while stop is None or not stop.is_set():
            now = clock()
            claimed = await outbox.claim_due(self.store, route.name, now, now + lease, self.concurrency)
            outcomes = await _all_settled(self._deliver(route, delivery, clock) for delivery in claimed)
            delivered += sum(outcomes)
            if len(claimed) < self.concurrency or not all(outcomes):
                break
        return delivered

    async def _deliver(self, route: Route, delivery: outbox.ClaimedDelivery, clock: Callable[[], datetime]) -> bool:
        bound = log.bind(sink=route.name, alert_id=delivery.alert.id, attempt=delivery.attempts + 1)
        failure = await self._attempt(route, delivery)
        if failure is None:
            await outbox.record_delivered(self.store, delivery.id, clock())
            bound.info("alert_delivered")
            self._report(route.name, outbox.DELIVERED)
            return True
        error = scrub(failure.message, route.secrets)[:ERROR_LIMIT]
        attempt = delivery.attempts + 1
        delay = retry_delay(attempt, self.backoff_base, self.backoff_cap) if failure.retryable else self.backoff_cap
        await outbox.record_failure(self.store, delivery.id, error, clock() + timedelta(seconds=delay))
        bound.warning("alert_delivery_failed", error=error, retryable=failure.retryable, retry_in=round(delay, 2))
        self._report(route.name, ATTEMPT_FAILED)
        return False

    @staticmethod
    async def _attempt(route: Route, delivery: outbox.ClaimedDelivery) -> DeliveryError | None:
        """Send once; every way it can go wrong becomes a DeliveryError."""
        try:
            async with asyncio.timeout(route.config.timeout):
                await route.sink.send(AlertMessage.from_row(delivery.alert))
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"timed out after {route.config.timeout:g}s")
        except Exception as exc:  # a bug in one sink or one odd payload must not lose the alert
            return DeliveryError(f"internal error: {type(exc).__name__}: {exc}", retryable=False)
        return None

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
