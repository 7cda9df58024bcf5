"""The Codefresh build-check queue (`build_checks`): what the checker reads and writes.

A row is inserted with its signing (Store.commit_batch), so a signing that needs a check always has
one. `claim_due` leases due rows (next_attempt_at pushed to the lease's end in the same statement;
PostgreSQL: FOR UPDATE SKIP LOCKED), so two replicas never check the same signing at once and a
checker killed mid-check loses nothing: the lease runs out and the row is due again. A check done
is written with its outcome (and its alert) in one transaction that deletes the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update

from monitor.store.models import AlertRow, BuildCheckRow, LogRow, SigningRow
from monitor.store.repository import NewAlert, Store


@dataclass(frozen=True)
class ClaimedCheck:
    check: BuildCheckRow
    signing: SigningRow
    origin: str
    api: str


@dataclass(frozen=True)
class BuildOutcome:
    """What is kept with the signing once its build is judged."""

    verified: bool | None
    status: str | None
    created: datetime | None
    finished: datetime | None
    reason: str
    checked_at: datetime


async def claim_due(store: Store, now: datetime, lease_until: datetime, limit: int) -> list[ClaimedCheck]:
    due = (
        select(BuildCheckRow.id)
        .where(BuildCheckRow.next_attempt_at <= now)
        .order_by(BuildCheckRow.next_attempt_at, BuildCheckRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    lease = (
        update(BuildCheckRow)
        .where(BuildCheckRow.id.in_(due))
        .values(next_attempt_at=lease_until)
        .returning(BuildCheckRow.id)
        .execution_options(synchronize_session=False)
    )
    async with store.sessions.begin() as session:
        ids = list((await session.scalars(lease)).all())
        if not ids:
            return []
        rows = await session.execute(
            select(BuildCheckRow, SigningRow, LogRow.origin, LogRow.api)
            .join(SigningRow, SigningRow.id == BuildCheckRow.signing_id)
            .join(LogRow, LogRow.id == SigningRow.log_id)
            .where(BuildCheckRow.id.in_(ids))
            .order_by(BuildCheckRow.id)
        )
        return [ClaimedCheck(check, signing, origin, api) for check, signing, origin, api in rows.all()]


async def reschedule(store: Store, check_id: int, error: str, at: datetime) -> None:
    async with store.sessions.begin() as session:
        await session.execute(
            update(BuildCheckRow)
            .where(BuildCheckRow.id == check_id)
            .values(attempts=BuildCheckRow.attempts + 1, last_error=error, next_attempt_at=at)
        )


async def drop(store: Store, check_id: int) -> None:
    async with store.sessions.begin() as session:
        await session.execute(delete(BuildCheckRow).where(BuildCheckRow.id == check_id))


async def finish(
    store: Store,
    claimed: ClaimedCheck,
    outcome: BuildOutcome,
    alert: NewAlert | None,
    sinks: Sequence[tuple[str, str]] = (),
) -> list[AlertRow]:
    """Keep the outcome with the signing, raise its alert, and take the check off the queue, at once.
    Returns the alerts that were new."""
    async with store.sessions.begin() as session:
        removed = await session.execute(delete(BuildCheckRow).where(BuildCheckRow.id == claimed.check.id))
        if removed.rowcount != 1:
            return []  # another checker finished it after our lease ran out
        await session.execute(
            update(SigningRow)
            .where(SigningRow.id == claimed.signing.id)
            .values(
                build_verified=outcome.verified,
                build_status=outcome.status,
                build_created=outcome.created,
                build_finished=outcome.finished,
                build_reason=outcome.reason,
                build_checked_at=outcome.checked_at,
            )
        )
        return await store.insert_alerts(session, [alert] if alert else [], sinks)


async def pending_count(store: Store) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(BuildCheckRow)) or 0)
