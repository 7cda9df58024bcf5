"""The alert outbox (`alert_deliveries`): what the dispatcher, the CLI and the API read and write.

A delivery is `pending` until a sink accepted it (`delivered`), for as long as that takes. `failed`
has one meaning only: the row's sink is not in the configuration, so nothing can deliver it; the row
stays, visible, with last_error "sink no longer configured", and becomes `pending` again as soon as
a dispatcher runs with a sink of that name (a config mistake, or a sink removed for a while, loses
nothing).

Claiming leases a row rather than locking it across the send: `claim_due` moves `next_attempt_at` to
the end of the lease in the same statement that selects the row (PostgreSQL: `FOR UPDATE SKIP
LOCKED`; SQLite: one writer at a time), so two dispatchers never take the same row while the lease
runs. A dispatcher killed before it records the outcome loses nothing: the lease runs out, the row
is due again and is sent again with the same delivery id.

Re-sends (Alertmanager sinks only: see alerts/alertmanager.py). A delivered row of a lasting alert
(AlertKind.lasting) keeps a schedule in `next_attempt_at`: the next re-send while the condition
holds. Once the alert's `resolved_at` is set, its next re-send carries the resolution and, when it
succeeded, `next_attempt_at` is set to exactly `resolved_at`, which marks the row done.
Re-sends are claimed with the same lease, so the schedule lives in the database and survives
restarts; `status`, `attempts` and `delivered_at` keep their meaning (first acceptance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, or_, select, update

from monitor.contract import LASTING_KINDS
from monitor.store.models import AlertDeliveryRow, AlertRow
from monitor.store.repository import Store

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
SINK_REMOVED = "sink no longer configured"


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    sink: str
    attempts: int
    """Attempts recorded before this one."""
    alert: AlertRow


async def claim_due(store: Store, sink: str, now: datetime, lease_until: datetime, limit: int) -> list[ClaimedDelivery]:
    """Take up to `limit` pending deliveries of `sink` due at `now`, oldest due first, leasing them
    until `lease_until`."""
    due = (
        select(AlertDeliveryRow.id)
        .where(
            AlertDeliveryRow.status == PENDING,
            AlertDeliveryRow.sink == sink,
            AlertDeliveryRow.next_attempt_at <= now,
        )
        .order_by(AlertDeliveryRow.next_attempt_at, AlertDeliveryRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return await _lease(store, sink, due, lease_until)


async def claim_resends(
    store: Store, sink: str, now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedDelivery]:
    """Take up to `limit` delivered rows of `sink` whose lasting alert is due to be sent again at
    `now` (it holds, or its resolution is not sent yet), leasing them until `lease_until`."""
    due = (
        select(AlertDeliveryRow.id)
        .join(AlertRow, AlertRow.id == AlertDeliveryRow.alert_id)
        .where(
            AlertDeliveryRow.status == DELIVERED,
            AlertDeliveryRow.sink == sink,
            AlertDeliveryRow.next_attempt_at <= now,
            AlertRow.kind.in_([kind.value for kind in LASTING_KINDS]),
            or_(AlertRow.resolved_at.is_(None), AlertDeliveryRow.next_attempt_at != AlertRow.resolved_at),
        )
        .order_by(AlertDeliveryRow.next_attempt_at, AlertDeliveryRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=AlertDeliveryRow)
    )
    return await _lease(store, sink, due, lease_until)


async def _lease(store: Store, sink: str, due: Select[tuple[int]], lease_until: datetime) -> list[ClaimedDelivery]:
    """Move the `due` rows' next_attempt_at to `lease_until` and read them with their alerts."""
    lease = (
        update(AlertDeliveryRow)
        .where(AlertDeliveryRow.id.in_(due))
        .values(next_attempt_at=lease_until)
        .returning(AlertDeliveryRow.id, AlertDeliveryRow.alert_id, AlertDeliveryRow.attempts)
        .execution_options(synchronize_session=False)
    )
    async with store.sessions.begin() as session:
        claimed = (await session.execute(lease)).all()
        if not claimed:
            return []
        alert_ids = {row.alert_id for row in claimed}
        alerts = {a.id: a for a in await session.scalars(select(AlertRow).where(AlertRow.id.in_(alert_ids)))}
    return sorted(
        (ClaimedDelivery(row.id, sink, row.attempts, alerts[row.alert_id]) for row in claimed),
        key=lambda delivery: delivery.id,
    )


