"""Read queries behind `history`, `alerts` and the HTTP API: filters, newest first, keyset pages.

Invariants:
- Order is by id, newest first; a page continues strictly below the last id seen (keyset), so a
  page deep in the history costs what the first one does, and rows added meanwhile never shift it.
- Within one filter the values given are OR-ed (`verdicts=(a, b)`: either), filters are AND-ed.
- A signing filter on accounts, pipelines, verdicts or issuers is driven by the first of them
  given: one ordered index range per value (`(column, id)`), merged, so a page never scans the
  rows of other accounts, however old the matching rows are.
- `keyset_batches` streams every matching row in constant memory (two batches at most: the next
  batch's query is sent before the caller gets this one, so the database works while the caller
  writes): one short query per batch, no transaction held open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, union_all

from monitor.store.models import AlertDeliveryRow, AlertRow, CertificateRow, SigningRow
from monitor.store.repository import Store

BATCH_SIZE = 2000
"""Rows per query when streaming a listing."""
T = TypeVar("T")
T_ROW = TypeVar("T_ROW", SigningRow, AlertRow, CertificateRow)


@dataclass(frozen=True)
class SigningFilter:
    issuers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # ids or names
    pipelines: tuple[str, ...] = ()  # ids or names
    verdicts: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class AlertFilter:
    status: str | None = None  # pending | delivered | failed
    kinds: tuple[str, ...] = ()


# signings --------------------------------------------------------------------------------------


def _id_or_name(values: tuple[str, ...], id_column: Any, name_column: Any) -> list[ColumnElement[bool]]:
    return [condition for value in values for condition in (id_column == value, name_column == value)]


def _dimensions(where: SigningFilter) -> list[list[ColumnElement[bool]]]:
    """The filters on indexed equality, each as its OR-ed alternatives, most selective first."""
    s = SigningRow
    dimensions = [
        _id_or_name(where.accounts, s.account_id, s.account_name),
        _id_or_name(where.pipelines, s.pipeline_id, s.pipeline_name),
        [s.verdict == verdict for verdict in where.verdicts],
        [s.issuer == issuer for issuer in where.issuers],
    ]
    return [alternatives for alternatives in dimensions if alternatives]


def _time_conditions(where: SigningFilter) -> list[ColumnElement[bool]]:
    conditions = []
    if where.since:
        conditions.append(SigningRow.signed_at >= where.since)
    if where.until:
        conditions.append(SigningRow.signed_at < where.until)
    return conditions


def signing_conditions(where: SigningFilter) -> list[ColumnElement[bool]]:
    return [or_(*alternatives) for alternatives in _dimensions(where)] + _time_conditions(where)


def signings_page_query(
    where: SigningFilter, columns: Sequence[Any], *, size: int, before_id: int | None = None
) -> Select[Any]:
    """`columns` of up to `size` signings below `before_id`, newest first."""
    below = [SigningRow.id < before_id] if before_id is not None else []
    dimensions = _dimensions(where)
    query = select(*columns).order_by(SigningRow.id.desc()).limit(size)
    if not dimensions:
        return query.where(*_time_conditions(where), *below)
    driving, *others = dimensions
    rest = [or_(*alternatives) for alternatives in others] + _time_conditions(where) + below
    branches = [
        select(SigningRow.id).where(alternative, *rest).order_by(SigningRow.id.desc()).limit(size).subquery()
        for alternative in driving
    ]
    ids = union_all(*(select(branch.c.id) for branch in branches)).subquery()
    return query.where(SigningRow.id.in_(select(ids.c.id)))


async def signings_page(
    store: Store, where: SigningFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[SigningRow], int | None]:
    """Up to `limit` signings, newest first (by id: the order they were read from the log), and
    the id to continue before, or None on the last page."""
    query = signings_page_query(where, [SigningRow], size=limit + 1, before_id=before_id)
    async with store.sessions() as session:
        return _page_of(list((await session.scalars(query)).all()), limit)


async def signing_by_id(store: Store, signing_id: int) -> SigningRow | None:
    async with store.sessions() as session:
        return await session.get(SigningRow, signing_id)


async def count_signings(store: Store, where: SigningFilter) -> int:
    return await _count(store, SigningRow, signing_conditions(where))


# alerts ----------------------------------------------------------------------------------------


def alert_conditions(where: AlertFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.kinds:
        conditions.append(AlertRow.kind.in_(where.kinds))
    if where.status:
        with_status = exists().where(AlertDeliveryRow.alert_id == AlertRow.id, AlertDeliveryRow.status == where.status)
        if where.status == "delivered":  # delivered = every delivery delivered
            not_done = exists().where(AlertDeliveryRow.alert_id == AlertRow.id, AlertDeliveryRow.status != "delivered")
            conditions.append(and_(with_status, ~not_done))
        else:
            conditions.append(with_status)
    return conditions


async def alert_rows(store: Store, where: AlertFilter, *, size: int, before_id: int | None = None) -> list[AlertRow]:
    """Up to `size` alerts below `before_id`, newest first."""
    query = select(AlertRow).where(*alert_conditions(where))
    if before_id is not None:
        query = query.where(AlertRow.id < before_id)
    async with store.sessions() as session:
        return list((await session.scalars(query.order_by(AlertRow.id.desc()).limit(size))).all())


async def alerts_page(
    store: Store, where: AlertFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[AlertRow], int | None]:
    return _page_of(await alert_rows(store, where, size=limit + 1, before_id=before_id), limit)


async def count_alerts(store: Store, where: AlertFilter) -> int:
    return await _count(store, AlertRow, alert_conditions(where))


async def _count(store: Store, model: type, conditions: Sequence[ColumnElement[bool]]) -> int:
    query = select(func.count()).select_from(model).where(*conditions)
    async with store.sessions() as session:
        return int(await session.scalar(query) or 0)


def _page_of(rows: list[T_ROW], limit: int) -> tuple[list[T_ROW], int | None]:
    """A page from `limit + 1` rows: the extra one only tells that another page follows."""
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


# streaming -------------------------------------------------------------------------------------


async def keyset_batches(
    fetch_page: Callable[[int | None, int], Awaitable[Sequence[T]]],
    key_of: Callable[[T], int],
    *,
    limit: int | None,
    batch_size: int = BATCH_SIZE,
) -> AsyncGenerator[Sequence[T], None]:
    """Every row `fetch_page(before_id, size)` pages through (newest first), at most `limit`, in
    batches of at most `batch_size`. The next batch is fetched while this one is consumed (the
    database works while the caller writes), so at most two batches are in memory."""
    remaining = limit
    pending: asyncio.Task[Sequence[T]] | None = asyncio.ensure_future(fetch_page(None, _size(batch_size, remaining)))
    try:
        while pending is not None:
            size = _size(batch_size, remaining)
            rows = await pending
            pending = None
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) == size and remaining != 0:
                pending = asyncio.ensure_future(fetch_page(key_of(rows[-1]), _size(batch_size, remaining)))
                await asyncio.sleep(0)  # it sends its query now, not after the caller's turn
            if rows:
                yield rows
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.wait([pending])  # its connection is idle again before its lender closes it
            if not pending.cancelled():
                pending.exception()  # a failure it met on the way out goes with the stream it served


def _size(batch_size: int, remaining: int | None) -> int:
    return batch_size if remaining is None else min(batch_size, remaining)


# certificates (CT) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateFilter:
    issuers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # ids or names
    pipelines: tuple[str, ...] = ()  # ids or names
    verdicts: tuple[str, ...] = ()
    logged: bool | None = None
    """False: no Rekor signing used the certificate (yet); True: one did; None: either."""
    since: datetime | None = None  # by CT timestamp
    until: datetime | None = None  # exclusive


def certificate_conditions(where: CertificateFilter) -> list[ColumnElement[bool]]:
    c = CertificateRow
    alternatives = [
        [c.issuer == issuer for issuer in where.issuers],
        _id_or_name(where.accounts, c.account_id, c.account_name),
        _id_or_name(where.pipelines, c.pipeline_id, c.pipeline_name),
        [c.verdict == verdict for verdict in where.verdicts],
    ]
    conditions = [or_(*options) for options in alternatives if options]
    if where.logged is not None:
        conditions.append(c.signing_id.is_not(None) if where.logged else c.signing_id.is_(None))
    if where.since:
        conditions.append(c.ct_timestamp >= where.since)
    if where.until:
        conditions.append(c.ct_timestamp < where.until)
    return conditions


def certificates_page_query(
    where: CertificateFilter, columns: Sequence[Any], *, size: int, before_id: int | None = None
) -> Select[Any]:
    """`columns` of up to `size` certificates below `before_id`, newest first."""
    below = [CertificateRow.id < before_id] if before_id is not None else []
    query = select(*columns).where(*certificate_conditions(where), *below)
    return query.order_by(CertificateRow.id.desc()).limit(size)


async def certificates_page(
    store: Store, where: CertificateFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[CertificateRow], int | None]:
    query = certificates_page_query(where, [CertificateRow], size=limit + 1, before_id=before_id)
    async with store.sessions() as session:
        return _page_of(list((await session.scalars(query)).all()), limit)


async def count_certificates(store: Store, where: CertificateFilter) -> int:
    return await _count(store, CertificateRow, certificate_conditions(where))
