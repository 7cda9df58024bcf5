"""SQLAlchemy 2 models of the tables users may query directly (DESIGN.md "Database").

Alembic (migrations/) owns the schema: these classes describe it for the ORM, they never create it.
Hashes are stored as lowercase hex so that plain SQL shows them as the logs and tools print them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from monitor.timefmt import rfc3339


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Rfc3339Text(FunctionElement[str]):
    """A UTCDateTime column as `monitor.timefmt.rfc3339` writes it (`2026-01-02T03:04:05Z`: whole
    seconds, cut, not rounded), written by the database: a listing of a million signings then
    neither decodes nor formats five million datetimes in Python."""

    type = String()
    name = "rfc3339_text"
    inherit_cache = True


@compiles(Rfc3339Text, "postgresql")
def _rfc3339_postgresql(element: Rfc3339Text, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


@compiles(Rfc3339Text, "sqlite")
def _rfc3339_sqlite(element: Rfc3339Text, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite holds them as UTC text, `YYYY-MM-DD HH:MM:SS.ffffff`; its date functions would round
    # the fraction to milliseconds, so the text is cut instead.
    column = compiler.process(element.clauses, **kw)
    return f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 8) || 'Z'"


class UntrustedText(TypeDecorator[str]):
    """TEXT filled from hostile input (certificates, log entries): never fails an insert.

    NUL, which PostgreSQL text refuses, becomes U+FFFD; with `max_bytes` (indexed columns: a btree
    entry has a size limit) a longer value is cut on a character boundary and marked, so the row is
    still stored and the cut is visible.
    """

    impl = Text
    cache_ok = True

    def __init__(self, max_bytes: int | None = None):
        super().__init__()
        self.max_bytes = max_bytes

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else fit_text(value, self.max_bytes)


TRUNCATED_MARK = "…[truncated]"
INDEXED_TEXT_BYTES = 1024


def fit_text(value: str, max_bytes: int | None = None) -> str:
    """`value` without NUL, and within `max_bytes` of UTF-8 (marked when cut)."""
    value = value.replace("\x00", "\ufffd")
    if max_bytes is None:
        return value
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return value
    room = max_bytes - len(TRUNCATED_MARK.encode())
    return encoded[:room].decode("utf-8", "ignore") + TRUNCATED_MARK


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second with a Z, as every output of rekorwatch writes times."""
    return rfc3339(moment)


class Base(DeclarativeBase):
    pass


