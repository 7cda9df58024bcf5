"""The store: every read and write the daemon, the CLI and the API make. Passive: it never calls up."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from monitor.contract import LASTING_KINDS, AlertKind, LogState, Severity
from monitor.store.db import create_engine
from monitor.store.models import (
    AlertDeliveryRow,
    AlertRow,
    BuildCheckRow,
    CertificateRow,
    CheckpointRow,
    EntryErrorRow,
    LogRow,
    NewSigning,
    SigningRow,
    utcnow,
)


def alert_payload(url: str, origin: str, api: str, **details: Any) -> dict[str, Any]:
    """Every alert's payload: the log it is about, and the signing (null for log alerts; filled in
    by `commit_batch` once the signing has its id). The sinks read it back (alerts/message.py)."""
    return {"signing": None, "log": {"url": url, "origin": origin, "api": api}, **details}


@dataclass(frozen=True)
class NewAlert:
    dedup_key: str
    kind: str
    severity: str
    summary: str
    payload: dict[str, Any]
    log_id: int | None = None
    signing_id: int | None = None
    log_url: str | None = None


@dataclass(frozen=True)
class SignedAlert:
    """A signing, the alert it raises and the build check it needs (if any): stored together, the
    alert and the check pointing at it."""

    signing: NewSigning
    alert: NewAlert | None
    build_check: BuildCheckRow | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate seen in a CT log and the alert it raises (if any), stored together."""

    certificate: CertificateRow
    alert: NewAlert | None


class CursorStopped(Exception):
    """The log was found inconsistent (by gossip, or by another replica) while a chunk was read: the
    chunk is not committed, and the shard's cursor stays where the alert stopped it."""

    def __init__(self, log_id: int) -> None:
        super().__init__(f"log {log_id} was found inconsistent: its cursor is stopped")


@dataclass(frozen=True)
class EntryError:
    log_index: int
    reason: str
    detail: str


@dataclass
class Batch:
    """Everything verified chunks of a log produce (one, or several in a row: `absorb`), committed in
    ONE transaction with the cursor."""

    log_id: int
    expected_next: int
    next_index: int
    compact_range: bytes
    retired: bool = False
    read_rate: float | None = None
    """Entries per second of the catch-up, over its last half minute (for `status`)."""
    signings: list[SignedAlert] = field(default_factory=list)
    certificates: list[IssuedCertificate] = field(default_factory=list)
    errors: list[EntryError] = field(default_factory=list)
    alerts: list[NewAlert] = field(default_factory=list)

    def absorb(self, later: Batch) -> None:
        """Take the next chunk's batch in: its rows, and the cursor moving to its end."""
        self.signings += later.signings
        self.certificates += later.certificates
        self.errors += later.errors
        self.alerts += later.alerts
        self.next_index, self.compact_range, self.retired = later.next_index, later.compact_range, later.retired


@dataclass(frozen=True)
class VerifiedCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    origin: str
    cosigners: tuple[tuple[str, int], ...] | None = None
    """(witness name, timestamp) of the policy witnesses that cosigned it; None: the log has no policy."""

    def cosigners_json(self) -> str | None:
        if self.cosigners is None:
            return None
        return json.dumps([{"name": name, "timestamp": timestamp} for name, timestamp in self.cosigners])


LOCK_CHECK_SECONDS = 5.0


