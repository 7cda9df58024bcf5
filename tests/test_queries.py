"""The read queries against a Python model of the same rows, on SQLite and PostgreSQL: every filter
combination pages (keyset) to exactly the matching rows, newest first, and counts them; the listing
streams them in batches."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import literal, select

from monitor.report import signing_batches
from monitor.store.db import upgrade
from monitor.store.models import Rfc3339Text, UTCDateTime
from monitor.store.queries import SigningFilter, count_signings, keyset_batches, signings_page
from monitor.store.repository import Store
from monitor.timefmt import rfc3339
from tests.seed import EPOCH, Spec, seed

ACME = Spec()
DEBUG = Spec(pipeline_id="65e6d5551e47e5bc243ca93f", pipeline_name="app/debug", verdict="unexpected_pipeline")
IMPOSTOR = Spec(account_id="77aa80b693a15c0f9c13ab99", account_name="ACME", verdict="impersonation")
GITHUB = Spec(
    account_id="",
    account_name="",
    pipeline_id="",
    pipeline_name="",
    issuer="https://token.actions.githubusercontent.com",
    verdict="unwatched",
)
MINUTE = timedelta(minutes=1)
SPECS = [random.Random(3).choice([ACME, ACME, DEBUG, IMPOSTOR, GITHUB]) for _ in range(57)]

Case = tuple[SigningFilter, Callable[[int, Spec], bool]]
CASES: list[Case] = [
    (SigningFilter(), lambda i, s: True),
    (SigningFilter(accounts=("acme",)), lambda i, s: s.account_name == "acme"),
    (SigningFilter(accounts=(IMPOSTOR.account_id, "acme")), lambda i, s: s in (ACME, DEBUG, IMPOSTOR)),
    (SigningFilter(pipelines=("app/debug", ACME.pipeline_id)), lambda i, s: s in (ACME, DEBUG, IMPOSTOR)),
    (SigningFilter(verdicts=("impersonation", "unwatched")), lambda i, s: s in (IMPOSTOR, GITHUB)),
    (SigningFilter(accounts=("acme",), verdicts=("expected",)), lambda i, s: s == ACME),
    (SigningFilter(issuers=(GITHUB.issuer,)), lambda i, s: s == GITHUB),
    (
        SigningFilter(accounts=("acme", "ACME"), since=EPOCH + MINUTE * 10, until=EPOCH + MINUTE * 40),
        lambda i, s: s in (ACME, DEBUG, IMPOSTOR) and 10 <= i < 40,
    ),
    (SigningFilter(accounts=("nobody",)), lambda i, s: False),
]


def expected(matches: Callable[[int, Spec], bool]) -> list[int]:
    return [index for index in reversed(range(len(SPECS))) if matches(index, SPECS[index])]


@pytest.fixture
async def store(database_url: str):  # type: ignore[no-untyped-def]
    await seed(database_url, SPECS)
    async with Store.open(database_url) as opened:
        yield opened


async def test_pages_hold_exactly_the_matching_rows_newest_first(store: Store) -> None:
    for where, matches in CASES:
        got: list[int] = []
        before = None
        while True:
            rows, before = await signings_page(store, where, limit=7, before_id=before)
            got += [row.log_index for row in rows]
            if before is None:
                break
        assert got == expected(matches), where
        assert await count_signings(store, where) == len(got), where


async def test_a_listing_streams_in_batches_up_to_its_limit(store: Store) -> None:
    where, matches = CASES[2]
    every = [record[2] async for batch in signing_batches(store, where, None) for record in batch]  # log_index
    assert every == expected(matches)
    assert [record[2] async for batch in signing_batches(store, where, 5) for record in batch] == every[:5]


async def test_keyset_batches_ask_for_the_next_batch_below_the_last_key() -> None:
    rows = list(range(100, 0, -1))
    asked: list[tuple[int | None, int]] = []

    async def page(before: int | None, size: int) -> list[int]:
        asked.append((before, size))
        return [row for row in rows if before is None or row < before][:size]

    batches = [batch async for batch in keyset_batches(page, lambda row: row, limit=45, batch_size=20)]
    assert [len(batch) for batch in batches] == [20, 20, 5]
    assert asked == [(None, 20), (81, 20), (61, 5)]
    every = [batch async for batch in keyset_batches(page, lambda row: row, limit=None, batch_size=50)]
    assert [len(batch) for batch in every] == [50, 50] and asked[-2:] == [(51, 50), (1, 50)]


async def test_the_next_batch_is_asked_for_before_the_caller_gets_this_one() -> None:
    """So the database works on it while the caller writes this one (an export's speed)."""
    asked: list[int | None] = []

    async def page(before: int | None, size: int) -> list[int]:
        asked.append(before)
        await asyncio.sleep(0.01)  # the database's time
        start = 100 if before is None else before
        return list(range(start - 1, max(start - 1 - size, 0), -1))

    seen_when_given: list[list[int | None]] = []
    async for _batch in keyset_batches(page, lambda row: row, limit=60, batch_size=20):
        seen_when_given.append(list(asked))
    assert seen_when_given == [[None, 80], [None, 80, 60], [None, 80, 60]]


async def test_a_stream_left_early_waits_for_the_query_it_sent() -> None:
    """Closed before its end (a closed pipe), the stream cancels the query it sent ahead and waits
    for it to end: the connection is idle when its lender closes it."""
    ended: list[int | None] = []

    async def page(before: int | None, size: int) -> list[int]:
        try:
            await asyncio.sleep(0.01)
            return list(range(size, 0, -1)) if before is None else list(range(before - 1, 0, -1))[:size]
        finally:
            ended.append(before)

    stream = keyset_batches(page, lambda row: row, limit=None, batch_size=10)
    assert len(await anext(stream)) == 10
    await stream.aclose()
    assert ended == [None, 1]


async def test_a_stream_left_early_leaves_no_unretrieved_failure_behind() -> None:
    """A query ahead that fails as it is cancelled (a driver's error) is not reported at exit as a
    task exception never retrieved (a line on stderr of an export that stopped cleanly)."""
    reported: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))

    async def page(before: int | None, size: int) -> list[int]:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise RuntimeError("connection lost while cancelling") from None
        return list(range(size, 0, -1))

    stream = keyset_batches(page, lambda row: row, limit=None, batch_size=10)
    await anext(stream)
    await stream.aclose()
    del stream
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


TRICKY_TIMES = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # cut, never rounded into the next year
    datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    ),  # X.509 "no well-defined expiration" (asyncpg sends datetime.max as infinity)
    datetime(2026, 6, 1, 1, 30, 0, 999500, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


async def test_the_database_writes_times_as_rfc3339_does(database_url: str) -> None:
    await upgrade(database_url)
    async with Store.open(database_url) as store, store.engine.connect() as connection:
        for moment in TRICKY_TIMES:
            written = await connection.scalar(select(Rfc3339Text(literal(moment, UTCDateTime()))))
            assert written == rfc3339(moment), moment
        assert await connection.scalar(select(Rfc3339Text(literal(None, UTCDateTime())))) is None
