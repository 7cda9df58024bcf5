"""Read-side views of the store shared by the CLI and the API: log, signing and alert objects, and
the listings `status`, `history` and `alerts` stream (monitor/listing.py writes them).

Times in the objects built here are RFC 3339 to the second (monitor/timefmt.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Column as TableColumn
from sqlalchemy import ColumnElement, Select

from monitor.contract import LogKind, LogState
from monitor.health import FollowerHealth
from monitor.listing import Column, Field, Kind, Listing, Record
from monitor.store.models import (
    AlertDeliveryRow,
    AlertRow,
    CertificateRow,
    LogRow,
    Rfc3339Text,
    SigningRow,
    UTCDateTime,
    iso,
)
from monitor.store.outbox import deliveries_for
from monitor.store.queries import (
    AlertFilter,
    CertificateFilter,
    SigningFilter,
    alert_rows,
    certificates_page_query,
    keyset_batches,
    signings_page_query,
)
from monitor.store.repository import Store
from monitor.timefmt import rfc3339


def log_object(row: LogRow) -> dict[str, Any]:
    """DESIGN.md's log object. Sizes are per shard; `next_index` is global; lag counts this shard."""
    return {
        "url": row.url,
        "origin": row.origin,
        "api": row.api,
        "kind": row.kind,
        "tree_id": row.tree_id,
        "tree_size": row.tree_size,
        "verified_size": row.verified_size,
        "next_index": row.next_index,
        "lag": 0 if row.retired else max(row.shard_offset + row.tree_size - row.next_index, 0),
        "last_checkpoint_at": iso(row.last_checkpoint_at),
        "state": row.state,
        "state_detail": row.state_detail,
        "retired": row.retired,
        "witnesses": [cosigner["name"] for cosigner in json.loads(row.cosigners)] if row.cosigners else [],
        **catch_up_view(row),
    }


def checkpoint_object(row: LogRow) -> dict[str, Any]:
    """A log's newest verified checkpoint, as /api/v1/checkpoints gives it to peers."""
    return {
        "url": row.url,
        "origin": row.origin,
        "size": row.verified_size,
        "root_hash": row.verified_root,
        "note": row.last_checkpoint,
        "verified_at": iso(row.last_checkpoint_at),
    }


RATE_FRESH_SECONDS = 60.0


def catch_up_view(row: LogRow) -> dict[str, float | None]:
    """`rate` (entries/s) and `eta_seconds` of a log that lags and is being read now."""
    lag = 0 if row.retired else max(row.shard_offset + row.tree_size - row.next_index, 0)
    fresh = row.updated_at is not None and (datetime.now(UTC) - row.updated_at).total_seconds() < RATE_FRESH_SECONDS
    if not lag or not fresh or not row.read_rate:
        return {"rate": None, "eta_seconds": None}
    return {"rate": round(row.read_rate, 1), "eta_seconds": round(lag / row.read_rate)}


CT_APIS = ("rfc6962", "static")


def log_objects(rows: Sequence[LogRow], healths: Mapping[str, FollowerHealth]) -> list[dict[str, Any]]:
    """The stored logs, with the state the daemon knows now (the database may be behind, e.g. while
    it was the one failing), and the followed logs that never answered, which have no row yet."""
    objects = []
    for row in rows:
        view = log_object(row)
        health = healths.get(row.url)
        if health is not None and health.state is not None and row.state != LogState.INCONSISTENT:
            view["state"], view["state_detail"] = health.state, health.detail
        objects.append(view)
    stored = {row.url for row in rows}
    objects += [unanswered_log_object(health) for url, health in healths.items() if url not in stored]
    return objects


def unanswered_log_object(health: FollowerHealth) -> dict[str, Any]:
    return {
        "url": health.url,
        "origin": health.origin,
        "api": health.api,
        "kind": LogKind.CT if health.api in CT_APIS else LogKind.REKOR,
        "tree_id": None,
        "tree_size": None,
        "verified_size": None,
        "next_index": None,
        "lag": None,
        "last_checkpoint_at": None,
        "state": health.state or LogState.UNREACHABLE,
        "state_detail": health.detail or "no answer yet",
        "retired": False,
        "witnesses": [],
        "rate": None,
        "eta_seconds": None,
    }


async def log_status(database: str) -> list[dict[str, Any]]:
    async with Store.open(database) as store:
        return [log_object(row) for row in await store.logs()]


