"""Read queries behind `history`, `alerts` and the HTTP API: filters, newest first, keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, exists, or_, select

from monitor.store.models import AlertDeliveryRow, AlertRow, SigningRow
from monitor.store.repository import Store

MAX_LIMIT = 1000
Row = TypeVar("Row", SigningRow, AlertRow)


@dataclass(frozen=True)
class SigningFilter:
    issuer: str | None = None
    account: str | None = None  # id or name
    pipeline: str | None = None  # id or name
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AlertFilter:
    status: str | None = None  # pending | delivered | failed
    kind: str | None = None


def _signing_query(where: SigningFilter) -> Select[tuple[SigningRow]]:
    query = select(SigningRow)
    if where.issuer:
        query = query.where(SigningRow.issuer == where.issuer)
    if where.account:
        query = query.where(or_(SigningRow.account_id == where.account, SigningRow.account_name == where.account))
    if where.pipeline:
        query = query.where(or_(SigningRow.pipeline_id == where.pipeline, SigningRow.pipeline_name == where.pipeline))
    if where.verdict:
        query = query.where(SigningRow.verdict == where.verdict)
    if where.since:
        query = query.where(SigningRow.signed_at >= where.since)
    if where.until:
        query = query.where(SigningRow.signed_at < where.until)
    return query


async def signings_page(
    store: Store, where: SigningFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[SigningRow], int | None]:
    """Up to `limit` signings, newest first (by id: the order they were read from the log), and
    the id to continue before, or None on the last page."""
    return await _page(store, _signing_query(where), SigningRow, limit, before_id)


async def signing_by_id(store: Store, signing_id: int) -> SigningRow | None:
    async with store.sessions() as session:
        return await session.get(SigningRow, signing_id)


def _alert_query(where: AlertFilter) -> Select[tuple[AlertRow]]:
    query = select(AlertRow)
    if where.kind:
        query = query.where(AlertRow.kind == where.kind)
    if where.status:
        with_status = exists().where(AlertDeliveryRow.alert_id == AlertRow.id, AlertDeliveryRow.status == where.status)
        if where.status == "delivered":  # delivered = every delivery delivered
            not_done = exists().where(AlertDeliveryRow.alert_id == AlertRow.id, AlertDeliveryRow.status != "delivered")
            query = query.where(with_status, ~not_done)
        else:
            query = query.where(with_status)
    return query


async def alerts_page(
    store: Store, where: AlertFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[AlertRow], int | None]:
    return await _page(store, _alert_query(where), AlertRow, limit, before_id)


async def _page(
    store: Store, query: Select[tuple[Row]], model: type[Row], limit: int, before_id: int | None
) -> tuple[list[Row], int | None]:
    """Keyset pagination by id, newest first: one row more than asked tells whether a page follows."""
    if before_id is not None:
        query = query.where(model.id < before_id)
    query = query.order_by(model.id.desc()).limit(limit + 1)
    async with store.sessions() as session:
        rows = list((await session.scalars(query)).all())
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)
