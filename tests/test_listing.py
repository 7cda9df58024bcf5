"""Listings and times, without a database: each format writes what a reader parses back, hostile
values included; tables fit and never carry terminal escapes; times are to the second everywhere."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.listing import (
    Column,
    CsvWriter,
    Field,
    JsonWriter,
    Kind,
    Listing,
    TableWriter,
    safe_cell,
    stream_listing,
)
from monitor.report import SIGNINGS
from monitor.timefmt import parse_time, rfc3339
from tests.seed import Spec, signing_row

LISTING = Listing(
    noun="things",
    fields=(
        Field("id", Kind.INT),
        Field("name"),
        Field("at", Kind.TIME),
        Field("ok", Kind.BOOL),
        Field("raw", Kind.JSON_TEXT),
        Field("nested", Kind.JSON),
    ),
    columns=(Column("id"), Column("name", flex=True), Column("at"), Column("ok")),
)
AT = "2026-01-02T03:04:05Z"  # times come as the database writes them (tests/test_queries.py)
RECORDS = [
    (1, "plain", AT, True, '{"a": 1}', [{"x": None}]),
    (2, 'comma, "quote"\nnewline\r', None, False, None, None),
    (3, None, AT, None, "{not json", {"k": 'v,"'}),
]


def write(writer: CsvWriter | JsonWriter | TableWriter, batches: list[list[tuple]]) -> str:
    data = writer.begin() + b"".join(writer.rows(batch) for batch in batches)
    return (data + writer.end(sum(map(len, batches)))).decode()


class ClosedPipe(io.BytesIO):
    def write(self, data: bytes) -> int:
        if self.tell():
            raise BrokenPipeError
        return super().write(data)


async def test_a_listing_that_fails_to_write_closes_its_batches_at_once() -> None:
    """Whatever the batches hold (a database connection) is given back before the error goes up,
    not when the event loop ends."""
    closed: list[bool] = []

    async def batches() -> AsyncGenerator[list[tuple], None]:
        try:
            while True:
                yield RECORDS
        finally:
            closed.append(True)

    with pytest.raises(BrokenPipeError):
        await stream_listing(batches(), CsvWriter(LISTING), ClosedPipe())
    assert closed == [True]


def test_csv_round_trips_hostile_text_with_lowercase_booleans_and_seconds() -> None:
    rows = list(csv.reader(io.StringIO(write(CsvWriter(LISTING), [RECORDS[:2], RECORDS[2:]]), newline="")))
    assert rows[0] == ["id", "name", "at", "ok", "raw", "nested"]
    assert rows[1] == ["1", "plain", "2026-01-02T03:04:05Z", "true", '{"a": 1}', '[{"x":null}]']
    assert rows[2] == ["2", 'comma, "quote"\nnewline\r', "", "false", "", ""]
    assert rows[3] == ["3", "", "2026-01-02T03:04:05Z", "", "{not json", '{"k":"v,\\""}']


@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"])), min_size=1, max_size=5))
def test_csv_reads_back_any_text(names: list[str]) -> None:
    records = [(n, name, None, None, None, None) for n, name in enumerate(names)]
    rows = list(csv.reader(io.StringIO(write(CsvWriter(LISTING), [records]), newline="")))
    assert [row[1] for row in rows[1:]] == names


def test_json_is_one_array_even_empty_with_values_of_their_kind() -> None:
    assert json.loads(write(JsonWriter(LISTING), [])) == []
    objects = json.loads(write(JsonWriter(LISTING), [RECORDS[:1], RECORDS[1:]]))
    assert objects[0] == {
        "id": 1,
        "name": "plain",
        "at": "2026-01-02T03:04:05Z",
        "ok": True,
        "raw": {"a": 1},
        "nested": [{"x": None}],
    }
    assert objects[1]["name"] == 'comma, "quote"\nnewline\r' and objects[1]["at"] is None
    assert objects[2]["raw"] == "{not json" and objects[2]["at"] == "2026-01-02T03:04:05Z"


def test_a_table_fits_its_width_and_says_when_empty() -> None:
    long = ("x" * 200, *RECORDS[0][2:])
    text = write(TableWriter(LISTING, width=60), [[(1, *long)]])
    assert all(len(line) <= 60 for line in text.splitlines()) and "…" in text
    wide = write(TableWriter(LISTING, width=60, wide=True), [[(1, *long)]])
    assert "x" * 200 in wide
    assert write(TableWriter(LISTING, width=60), []) == "(no things)\n"


def test_a_later_batch_keeps_the_first_batch_widths() -> None:
    writer = TableWriter(LISTING, width=80)
    text = write(writer, [[RECORDS[0]], [(9, "a much longer name than the first", AT, True, None, None)]])
    header, first, later = text.splitlines()
    assert header.index("AT") == first.index("2026") == later.index("2026")


def test_table_cells_carry_no_control_or_bidi_characters() -> None:
    assert safe_cell("a\x1b[2Jb\x07\u202ec\u2066d\te\nf") == "a\ufffd[2Jb\ufffd\ufffdc\ufffdd e f"
    assert safe_cell("ünïcode ✓") == "ünïcode ✓"


def test_the_signing_listing_is_the_signing_object_and_signed_at() -> None:
    assert SIGNINGS.names == (
        *(name for name in signing_row(1, 0, Spec()).as_object() if name != "extensions"),
        "signed_at",
        "extensions",
    )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 1), "2026-01-02T03:04:05Z"),
        (None, None),
    ],
)
def test_times_are_written_in_utc_to_the_second(moment: datetime | None, text: str | None) -> None:
    assert rfc3339(moment) == text


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (" 2026-01-02T03:04:05 ", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_times_are_read_absolute_or_relative_to_now(text: str, moment: datetime) -> None:
    assert parse_time(text, NOW) == moment


@pytest.mark.parametrize(
    "text", ["yesterday", "24", "h", "-1d", "1.5h", "9999999w", "0001-01-01T00:00:00+14:00", "9" * 5000]
)
def test_what_is_no_time_is_a_one_line_value_error(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_time(text, NOW)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