async def record_delivered(store: Store, delivery_id: int, now: datetime, resend_at: datetime | None = None) -> None:
    """The sink accepted it. last_error is kept: it tells what the earlier attempts ran into.
    `resend_at`: when to send it again (a lasting alert to Alertmanager; see the module docstring)."""
    values: dict[str, object] = {"status": DELIVERED, "delivered_at": now, "attempts": AlertDeliveryRow.attempts + 1}
    if resend_at is not None:
        values["next_attempt_at"] = resend_at
    async with store.sessions.begin() as session:
        await session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id, AlertDeliveryRow.status == PENDING)
            .values(**values)
        )


async def schedule_resend(store: Store, delivery_id: int, at: datetime, error: str | None = None) -> None:
    """A re-send was made (or failed, with `error`): the next one is due `at` (`resolved_at`: none)."""
    values: dict[str, object] = {"next_attempt_at": at}
    if error is not None:
        values["last_error"] = error
    async with store.sessions.begin() as session:
        await session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id, AlertDeliveryRow.status == DELIVERED)
            .values(**values)
        )


async def record_failure(store: Store, delivery_id: int, error: str, retry_at: datetime) -> None:
    """An attempt failed; the delivery stays pending and is due again at `retry_at`."""
    async with store.sessions.begin() as session:
        await session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id, AlertDeliveryRow.status == PENDING)
            .values(attempts=AlertDeliveryRow.attempts + 1, last_error=error, next_attempt_at=retry_at)
        )


async def make_due(store: Store, sink: str, now: datetime, waiting_beyond: datetime) -> int:
    """The sink is back: its pending deliveries waiting out a backoff become due `now`. Only rows due
    after `waiting_beyond` (now plus the longest lease) are touched, so a row leased by another
    dispatcher, mid-send, is never made due twice. Returns how many."""
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(AlertDeliveryRow)
            .where(
                AlertDeliveryRow.status == PENDING,
                AlertDeliveryRow.sink == sink,
                AlertDeliveryRow.next_attempt_at > waiting_beyond,
            )
            .values(next_attempt_at=now)
        )
        return result.rowcount


async def fail_unconfigured(store: Store, configured: Collection[str]) -> Counter[str]:
    """Mark `failed` the pending deliveries whose sink is not configured; returns how many per sink."""
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.status == PENDING, AlertDeliveryRow.sink.not_in(list(configured)))
            .values(status=FAILED, last_error=SINK_REMOVED)
            .returning(AlertDeliveryRow.sink)
            .execution_options(synchronize_session=False)
        )
        return Counter(result.scalars().all())


async def revive_configured(store: Store, configured: Collection[str], now: datetime) -> Counter[str]:
    """Make `pending` again, due now, the deliveries failed only because their sink was not configured
    and that is configured now; returns how many per sink."""
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(AlertDeliveryRow)
            .where(
                AlertDeliveryRow.status == FAILED,
                AlertDeliveryRow.last_error == SINK_REMOVED,
                AlertDeliveryRow.sink.in_(list(configured)),
            )
            .values(status=PENDING, next_attempt_at=now, last_error=None)
            .returning(AlertDeliveryRow.sink)
            .execution_options(synchronize_session=False)
        )
        return Counter(result.scalars().all())


async def pending_count(store: Store) -> int:
    async with store.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(AlertDeliveryRow).where(AlertDeliveryRow.status == PENDING)
        )
    return int(count or 0)


async def pending_by_sink(store: Store) -> dict[str, int]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(AlertDeliveryRow.sink, func.count())
            .where(AlertDeliveryRow.status == PENDING)
            .group_by(AlertDeliveryRow.sink)
        )
        return {sink: int(count) for sink, count in rows.all()}


async def deliveries_for(store: Store, alert_ids: Iterable[int]) -> dict[int, list[AlertDeliveryRow]]:
    """The delivery rows of each given alert (by sink name); every id given is a key, maybe of []."""
    wanted = list(dict.fromkeys(alert_ids))
    found: dict[int, list[AlertDeliveryRow]] = {alert_id: [] for alert_id in wanted}
    if not wanted:
        return found
    query = (
        select(AlertDeliveryRow)
        .where(AlertDeliveryRow.alert_id.in_(wanted))
        .order_by(AlertDeliveryRow.alert_id, AlertDeliveryRow.sink)
    )
    async with store.sessions() as session:
        for row in await session.scalars(query):
            found[row.alert_id].append(row)
    return found