class LogRow(Base):
    """One row per log, or per shard of a sharded v1 log: its verified state and cursor."""

    __tablename__ = "logs"
    __table_args__ = (UniqueConstraint("url", "tree_id", name="uq_logs_url_tree"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    api: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(10), default="rekor", server_default="rekor")
    """rekor (a Rekor log) or ct (a CT log of Fulcio)."""
    origin: Mapped[str] = mapped_column(UntrustedText())
    tree_id: Mapped[str] = mapped_column(String(40), default="", server_default="")
    shard_offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Global index of this shard's leaf 0: next_index - shard_offset is the per-shard index."""
    tree_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Size of the newest checkpoint whose signature verified, accepted or not (for lag); never a size
    the log merely claimed: an unsigned one is not stored."""
    verified_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    verified_root: Mapped[str | None] = mapped_column(String(64))
    last_checkpoint: Mapped[str | None] = mapped_column(Text)
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_index: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    compact_range: Mapped[bytes] = mapped_column(LargeBinary, default=b"", server_default="")
    """Roots of the perfect subtrees covering [0, next_index - shard_offset): moves with the cursor."""
    state: Mapped[str] = mapped_column(String(20), default="ok", server_default="ok")
    state_detail: Mapped[str | None] = mapped_column(Text)
    retired: Mapped[bool] = mapped_column(default=False, server_default=false())
    """The shard is inactive and was read to its final size: nothing more to fetch."""
    read_rate: Mapped[float | None] = mapped_column(Float, default=None)
    """Entries per second of the latest catch-up (over its last half minute), for `status`."""
    cosigners: Mapped[str | None] = mapped_column(Text)
    """JSON [{name, timestamp}]: the policy witnesses that cosigned the newest accepted checkpoint."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def shard_next(self) -> int:
        return self.next_index - self.shard_offset


class CheckpointRow(Base):
    """Every verified checkpoint."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("log_id", "tree_size", name="uq_checkpoints_log_size"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id", ondelete="CASCADE"), index=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cosigners: Mapped[str | None] = mapped_column(Text)
    """JSON [{name, timestamp}] of the policy witnesses whose cosignatures verified."""


class GossipObservationRow(Base):
    """A checkpoint another monitor or a distributor showed us, and how it compared with ours."""

    __tablename__ = "gossip_observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(UntrustedText())
    origin: Mapped[str] = mapped_column(UntrustedText())
    tree_size: Mapped[int | None] = mapped_column(BigInteger)
    root_hash: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(UntrustedText())
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    result: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(UntrustedText())


class AlertRow(Base):
    """An alert; `dedup_key` makes the same event alert once, across restarts and replicas."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_kind_log_url", "kind", "log_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES), unique=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    severity: Mapped[str] = mapped_column(String(10))
    signing_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    log_id: Mapped[int | None] = mapped_column(ForeignKey("logs.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(UntrustedText())
    payload: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a lasting condition (AlertKind.lasting) cleared; null while it holds, and for events."""
    log_url: Mapped[str | None] = mapped_column(String(500))
    """The log the alert is about (a log alert's log may have no `logs` row yet)."""


UNTRUSTED_IDENTITY_COLUMNS: dict[str, int | None] = {
    "issuer": INDEXED_TEXT_BYTES,
    "identity": None,
    "account_id": INDEXED_TEXT_BYTES,
    "account_name": INDEXED_TEXT_BYTES,
    "pipeline_id": INDEXED_TEXT_BYTES,
    "pipeline_name": INDEXED_TEXT_BYTES,
    "run_url": None,
    "source_repository": None,
    "source_ref": None,
}
"""The columns a certificate fills (its identity), with the byte bound of the indexed ones."""
UNTRUSTED_SIGNING_COLUMNS = {**UNTRUSTED_IDENTITY_COLUMNS, "artifact_digest": INDEXED_TEXT_BYTES}


KEYSET_COLUMNS = ("issuer", "account_id", "account_name", "pipeline_id", "pipeline_name", "verdict")
"""Signing filters, each indexed with the id so a filtered page is one index range (migration 0008)."""


class SigningRow(Base):
    """A certificate from a watched issuer found in a log entry, with its verdict."""

    __tablename__ = "signings"
    __table_args__ = (
        UniqueConstraint("log_id", "log_index", "certificate_sha256", name="uq_signings_entry_cert"),
        *(Index(f"ix_signings_{column}_id", column, "id") for column in KEYSET_COLUMNS),
        Index("ix_signings_issuer_ca_serial", "issuer_ca", "certificate_serial"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id", ondelete="CASCADE"))
    log_url: Mapped[str] = mapped_column(String(500))
    log_index: Mapped[int] = mapped_column(BigInteger)
    entry_uuid: Mapped[str | None] = mapped_column(String(80))
    integrated_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    """integrated_time, or the certificate's not_before where the log has no time (Rekor v2)."""
    kind: Mapped[str] = mapped_column(String(40))
    issuer: Mapped[str] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    identity: Mapped[str | None] = mapped_column(UntrustedText())
    provider: Mapped[str | None] = mapped_column(String(40))
    account_id: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    account_name: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    pipeline_id: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    pipeline_name: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    run_url: Mapped[str | None] = mapped_column(UntrustedText())
    source_repository: Mapped[str | None] = mapped_column(UntrustedText())
    source_ref: Mapped[str | None] = mapped_column(UntrustedText())
    artifact_digest: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    certificate_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chain_verified: Mapped[bool]
    verdict: Mapped[str] = mapped_column(String(30))
    extensions: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    issuer_ca: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 (hex) of the key of the trust root's CA that issued the certificate (null: it does not chain)."""
    certificate_serial: Mapped[str | None] = mapped_column(String(80))
    """The certificate's serial number (hex): with issuer_ca, what joins a signing with its CT certificate."""
    build_verified: Mapped[bool | None] = mapped_column(default=None)
    """Codefresh builds API: true (a build of that pipeline, in its run), false (no such build, or
    another's), null (not checked, or not yet)."""
    build_status: Mapped[str | None] = mapped_column(UntrustedText())
    build_created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    build_finished: Mapped[datetime | None] = mapped_column(UTCDateTime)
    build_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    build_reason: Mapped[str | None] = mapped_column(UntrustedText())

    @validates(*UNTRUSTED_SIGNING_COLUMNS)
    def _fit_untrusted(self, key: str, value: str | None) -> str | None:
        """Fit certificate values on assignment, so the row in memory (and the alert payload made
        from it) says exactly what the database stores."""
        return None if value is None else fit_text(value, UNTRUSTED_SIGNING_COLUMNS[key])

    def as_object(self) -> dict[str, object]:
        """The signing object of DESIGN.md (API, history --format json, webhook payloads)."""
        return signing_object(self)


@dataclass(slots=True)
class NewSigning:
    """A signing found by the tail, to insert into `signings` (repository._insert_signings): its
    columns as plain values. Making a `SigningRow` cost 50 µs against 4 (the ORM's instrumented
    attributes and validators), at every signing of a catch-up. The untrusted values are fitted as
    `SigningRow` fits them, so that what an alert says is what the database stores; a test holds
    the fields to the table's columns."""

    log_id: int
    log_url: str
    log_index: int
    entry_uuid: str | None
    integrated_time: datetime | None
    signed_at: datetime
    kind: str
    issuer: str
    certificate_sha256: str
    not_before: datetime | None
    chain_verified: bool
    verdict: str
    identity: str | None = None
    provider: str | None = None
    account_id: str | None = None
    account_name: str | None = None
    pipeline_id: str | None = None
    pipeline_name: str | None = None
    run_url: str | None = None
    source_repository: str | None = None
    source_ref: str | None = None
    artifact_digest: str | None = None
    extensions: str = "{}"
    issuer_ca: str | None = None
    certificate_serial: str | None = None
    build_verified: bool | None = None
    build_status: str | None = None
    build_created: datetime | None = None
    build_finished: datetime | None = None
    build_checked_at: datetime | None = None
    build_reason: str | None = None
    id: int | None = None
    """Given by the insert."""

    def __post_init__(self) -> None:
        for key, max_bytes in UNTRUSTED_SIGNING_COLUMNS.items():
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, fit_text(value, max_bytes))

    def as_object(self) -> dict[str, object]:
        return signing_object(self)


def signing_object(signing: SigningRow | NewSigning) -> dict[str, object]:
    """The signing object of DESIGN.md, of a stored signing or of one being stored."""
    return {
        "id": signing.id,
        "log_url": signing.log_url,
        "log_index": signing.log_index,
        "entry_uuid": signing.entry_uuid,
        "integrated_time": iso(signing.integrated_time),
        "kind": signing.kind,
        "issuer": signing.issuer,
        "identity": signing.identity,
        "provider": signing.provider,
        "account_id": signing.account_id,
        "account_name": signing.account_name,
        "pipeline_id": signing.pipeline_id,
        "pipeline_name": signing.pipeline_name,
        "run_url": signing.run_url,
        "source_repository": signing.source_repository,
        "source_ref": signing.source_ref,
        "artifact_digest": signing.artifact_digest,
        "certificate_sha256": signing.certificate_sha256,
        "certificate_serial": signing.certificate_serial,
        "issuer_ca": signing.issuer_ca,
        "not_before": iso(signing.not_before),
        "chain_verified": signing.chain_verified,
        "verdict": signing.verdict,
        "build_verified": signing.build_verified,
        "build_status": signing.build_status,
        "build_created": iso(signing.build_created),
        "build_finished": iso(signing.build_finished),
        "extensions": json.loads(signing.extensions or "{}"),
    }


class CertificateRow(Base):
    """A certificate of a watched issuer seen in a CT log, with its verdict and its Rekor signing (if any)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("issuer_ca", "serial", name="uq_certificates_issuer_serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id", ondelete="CASCADE"))
    log_url: Mapped[str] = mapped_column(String(500))
    ct_index: Mapped[int] = mapped_column(BigInteger)
    ct_timestamp: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    entry_type: Mapped[str] = mapped_column(String(10))
    """precert or x509."""
    issuer_ca: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(80))
    issuer: Mapped[str] = mapped_column(UntrustedText())
    identity: Mapped[str | None] = mapped_column(UntrustedText())
    provider: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES), index=True)
    account_name: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES), index=True)
    pipeline_id: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES), index=True)
    pipeline_name: Mapped[str | None] = mapped_column(UntrustedText(INDEXED_TEXT_BYTES))
    run_url: Mapped[str | None] = mapped_column(UntrustedText())
    source_repository: Mapped[str | None] = mapped_column(UntrustedText())
    source_ref: Mapped[str | None] = mapped_column(UntrustedText())
    certificate_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chain_verified: Mapped[bool]
    verdict: Mapped[str] = mapped_column(String(30), index=True)
    extensions: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    signing_id: Mapped[int | None] = mapped_column(ForeignKey("signings.id", ondelete="SET NULL"), index=True)
    """The Rekor signing made with this certificate (same issuing CA and serial); null: none seen."""
    unlogged_alerted: Mapped[bool] = mapped_column(default=False, server_default=false())

    @validates(*UNTRUSTED_IDENTITY_COLUMNS)
    def _fit_untrusted(self, key: str, value: str | None) -> str | None:
        return None if value is None else fit_text(value, UNTRUSTED_IDENTITY_COLUMNS[key])

    def as_object(self) -> dict[str, object]:
        """DESIGN.md's certificate object (API, `certificates --format json`)."""
        return {
            "id": self.id,
            "log_url": self.log_url,
            "ct_index": self.ct_index,
            "ct_timestamp": iso(self.ct_timestamp),
            "entry_type": self.entry_type,
            "issuer_ca": self.issuer_ca,
            "serial": self.serial,
            "issuer": self.issuer,
            "identity": self.identity,
            "provider": self.provider,
            "account_id": self.account_id,
            "account_name": self.account_name,
            "pipeline_id": self.pipeline_id,
            "pipeline_name": self.pipeline_name,
            "run_url": self.run_url,
            "source_repository": self.source_repository,
            "source_ref": self.source_ref,
            "certificate_sha256": self.certificate_sha256,
            "not_before": iso(self.not_before),
            "chain_verified": self.chain_verified,
            "verdict": self.verdict,
            "signing_id": self.signing_id,
            "logged": self.signing_id is not None,
            "extensions": json.loads(self.extensions or "{}"),
        }


class BuildCheckRow(Base):
    """A Codefresh build check to do for a signing: queued with it, leased by a worker, deleted once done."""

    __tablename__ = "build_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    signing_id: Mapped[int] = mapped_column(ForeignKey("signings.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[str] = mapped_column(UntrustedText())
    platform_url: Mapped[str] = mapped_column(UntrustedText())
    workflow_id: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[str] = mapped_column(UntrustedText())
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(UntrustedText())


class AlertDeliveryRow(Base):
    """The outbox: one row per (alert, sink), until delivered."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "sink", name="uq_deliveries_alert_sink"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    sink: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EntryErrorRow(Base):
    """An entry that could not be decoded: recorded, alerted, then passed (never blocks the log)."""

    __tablename__ = "entry_errors"
    __table_args__ = (UniqueConstraint("log_id", "log_index", name="uq_entry_errors_entry"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id", ondelete="CASCADE"))
    log_index: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(60), index=True)
    detail: Mapped[str] = mapped_column(UntrustedText())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