class Store:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._lock_connections: dict[str, AsyncConnection] = {}

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(create_engine(url))

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for connection in self._lock_connections.values():
            await _close_quietly(connection)
        self._lock_connections.clear()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a stream of reads, each its own statement (autocommit): no transaction
        is held open between them, and none costs the round trips of a BEGIN and a ROLLBACK."""
        async with self.engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def hold_log_lock(self, url: str) -> bool:
        """Whether this process may tail `url`. On PostgreSQL, one replica at a time holds a session
        advisory lock per log on a connection of its own; when it dies, the connection and the lock
        go, and another replica takes over at its next try. A held lock is checked on every call: if
        its connection dropped (a database restart, a cut connection), the lock went with it, so this
        replica lets go and competes again. SQLite has a single writer: always True.
        """
        if self.engine.dialect.name != "postgresql":
            return True
        held = self._lock_connections.get(url)
        if held is not None:
            if await _answers(held):
                return True
            del self._lock_connections[url]
            await _close_quietly(held)
        connection = await self.engine.connect()
        key = int.from_bytes(hashlib.sha256(f"rekorwatch-log:{url}".encode()).digest()[:8], "big", signed=True)
        try:
            held = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
            await connection.commit()
        except BaseException:
            await connection.close()
            raise
        if held:
            self._lock_connections[url] = connection
        else:
            await connection.close()
        return held

    # logs -------------------------------------------------------------------------------------

    async def logs(self, url: str | None = None) -> list[LogRow]:
        """Every log/shard row (or those of one URL), oldest shard first."""
        query = select(LogRow).order_by(LogRow.url, LogRow.shard_offset, LogRow.id)
        if url is not None:
            query = query.where(LogRow.url == url)
        async with self.sessions() as session:
            return list((await session.scalars(query)).all())

    async def add_log(self, row: LogRow) -> LogRow:
        async with self.sessions.begin() as session:
            session.add(row)
        return row

    async def set_announced(self, log_id: int, tree_size: int) -> None:
        """The size of a checkpoint whose signature verified but that is not accepted (yet)."""
        async with self.sessions.begin() as session:
            await session.execute(update(LogRow).where(LogRow.id == log_id).values(tree_size=tree_size))

    async def save_checkpoint(self, log_id: int, checkpoint: VerifiedCheckpoint, announced: int) -> None:
        """Record a checkpoint that verified (signature and consistency) as the log's newest. The log's
        state is not touched: an inconsistency found meanwhile (by gossip) stands."""
        now = utcnow()
        async with self.sessions.begin() as session:
            await session.execute(
                update(LogRow)
                .where(LogRow.id == log_id)
                .values(
                    origin=checkpoint.origin,
                    cosigners=checkpoint.cosigners_json(),
                    tree_size=announced,
                    verified_size=checkpoint.tree_size,
                    verified_root=checkpoint.root_hash.hex(),
                    last_checkpoint=checkpoint.note,
                    last_checkpoint_at=now,
                )
            )
            exists = await session.scalar(
                select(CheckpointRow.id).where(
                    CheckpointRow.log_id == log_id, CheckpointRow.tree_size == checkpoint.tree_size
                )
            )
            if exists is None:
                session.add(
                    CheckpointRow(
                        log_id=log_id,
                        tree_size=checkpoint.tree_size,
                        root_hash=checkpoint.root_hash.hex(),
                        note=checkpoint.note,
                        verified_at=now,
                        cosigners=checkpoint.cosigners_json(),
                    )
                )

    async def commit_batch(self, batch: Batch, sinks: Sequence[tuple[str, str]] = ()) -> list[AlertRow]:
        """Store a chunk's signings, errors and alerts (with one outbox row per matching sink) and
        move the cursor, atomically. Refuses (CursorStopped) if the log was found inconsistent
        meanwhile (by gossip, or by another replica), and (RuntimeError) if the cursor moved.

        `sinks` are (name, min_severity) pairs. Returns the alerts that were new.
        """
        async with self.sessions.begin() as session:
            logs = LogRow.__table__.c  # Core, not the ORM's bulk update: a quarter of a chunk's commit
            result = await session.execute(
                update(LogRow.__table__)
                .where(
                    logs.id == batch.log_id,
                    logs.next_index == batch.expected_next,
                    logs.state != LogState.INCONSISTENT,
                )
                .values(
                    next_index=batch.next_index,
                    compact_range=batch.compact_range,
                    retired=batch.retired,
                    read_rate=batch.read_rate,
                )
            )
            if result.rowcount != 1:
                state = await session.scalar(select(LogRow.state).where(LogRow.id == batch.log_id))
                if state == LogState.INCONSISTENT:
                    raise CursorStopped(batch.log_id)
                raise RuntimeError(f"cursor of log {batch.log_id} moved under us (expected {batch.expected_next})")
            alerts = list(batch.alerts)
            if batch.signings:
                await _insert_signings(session, [item.signing for item in batch.signings])
                for item in batch.signings:
                    if item.build_check is not None:
                        item.build_check.signing_id = item.signing.id
                        session.add(item.build_check)
                alerts += [
                    replace(
                        item.alert,
                        signing_id=item.signing.id,
                        payload={**item.alert.payload, "signing": item.signing.as_object()},
                    )
                    for item in batch.signings
                    if item.alert is not None
                ]
            if batch.signings:
                await _link_certificates_to(session, [item.signing for item in batch.signings])
            if batch.certificates:
                alerts += await _add_certificates(session, batch.certificates)
            session.add_all(
                EntryErrorRow(log_id=batch.log_id, log_index=e.log_index, reason=e.reason, detail=e.detail)
                for e in batch.errors
            )
            new_alerts = await self.insert_alerts(session, alerts, sinks)
        return new_alerts

    async def mark_state(self, url: str, state: LogState, detail: str | None) -> None:
        """`ok`, `unreachable` or `error` for every shard of a log; an inconsistent shard stays so."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(LogRow)
                .where(LogRow.url == url, LogRow.state != LogState.INCONSISTENT, LogRow.state != state)
                .values(state=state, state_detail=detail)
            )

    async def mark_inconsistent(
        self, log_id: int, detail: str, alert: NewAlert, sinks: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Stop the log's cursor and raise the alert, in one transaction; True if the alert is new."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(LogRow).where(LogRow.id == log_id).values(state=LogState.INCONSISTENT, state_detail=detail)
            )
            return bool(await self.insert_alerts(session, [alert], sinks))

    async def reset_log(self, url: str, alert: NewAlert, sinks: Sequence[tuple[str, str]] = ()) -> int:
        """An operator accepts a log's history as it is now: every inconsistent shard of `url` forgets
        its verified checkpoint and compact range (the next cycle trusts the log's newest checkpoint
        again and re-bootstraps at the cursor), the log_inconsistent alerts are resolved, and the reset
        is recorded as an alert of its own. Returns how many shards were reset."""
        now = utcnow()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(LogRow)
                .where(LogRow.url == url, LogRow.state == LogState.INCONSISTENT)
                .values(
                    state=LogState.OK,
                    state_detail=None,
                    verified_size=0,
                    verified_root=None,
                    last_checkpoint=None,
                    compact_range=b"",
                )
            )
            if not result.rowcount:
                return 0
            await session.execute(
                update(AlertRow)
                .where(AlertRow.kind == AlertKind.LOG_INCONSISTENT, AlertRow.log_url == url)
                .where(AlertRow.resolved_at.is_(None))
                .values(resolved_at=now)
            )
            await self.insert_alerts(session, [alert], sinks)
            return result.rowcount

    async def open_alert_exists(self, kind: AlertKind, log_url: str) -> bool:
        """Whether a lasting condition of `kind` is alerted for the log and not resolved yet."""
        async with self.sessions() as session:
            found = await session.scalar(
                select(AlertRow.id)
                .where(AlertRow.kind == kind, AlertRow.log_url == log_url, AlertRow.resolved_at.is_(None))
                .limit(1)
            )
        return found is not None

    async def resolve_alerts(self, kind: AlertKind, log_url: str) -> int:
        """The lasting condition `kind` of a log cleared: its open alerts get their resolved_at."""
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(AlertRow)
                .where(AlertRow.kind == kind, AlertRow.log_url == log_url, AlertRow.resolved_at.is_(None))
                .values(resolved_at=utcnow())
            )
            return result.rowcount

    async def resolve_conditions_of_unfollowed_logs(self, followed_urls: Collection[str]) -> int:
        """Open lasting alerts of logs no longer followed are resolved: no one will ever clear them.
        `log_inconsistent` stays open: evidence of a forked log is closed by `rekorwatch log reset`."""
        kinds = [kind for kind in LASTING_KINDS if kind is not AlertKind.LOG_INCONSISTENT]
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(AlertRow)
                .where(AlertRow.kind.in_(kinds), AlertRow.resolved_at.is_(None))
                .where(AlertRow.log_url.is_not(None), AlertRow.log_url.not_in(list(followed_urls)))
                .values(resolved_at=utcnow())
            )
            return result.rowcount

    # alerts -----------------------------------------------------------------------------------

    async def insert_alerts(
        self, session: AsyncSession, alerts: Sequence[NewAlert], sinks: Sequence[tuple[str, str]] = ()
    ) -> list[AlertRow]:
        """Insert alerts whose dedup_key is new (an event already raised is not repeated), each with
        a pending delivery per sink whose min_severity it reaches."""
        if not alerts:
            return []
        keys = [alert.dedup_key for alert in alerts]
        known = set((await session.scalars(select(AlertRow.dedup_key).where(AlertRow.dedup_key.in_(keys)))).all())
        rows = []
        for alert in alerts:
            if alert.dedup_key in known:
                continue
            known.add(alert.dedup_key)
            row = AlertRow(
                dedup_key=alert.dedup_key,
                kind=alert.kind,
                severity=alert.severity,
                summary=alert.summary,
                payload=json.dumps(alert.payload, sort_keys=True),
                log_id=alert.log_id,
                log_url=alert.log_url,
                signing_id=alert.signing_id,
                created_at=utcnow(),
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        now = utcnow()
        session.add_all(
            AlertDeliveryRow(alert_id=row.id, sink=name, status="pending", attempts=0, next_attempt_at=now)
            for row in rows
            for name, min_severity in sinks
            if Severity(row.severity).reaches(min_severity)
        )
        return rows

    async def raise_alert(self, alert: NewAlert, sinks: Sequence[tuple[str, str]] = ()) -> bool:
        """Insert one alert unless its dedup_key exists (also across replicas); True if new."""
        try:
            async with self.sessions.begin() as session:
                return bool(await self.insert_alerts(session, [alert], sinks))
        except IntegrityError:
            return False

    async def alerts(self, *, kind: str | None = None, since: datetime | None = None) -> list[AlertRow]:
        query = select(AlertRow).order_by(AlertRow.id.desc())
        if kind:
            query = query.where(AlertRow.kind == kind)
        if since:
            query = query.where(AlertRow.created_at >= since)
        async with self.sessions() as session:
            return list((await session.scalars(query)).all())


async def _insert_signings(session: AsyncSession, signings: Sequence[NewSigning]) -> None:
    """One multi-row INSERT ... RETURNING for a chunk's signings, on the table (Core), not the ORM
    entity: the unit of work costs half a millisecond a row, and the ORM's bulk insert 0.7-1.2 ms of
    CPU a chunk of 10 more than Core's. Each signing gets its id, as a flush would give a row its id.

    The ids are matched to the rows by their unique key, not by position: asking for RETURNING in
    parameter order makes SQLAlchemy send one INSERT per row on SQLite (2,000 round trips to the
    database thread cost a third of a 200k-entry catch-up)."""
    table = SigningRow.__table__
    columns = [column.key for column in table.columns if column.key != "id"]
    statement = insert(table).returning(table.c.id, table.c.log_id, table.c.log_index, table.c.certificate_sha256)
    inserted = await session.execute(statement, [{key: getattr(row, key) for key in columns} for row in signings])
    id_of = {(log_id, log_index, sha256): signing_id for signing_id, log_id, log_index, sha256 in inserted}
    for row in signings:
        row.id = id_of[(row.log_id, row.log_index, row.certificate_sha256)]


async def _add_certificates(session: AsyncSession, issued: Sequence[IssuedCertificate]) -> list[NewAlert]:
    """Store the certificates not seen before (one row per issuing CA and serial: a log may hold a
    certificate twice, as precertificate and as certificate), linked to their Rekor signing if it is
    stored already. Returns the alerts of the new ones, each with its certificate object."""
    keys = list({(item.certificate.issuer_ca, item.certificate.serial) for item in issued})
    stored = await session.execute(
        select(CertificateRow.issuer_ca, CertificateRow.serial).where(
            _join_key_in(CertificateRow.issuer_ca, CertificateRow.serial, keys)
        )
    )
    known = {(issuer_ca, serial) for issuer_ca, serial in stored}
    signed = await session.execute(
        select(SigningRow.issuer_ca, SigningRow.certificate_serial, SigningRow.id).where(
            _join_key_in(SigningRow.issuer_ca, SigningRow.certificate_serial, keys)
        )
    )
    signing_of = {(issuer_ca, serial): signing_id for issuer_ca, serial, signing_id in signed}
    added = []
    for item in issued:
        key = (item.certificate.issuer_ca, item.certificate.serial)
        if key in known:
            continue
        known.add(key)
        item.certificate.signing_id = signing_of.get(key)
        session.add(item.certificate)
        added.append(item)
    await session.flush()
    return [
        replace(item.alert, payload={**item.alert.payload, "certificate": item.certificate.as_object()})
        for item in added
        if item.alert is not None
    ]


def _join_key_in(issuer_ca: Any, serial: Any, keys: Sequence[tuple[str | None, str]]) -> Any:
    """(issuer CA, serial) IN keys: how a certificate and a signing find each other."""
    return tuple_(issuer_ca, serial).in_(keys)


async def _link_certificates_to(session: AsyncSession, signings: Sequence[NewSigning]) -> None:
    """A signing stored after its certificate was seen in CT: the certificate now points at it. One
    lookup per chunk (an UPDATE per signing cost a tenth of a tiles catch-up's event loop); an update
    only for the certificates found, which CT read first."""
    signing_of = {
        (signing.issuer_ca, signing.certificate_serial): signing.id
        for signing in signings
        if signing.issuer_ca is not None and signing.certificate_serial is not None
    }
    if not signing_of:
        return
    waiting = await session.execute(
        select(CertificateRow.id, CertificateRow.issuer_ca, CertificateRow.serial).where(
            _join_key_in(CertificateRow.issuer_ca, CertificateRow.serial, list(signing_of)),
            CertificateRow.signing_id.is_(None),
        )
    )
    for certificate_id, issuer_ca, serial in waiting.all():
        await session.execute(
            update(CertificateRow)
            .where(CertificateRow.id == certificate_id)
            .values(signing_id=signing_of[(issuer_ca, serial)])
        )


async def _answers(connection: AsyncConnection) -> bool:
    """Whether a held connection still talks to the database (briefly: a dead one must not hang us)."""
    try:
        async with asyncio.timeout(LOCK_CHECK_SECONDS):
            await connection.scalar(text("SELECT 1"))
            await connection.rollback()
    except Exception:
        return False
    return True


async def _close_quietly(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(LOCK_CHECK_SECONDS):
            await connection.close()
