"""Certificates issued in a watched name that never signed anything in Rekor: `unlogged_certificate`.

Fulcio logs every certificate in CT before it issues it; cosign can sign without uploading to Rekor,
and verifiers that accept a timestamp authority never look there. So a watched certificate (any
verdict but `unwatched`/`untrusted`) still without a Rekor signing `ct_grace` after its CT timestamp
was, as far as anyone can tell, used quietly. The sweep reads that from the database (so it survives
restarts and replicas: a certificate is marked alerted in the alert's own transaction) and alerts
once per certificate: critical, or warning when its verdict is `expected` (an allowed pipeline that
signed without Rekor, or one whose signing is not read yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update

from monitor.contract import AlertKind, Severity, Verdict, certificate_key
from monitor.metrics import Metrics
from monitor.store.models import AlertRow, CertificateRow, LogRow, utcnow
from monitor.store.repository import NewAlert, Store, alert_payload
from monitor.supervisor import sleep_unless

log = structlog.get_logger(__name__)

NOT_ALERTED_VERDICTS = (Verdict.UNWATCHED, Verdict.UNTRUSTED)
SWEEP_BATCH = 100
MAX_SWEEP_SECONDS = 60.0


@dataclass
class UnloggedSweep:
    store: Store
    grace: float
    sinks: Sequence[tuple[str, str]] = ()
    metrics: Metrics | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep()
            await sleep_unless(stop, min(MAX_SWEEP_SECONDS, self.grace / 4))

    async def sweep(self, now: datetime | None = None) -> int:
        """Alert every certificate unlogged for longer than the grace; returns how many were alerted."""
        cutoff = (now or utcnow()) - timedelta(seconds=self.grace)
        alerted = 0
        while batch := await self._due(cutoff):
            alerted += len(await self._alert(batch))
        if self.metrics is not None:
            self.metrics.unlogged_certificates.set(await self._count(cutoff))
        return alerted

    async def _due(self, cutoff: datetime) -> list[tuple[CertificateRow, str, str]]:
        query = (
            select(CertificateRow, LogRow.origin, LogRow.api)
            .join(LogRow, LogRow.id == CertificateRow.log_id)
            .where(_unlogged(cutoff), CertificateRow.unlogged_alerted.is_(False))
            .order_by(CertificateRow.id)
            .limit(SWEEP_BATCH)
        )
        async with self.store.sessions() as session:
            return [(row, origin, api) for row, origin, api in (await session.execute(query)).all()]

    async def _alert(self, due: list[tuple[CertificateRow, str, str]]) -> list[AlertRow]:
        alerts = [_unlogged_alert(row, origin, api) for row, origin, api in due]
        async with self.store.sessions.begin() as session:
            await session.execute(
                update(CertificateRow)
                .where(CertificateRow.id.in_([row.id for row, _, _ in due]))
                .values(unlogged_alerted=True)
            )
            new = await self.store.insert_alerts(session, alerts, self.sinks)
        for alert in new:
            log.warning("unlogged_certificate", summary=alert.summary)
            if self.metrics is not None:
                self.metrics.alert_raised(alert.kind, alert.severity)
        return new

    async def _count(self, cutoff: datetime) -> int:
        async with self.store.sessions() as session:
            return int(await session.scalar(select(func.count()).where(_unlogged(cutoff))) or 0)


def _unlogged(cutoff: datetime):  # type: ignore[no-untyped-def]
    return (
        CertificateRow.signing_id.is_(None)
        & CertificateRow.verdict.not_in([verdict.value for verdict in NOT_ALERTED_VERDICTS])
        & (CertificateRow.ct_timestamp <= cutoff)
    )


def _unlogged_alert(row: CertificateRow, origin: str, api: str) -> NewAlert:
    kind = AlertKind.UNLOGGED_CERTIFICATE
    severity = Severity.WARNING if row.verdict == Verdict.EXPECTED else Severity.CRITICAL
    return NewAlert(
        dedup_key=certificate_key(kind, row.issuer_ca, row.serial),
        kind=kind,
        severity=severity,
        summary=f"unlogged certificate: {row.identity or 'unknown identity'} ({row.verdict}) was issued at "
        f"{row.ct_timestamp.isoformat(timespec='seconds')} and signed nothing in Rekor",
        payload={**alert_payload(row.log_url, origin, api, reason="no Rekor signing"), "certificate": row.as_object()},
        log_id=row.log_id,
        log_url=row.log_url,
    )