def alert_object(row: AlertRow, deliveries: Sequence[AlertDeliveryRow]) -> dict[str, Any]:
    """DESIGN.md's alert object, with its delivery state per sink, and when a lasting condition
    (log_stalled, checkpoint_unwitnessed...) cleared: `resolved_at`, null while it holds and for events."""
    payload = json.loads(row.payload or "{}")
    return {
        "id": row.id,
        "dedup_key": row.dedup_key,
        "kind": row.kind,
        "severity": row.severity,
        "summary": row.summary,
        "created_at": rfc3339(row.created_at),
        "signing_id": row.signing_id,
        "log_url": row.log_url or (payload.get("log") or {}).get("url"),
        "resolved_at": rfc3339(row.resolved_at),
        "deliveries": [
            {
                "sink": d.sink,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "next_attempt_at": rfc3339(d.next_attempt_at) if d.status == "pending" else None,
                "delivered_at": rfc3339(d.delivered_at),
            }
            for d in deliveries
        ],
    }


async def alert_objects(store: Store, rows: Sequence[AlertRow]) -> list[dict[str, Any]]:
    deliveries = await deliveries_for(store, [row.id for row in rows])
    return [alert_object(row, deliveries.get(row.id, [])) for row in rows]


def delivery_summary(alert: Mapping[str, Any]) -> str:
    """`webhook:delivered slack:pending(3: HTTP 500)`: the state of each sink at a glance."""
    parts = []
    for d in alert["deliveries"]:
        state = d["status"] if d["status"] == "delivered" else f"{d['status']}({d['attempts']}"
        if d["status"] != "delivered":
            state += f": {d['last_error']})" if d["last_error"] else ")"
        parts.append(f"{d['sink']}:{state}")
    return " ".join(parts) or "-"


def without_scheme(url: str) -> str:
    return url.split("://", 1)[-1]


# listings --------------------------------------------------------------------------------------

TEXT, INT, TIME, BOOL = Kind.TEXT, Kind.INT, Kind.TIME, Kind.BOOL

IDENTITY_FIELDS = (
    Field("issuer"),
    Field("identity"),
    Field("provider"),
    Field("account_id"),
    Field("account_name"),
    Field("pipeline_id"),
    Field("pipeline_name"),
    Field("run_url"),
    Field("source_repository"),
    Field("source_ref"),
)
"""Who a certificate says signed: the fields signings and CT certificates share."""
IDENTITY_COLUMNS = (
    Column("account", flex=True, field="account_name"),
    Column("pipeline", flex=True, field="pipeline_name"),
    Column("identity", flex=True),
)

SIGNINGS = Listing(
    noun="signings",
    fields=(
        Field("id", INT),
        Field("log_url"),
        Field("log_index", INT),
        Field("entry_uuid"),
        Field("integrated_time", TIME),
        Field("kind"),
        *IDENTITY_FIELDS,
        Field("artifact_digest"),
        Field("certificate_sha256"),
        Field("certificate_serial"),
        Field("issuer_ca"),
        Field("not_before", TIME),
        Field("chain_verified", BOOL),
        Field("verdict"),
        Field("build_verified", BOOL),
        Field("build_status"),
        Field("build_created", TIME),
        Field("build_finished", TIME),
        Field("signed_at", TIME),
        Field("extensions", Kind.JSON_TEXT),
    ),
    columns=(
        Column("id"),
        Column("signed_at"),
        Column("log", lambda values: without_scheme(values["log_url"] or ""), flex=True),
        Column("log_index"),
        Column("verdict"),
        *IDENTITY_COLUMNS,
    ),
)
"""The signing object (SigningRow.as_object) and `signed_at`: integrated time, else not_before."""

CERTIFICATES = Listing(
    noun="certificates",
    fields=(
        Field("id", INT),
        Field("log_url"),
        Field("ct_index", INT),
        Field("ct_timestamp", TIME),
        Field("entry_type"),
        Field("issuer_ca"),
        Field("serial"),
        *IDENTITY_FIELDS,
        Field("certificate_sha256"),
        Field("not_before", TIME),
        Field("chain_verified", BOOL),
        Field("verdict"),
        Field("signing_id", INT),
        Field("logged", BOOL),
        Field("extensions", Kind.JSON_TEXT),
    ),
    columns=(
        Column("id"),
        Column("ct_timestamp"),
        Column("verdict"),
        Column("logged", lambda values: "no" if values["signing_id"] is None else f"signing {values['signing_id']}"),
        *IDENTITY_COLUMNS,
    ),
)
"""The certificate object (CertificateRow.as_object; `logged` is signing_id not null)."""

