"""The Codefresh build checker: takes queued checks, asks the builds API, keeps the outcome with the
signing and alerts, out of the tail's hot path (DESIGN.md "Certificate and build alerts").

A check queued with its signing (store/build_queue.py) is done after the commit. When the API is
down or refuses the key, the signing's `build_verified` stays null, nothing is alerted, and the check
is retried with backoff (doubling from a minute up to an hour, never sooner than a Retry-After), so a
key fixed or an API back heals every check still queued. An account whose key was removed from the
configuration has its checks dropped: no key, no question.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from monitor.codefresh_api import BuildCheck, BuildCheckTarget, BuildsClients, check_build
from monitor.contract import SEVERITY_OF, signing_key
from monitor.metrics import Metrics
from monitor.store import build_queue
from monitor.store.build_queue import BuildOutcome, ClaimedCheck
from monitor.store.models import iso, utcnow
from monitor.store.repository import NewAlert, Store, alert_payload
from monitor.supervisor import sleep_unless

log = structlog.get_logger(__name__)

LEASE = timedelta(minutes=2)
BACKOFF_BASE_SECONDS = 60.0
BACKOFF_CAP_SECONDS = 3600.0
CLAIM_BATCH = 10
IDLE_SECONDS = 1.0


@dataclass
class BuildChecker:
    store: Store
    clients: BuildsClients
    sinks: Sequence[tuple[str, str]] = ()
    metrics: Metrics | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.check_due():
                await sleep_unless(stop, IDLE_SECONDS)

    async def check_due(self, now: datetime | None = None) -> int:
        """One pass over the checks due now; returns how many were claimed."""
        moment = now or utcnow()
        claimed = await build_queue.claim_due(self.store, moment, moment + LEASE, CLAIM_BATCH)
        await asyncio.gather(*(self._check(item) for item in claimed))
        return len(claimed)

    async def drain(self) -> None:
        """Every check due now, then the ones that became due meanwhile (`run --once`); checks
        rescheduled for later (the API is down) are left for the next run."""
        started = utcnow()
        while await self.check_due(started):
            pass

    async def _check(self, claimed: ClaimedCheck) -> None:
        row = claimed.check
        target = BuildCheckTarget(row.account_id, row.platform_url, row.workflow_id, row.pipeline_id)
        check = await check_build(self.clients, target, row.not_before)
        if check is None:
            log.info("build_check_dropped", signing_id=row.signing_id, reason="the account has no api_key any more")
            await build_queue.drop(self.store, row.id)
            return
        self._count(check)
        if check.retry_later:
            delay = max(check.retry_after or 0.0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**row.attempts))
            await build_queue.reschedule(self.store, row.id, check.reason, utcnow() + timedelta(seconds=delay))
            return
        outcome = BuildOutcome(
            check.build_verified, check.status, check.created, check.finished, check.reason, utcnow()
        )
        new = await build_queue.finish(self.store, claimed, outcome, self._alert(claimed, check), self.sinks)
        for alert in new:
            if self.metrics is not None:
                self.metrics.alert_raised(alert.kind, alert.severity)
        log.info("build_checked", signing_id=row.signing_id, result=check.result, reason=check.reason)

    def _count(self, check: BuildCheck) -> None:
        if self.metrics is not None:
            self.metrics.build_checks.labels(result=check.result).inc()

    @staticmethod
    def _alert(claimed: ClaimedCheck, check: BuildCheck) -> NewAlert | None:
        if check.alert_kind is None:
            return None
        signing = claimed.signing
        build = {"status": check.status, "created": iso(check.created), "finished": iso(check.finished)}
        identity = signing.identity or "unknown identity"
        return NewAlert(
            dedup_key=signing_key(check.alert_kind, signing.log_url, signing.log_index, signing.certificate_sha256),
            kind=check.alert_kind,
            severity=SEVERITY_OF[check.alert_kind],
            summary=f"{check.alert_kind.replace('_', ' ')}: {identity} (log index {signing.log_index}): {check.reason}",
            payload={
                **alert_payload(signing.log_url, claimed.origin, claimed.api, reason=check.reason, build=build),
                "signing": signing.as_object()
                | {
                    "build_verified": check.build_verified,
                    "build_status": check.status,
                    "build_created": iso(check.created),
                    "build_finished": iso(check.finished),
                },
            },
            log_id=signing.log_id,
            signing_id=signing.id,
            log_url=signing.log_url,
        )
