"""Certificates issued in a watched name that never signed anything in Rekor: `unlogged_certificate`.

Fulcio logs every certificate in CT before it issues it; cosign can sign without uploading to Rekor,
and verifiers that accept a timestamp authority never look there. So a watched certificate (any
verdict but `unwatched`/`untrusted`) still without a Rekor signing `ct_grace` after its CT timestamp
was, as far as anyone can tell, used quietly. The sweep reads that from the database (so it survives
restarts and replicas: a certificate is marked alerted in the alert's own transaction) and alerts
once per certificate: critical, or warning when its verdict is `expected` (an allowed pipeline that
signed without Rekor).

"Still without a Rekor signing" is judged only as far as the Rekor logs are read: a certificate is
due once every Rekor log followed now was read through `ct_grace` after its CT timestamp (through:
all entries of a checkpoint verified then are committed). A restart after a day down reads CT in
seconds and Rekor in minutes; until Rekor is read that far, its signings may simply not be read yet,
and a log that lags, fails or is unreachable holds the sweep back instead of crying wolf (its own
alerts say why). With no Rekor log followed, the grace runs from now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update

from monitor.contract import AlertKind, Severity, Verdict, certificate_key
from monitor.metrics import Metrics
from monitor.store.models import AlertRow, CertificateRow, LogRow, SigningRow, utcnow
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
    rekor_logs: Callable[[], Collection[str]] = tuple
    """The URLs of the Rekor logs followed now."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep()
            await sleep_unless(stop, min(MAX_SWEEP_SECONDS, self.grace / 4))

    async def sweep(self, now: datetime | None = None) -> int:
        """Alert every certificate unlogged for longer than the grace; returns how many were alerted."""
        read_through = await self.rekor_read_through(now or utcnow())
        if read_through is None:
            return 0
        cutoff = read_through - timedelta(seconds=self.grace)
        await self._link_late_signings(cutoff)
        alerted = 0
        while batch := await self._due(cutoff):
            alerted += len(await self._alert(batch))
        if self.metrics is not None:
            self.metrics.unlogged_certificates.set(await self._count(cutoff))
        return alerted

    async def rekor_read_through(self, now: datetime) -> datetime | None:
        """Until when every Rekor log followed now is read (`now` when none is followed); None while
        one lags behind its newest verified checkpoint or was never read."""
        urls = list(self.rekor_logs())
        if not urls:
            return now
        query = select(LogRow).where(LogRow.url.in_(urls), LogRow.retired.is_(False))
        async with self.store.sessions() as session:
            shards = (await session.scalars(query)).all()
        if {shard.url for shard in shards} != set(urls):
            return None
        read_at = [
            shard.last_checkpoint_at
            for shard in shards
            if shard.last_checkpoint_at is not None and shard.shard_next >= shard.verified_size
        ]
        return min([now, *read_at]) if len(read_at) == len(shards) else None

    async def _link_late_signings(self, cutoff: datetime) -> None:
        """Link the due certificates whose signing is stored but not linked to them. Each side links
        at its commit to what is committed already, so a Rekor chunk and a CT chunk holding the same
        certificate, committed at the same moment (PostgreSQL commits them concurrently), each miss
        the other's row: without this, a certificate that did sign would be alerted as unlogged."""
        signing = (
            select(SigningRow.id)
            .where(
                SigningRow.issuer_ca == CertificateRow.issuer_ca,
                SigningRow.certificate_serial == CertificateRow.serial,
            )
            .order_by(SigningRow.id)
            .limit(1)
            .scalar_subquery()
        )
        async with self.store.sessions.begin() as session:
            await session.execute(
                update(CertificateRow)
                .where(_unlogged(cutoff), CertificateRow.unlogged_alerted.is_(False), signing.is_not(None))
                .values(signing_id=signing)
                .execution_options(synchronize_session=False)
            )

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
