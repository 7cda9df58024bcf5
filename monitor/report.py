"""Read-side views of the store shared by the CLI and the API: log objects, tables for people."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.contract import LogKind, LogState, Verdict
from monitor.health import FollowerHealth
from monitor.store.models import AlertDeliveryRow, AlertRow, LogRow, iso
from monitor.store.outbox import deliveries_for
from monitor.store.queries import AlertFilter, SigningFilter, alerts_page, signings_page
from monitor.store.repository import Store


def log_object(row: LogRow) -> dict[str, Any]:
    """DESIGN.md's log object. Sizes are per shard; `next_index` is global; lag counts this shard."""
    return {
        "url": row.url,
        "origin": row.origin,
        "api": row.api,
        "kind": LogKind.REKOR,
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
        "kind": LogKind.REKOR,
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


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table; empty input says so."""
    if not rows:
        return "(nothing yet)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


VERDICTS = tuple(Verdict)


def parse_time(value: str) -> datetime:
    """RFC 3339 (`2026-01-02T03:04:05Z`) or a date (`2026-01-02`, midnight UTC); naive means UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not an RFC 3339 time or a YYYY-MM-DD date") from exc


def alert_object(row: AlertRow, deliveries: Sequence[AlertDeliveryRow]) -> dict[str, Any]:
    """DESIGN.md's alert object, with its delivery state per sink."""
    payload = json.loads(row.payload or "{}")
    return {
        "id": row.id,
        "dedup_key": row.dedup_key,
        "kind": row.kind,
        "severity": row.severity,
        "summary": row.summary,
        "created_at": iso(row.created_at),
        "signing_id": row.signing_id,
        "log_url": (payload.get("log") or {}).get("url"),
        "deliveries": [
            {
                "sink": d.sink,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None,
                "delivered_at": iso(d.delivered_at),
            }
            for d in deliveries
        ],
    }


async def alert_objects(store: Store, rows: Sequence[AlertRow]) -> list[dict[str, Any]]:
    deliveries = await deliveries_for(store, [row.id for row in rows])
    return [alert_object(row, deliveries.get(row.id, [])) for row in rows]


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: json.dumps(v) if isinstance(v, dict | list) else v for c, v in row.items()})
    return out.getvalue()


HISTORY_COLUMNS = ("id", "signed_at", "verdict", "account_name", "pipeline_name", "identity", "log_index")
ALERT_COLUMNS = ("id", "created_at", "kind", "severity", "delivery", "summary")


async def history(database: str, where: SigningFilter, limit: int) -> list[dict[str, Any]]:
    """Signing objects, newest first; `signed_at` (integrated time, else not_before) for tables."""
    async with Store.open(database) as store:
        rows, _ = await signings_page(store, where, limit=limit)
    return [row.as_object() | {"signed_at": iso(row.signed_at)} for row in rows]


async def alert_list(database: str, where: AlertFilter, limit: int) -> list[dict[str, Any]]:
    async with Store.open(database) as store:
        rows, _ = await alerts_page(store, where, limit=limit)
        return await alert_objects(store, rows)


def delivery_summary(alert: dict[str, Any]) -> str:
    """`webhook:delivered slack:pending(3: HTTP 500)`: the state of each sink at a glance."""
    parts = []
    for d in alert["deliveries"]:
        state = d["status"] if d["status"] == "delivered" else f"{d['status']}({d['attempts']}"
        if d["status"] != "delivered":
            state += f": {d['last_error']})" if d["last_error"] else ")"
        parts.append(f"{d['sink']}:{state}")
    return " ".join(parts) or "-"