ALERTS = Listing(
    noun="alerts",
    fields=(
        Field("id", INT),
        Field("dedup_key"),
        Field("kind"),
        Field("severity"),
        Field("summary"),
        Field("created_at"),
        Field("signing_id", INT),
        Field("log_url"),
        Field("resolved_at"),
        Field("deliveries", Kind.JSON),
    ),
    columns=(
        Column("id"),
        Column("created_at"),
        Column("kind"),
        Column("severity"),
        Column("delivery", delivery_summary, flex=True),
        Column("summary", flex=True),
    ),
)
"""The alert object (`alert_object`; its times are text already)."""

LOGS = Listing(
    noun="logs read yet",
    fields=(
        Field("url"),
        Field("origin"),
        Field("api"),
        Field("kind"),
        Field("tree_id"),
        Field("verified_size", INT),
        Field("next_index", INT),
        Field("lag", INT),
        Field("rate"),
        Field("eta_seconds", INT),
        Field("state"),
        Field("last_checkpoint_at"),
    ),
    columns=tuple(
        Column(name, flex=name in ("url", "origin"))
        for name in (
            "url",
            "origin",
            "api",
            "kind",
            "tree_id",
            "verified_size",
            "next_index",
            "lag",
            "rate",
            "eta_seconds",
            "state",
            "last_checkpoint_at",
        )
    ),
)
"""`status` as a table: the log object's main fields."""


def records_of(listing: Listing, objects: Sequence[Mapping[str, Any]]) -> list[Record]:
    return [tuple(item.get(name) for name in listing.names) for item in objects]


def signing_batches(store: Store, where: SigningFilter, limit: int | None) -> AsyncGenerator[Sequence[Record], None]:
    """SIGNINGS records, newest first, streamed in batches (rows straight from SQL: no ORM objects)."""
    columns = [_as_listed(SigningRow.__table__.c[name]) for name in SIGNINGS.names]
    return _row_batches(
        store, lambda before_id, size: signings_page_query(where, columns, size=size, before_id=before_id), limit
    )


async def _row_batches(
    store: Store, page_query: Callable[[int | None, int], Select[Any]], limit: int | None
) -> AsyncGenerator[Sequence[Record], None]:
    """The rows of `page_query`'s pages (the id first), on one connection for the whole listing."""
    async with store.reading() as connection:

        async def page(before_id: int | None, size: int) -> Sequence[Record]:
            return (await connection.execute(page_query(before_id, size))).all()

        async with contextlib.aclosing(keyset_batches(page, itemgetter(0), limit=limit)) as batches:
            async for batch in batches:  # closed (its query ahead ended) before the connection is
                yield batch


def _as_listed(column: TableColumn[Any]) -> ColumnElement[Any]:
    """Times as the database writes them in RFC 3339 (a third of an export's time went to decoding
    and formatting them here); other columns as they are."""
    if isinstance(column.type, UTCDateTime):
        return Rfc3339Text(column).label(column.name)
    return column


def certificate_batches(
    store: Store, where: CertificateFilter, limit: int | None
) -> AsyncGenerator[Sequence[Record], None]:
    """CERTIFICATES records, newest first, streamed in batches."""
    table = CertificateRow.__table__.c
    logged = CertificateRow.signing_id.is_not(None).label("logged")
    columns = [logged if name == "logged" else _as_listed(table[name]) for name in CERTIFICATES.names]
    return _row_batches(
        store, lambda before_id, size: certificates_page_query(where, columns, size=size, before_id=before_id), limit
    )


async def alert_batches(store: Store, where: AlertFilter, limit: int | None) -> AsyncGenerator[Sequence[Record], None]:
    """ALERTS records, newest first, streamed in batches."""

    async def page(before_id: int | None, size: int) -> list[AlertRow]:
        return await alert_rows(store, where, size=size, before_id=before_id)

    async with contextlib.aclosing(keyset_batches(page, attrgetter("id"), limit=limit)) as batches:
        async for rows in batches:
            yield records_of(ALERTS, await alert_objects(store, rows))
