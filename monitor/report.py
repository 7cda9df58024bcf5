"""Read-side views of the store shared by the CLI and the API: log, signing and alert objects, and
the listings `status`, `history` and `alerts` stream (monitor/listing.py writes them).

Times in the objects built here are RFC 3339 to the second (monitor/timefmt.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Column as TableColumn
from sqlalchemy import ColumnElement, DateTime, type_coerce

from monitor.listing import Column, Field, Kind, Listing, Record
from monitor.store.models import AlertDeliveryRow, AlertRow, LogRow, SigningRow, UTCDateTime, iso
from monitor.store.outbox import deliveries_for
from monitor.store.queries import AlertFilter, SigningFilter, alert_rows, keyset_batches, signings_page_query
from monitor.store.repository import Store
from monitor.timefmt import rfc3339


def log_object(row: LogRow) -> dict[str, Any]:
    """DESIGN.md's log object. Sizes are per shard; `next_index` is global; lag counts this shard."""
    return {
        "url": row.url,
        "origin": row.origin,
        "api": row.api,
        "tree_id": row.tree_id,
        "tree_size": row.tree_size,
        "verified_size": row.verified_size,
        "next_index": row.next_index,
        "lag": max(row.shard_offset + row.tree_size - row.next_index, 0),
        "last_checkpoint_at": iso(row.last_checkpoint_at),
        "state": row.state,
        "retired": row.retired,
    }


async def log_status(database: str) -> list[dict[str, Any]]:
    async with Store.open(database) as store:
        return [log_object(row) for row in await store.logs()]


def alert_object(row: AlertRow, deliveries: Sequence[AlertDeliveryRow]) -> dict[str, Any]:
    """DESIGN.md's alert object, with its delivery state per sink."""
    payload = json.loads(row.payload or "{}")
    return {
        "id": row.id,
        "dedup_key": row.dedup_key,
        "kind": row.kind,
        "severity": row.severity,
        "summary": row.summary,
        "created_at": rfc3339(row.created_at),
        "signing_id": row.signing_id,
        "log_url": (payload.get("log") or {}).get("url"),
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

SIGNINGS = Listing(
    noun="signings",
    fields=(
        Field("id", INT),
        Field("log_url"),
        Field("log_index", INT),
        Field("entry_uuid"),
        Field("integrated_time", TIME),
        Field("kind"),
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
        Field("artifact_digest"),
        Field("certificate_sha256"),
        Field("not_before", TIME),
        Field("chain_verified", BOOL),
        Field("verdict"),
        Field("signed_at", TIME),
        Field("extensions", Kind.JSON_TEXT),
    ),
    columns=(
        Column("id"),
        Column("signed_at"),
        Column("log", lambda values: without_scheme(values["log_url"] or ""), flex=True),
        Column("log_index"),
        Column("verdict"),
        Column("account", flex=True, field="account_name"),
        Column("pipeline", flex=True, field="pipeline_name"),
        Column("identity", flex=True),
    ),
)
"""The signing object (SigningRow.as_object) and `signed_at`: integrated time, else not_before."""

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
        Field("tree_id"),
        Field("api"),
        Field("verified_size", INT),
        Field("next_index", INT),
        Field("lag", INT),
        Field("state"),
        Field("last_checkpoint_at"),
    ),
    columns=tuple(
        Column(name, flex=name == "url")
        for name in ("url", "tree_id", "api", "verified_size", "next_index", "lag", "state", "last_checkpoint_at")
    ),
)
"""`status` as a table: the log object's main fields."""


def records_of(listing: Listing, objects: Sequence[Mapping[str, Any]]) -> list[Record]:
    return [tuple(item.get(name) for name in listing.names) for item in objects]


def signing_batches(store: Store, where: SigningFilter, limit: int | None) -> AsyncIterator[Sequence[Record]]:
    """SIGNINGS records, newest first, streamed in batches (rows straight from SQL: no ORM objects)."""
    columns = [_plain_type(SigningRow.__table__.c[name]) for name in SIGNINGS.names]

    async def page(before_id: int | None, size: int) -> Sequence[Record]:
        query = signings_page_query(where, columns, size=size, before_id=before_id)
        async with store.engine.connect() as connection:
            return (await connection.execute(query)).all()

    return keyset_batches(page, itemgetter(0), limit=limit)


def _plain_type(column: TableColumn[Any]) -> ColumnElement[Any]:
    """Times as the driver gives them: rfc3339 takes naive ones as UTC, which spares a conversion
    per value (a sixth of an export's time)."""
    if isinstance(column.type, UTCDateTime):
        return type_coerce(column, DateTime(timezone=True)).label(column.name)
    return column


async def alert_batches(store: Store, where: AlertFilter, limit: int | None) -> AsyncIterator[Sequence[Record]]:
    """ALERTS records, newest first, streamed in batches."""

    async def page(before_id: int | None, size: int) -> list[AlertRow]:
        return await alert_rows(store, where, size=size, before_id=before_id)

    async for rows in keyset_batches(page, attrgetter("id"), limit=limit):
        yield records_of(ALERTS, await alert_objects(store, rows))
