"""Listings: rows streamed from the store to an output as a table, CSV or one JSON array.

Generic over what is listed (signings, alerts, and any later listing): a `Listing` names its fields,
each with the kind of value it holds, and its table columns. Records are tuples in field order.

Invariants:
- Rows come in batches and are written as they come: memory holds one batch, whatever the total.
- A field's kind fixes how it is written, the same in every format: times in RFC 3339, UTC, to the
  second; booleans `true`/`false`; null is empty in CSV and tables, `null` in JSON.
- CSV follows RFC 4180 (a field holding `,`, `"` or a line break is quoted); fields of JSON value
  come last and are always quoted. JSON output is one valid array, even when empty. Output is UTF-8
  whatever the locale.
- Table cells never carry control or bidirectional-override characters from the data (a hostile
  certificate cannot drive the terminal or reorder what it shows). With a width, columns marked
  `flex` are narrowed to fit it and long cells are cut with `…`; `wide` shows every character.
  Column widths are fixed by the first batch, so the table streams too.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, BinaryIO, Protocol

import orjson

from monitor.whole_writes import write_whole

Record = Sequence[Any]


class Kind(Enum):
    TEXT = "text"
    INT = "int"
    TIME = "time"  # RFC 3339 text, as the database writes it (store.models.Rfc3339Text)
    BOOL = "bool"
    JSON_TEXT = "json_text"  # JSON already serialized (as stored)
    JSON = "json"  # a Python value to serialize


JSON_KINDS = (Kind.JSON_TEXT, Kind.JSON)


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = Kind.TEXT


@dataclass(frozen=True)
class Column:
    """A table column: its header, its text (that of `field`, by default the field named like the
    header, or computed from the record's values by field name), and whether it may be narrowed
    to fit the terminal."""

    header: str
    text: Callable[[Mapping[str, Any]], str] | None = None
    flex: bool = False
    field: str | None = None


@dataclass(frozen=True)
class Listing:
    noun: str
    """What is listed, plural: `showing 100 of 2000 signings`."""
    fields: tuple[Field, ...]
    columns: tuple[Column, ...]
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        kinds = [f.kind in JSON_KINDS for f in self.fields]
        if kinds != sorted(kinds):
            raise ValueError("fields of JSON value must come last")
        object.__setattr__(self, "names", tuple(f.name for f in self.fields))


# cell values -----------------------------------------------------------------------------------


def _bool_text(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _int_text(value: int | None) -> str:
    return "" if value is None else str(value)


def _json_text(value: Any) -> str:
    return "" if value is None else orjson.dumps(value).decode()


def _stored_json_text(value: str | None) -> str:
    return value or ""


def _stored_json_value(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value  # shown as it is stored rather than lost


TEXT_OF: dict[Kind, Callable[[Any], str]] = {
    Kind.INT: _int_text,
    Kind.BOOL: _bool_text,
    Kind.JSON_TEXT: _stored_json_text,
    Kind.JSON: _json_text,
}
"""How a value is written as text (CSV, tables); TEXT and TIME are the value itself, or empty."""

JSON_VALUE_OF: dict[Kind, Callable[[Any], Any]] = {
    Kind.JSON_TEXT: _stored_json_value,
}
"""How a value is converted for JSON output; kinds not listed are JSON values already."""


# writers ---------------------------------------------------------------------------------------


class Writer(Protocol):
    def begin(self) -> bytes: ...

    def rows(self, batch: Sequence[Record]) -> bytes: ...

    def end(self, written: int) -> bytes: ...


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")


class CsvWriter:
    """RFC 4180 CSV with a header line; the common row (nothing to quote) is joined at C speed."""

    def __init__(self, listing: Listing):
        self._names = listing.names
        self._plain = sum(f.kind not in JSON_KINDS for f in listing.fields)
        self._converts = [(i, TEXT_OF[f.kind]) for i, f in enumerate(listing.fields) if f.kind in TEXT_OF]
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")  # both characters make a field quoted

    def begin(self) -> bytes:
        return _utf8(",".join(self._names) + "\n")

    def rows(self, batch: Sequence[Record]) -> bytes:
        lines = []
        for record in batch:
            cells = [("" if value is None else value) for value in record]
            for index, convert in self._converts:
                cells[index] = convert(record[index])
            lines.append(self._line(cells))
        lines.append("")
        return _utf8("\n".join(lines))

    def end(self, written: int) -> bytes:
        return b""

    def _line(self, cells: list[str]) -> str:
        plain = cells[: self._plain]
        head = ",".join(plain)
        if head.count(",") != len(plain) - 1 or '"' in head or "\n" in head or "\r" in head:
            head = self._quoted(plain)
        tail = "".join(',"' + cell.replace('"', '""') + '"' if cell else "," for cell in cells[self._plain :])
        return head + tail

    def _quoted(self, cells: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(cells)
        return self._buffer.getvalue()[:-2]


class JsonWriter:
    """One JSON array, an object per line."""

    def __init__(self, listing: Listing):
        self._fields = [(f.name, JSON_VALUE_OF.get(f.kind)) for f in listing.fields]
        self._first = True

    def begin(self) -> bytes:
        return b"["

    def rows(self, batch: Sequence[Record]) -> bytes:
        objects = [
            orjson.dumps(
                {
                    name: (value if convert is None or value is None else convert(value))
                    for (name, convert), value in zip(self._fields, record, strict=True)
                }
            )
            for record in batch
        ]
        separator = b"\n  " if self._first else b",\n  "
        self._first = False
        return separator + b",\n  ".join(objects)

    def end(self, written: int) -> bytes:
        return b"\n]\n" if written else b"]\n"


_UNSAFE = {code: "\ufffd" for code in (*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F, 0x061C)}
_UNSAFE |= {code: "\ufffd" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_UNSAFE |= {ord("\t"): " ", ord("\n"): " ", ord("\r"): " "}
ELLIPSIS = "…"
MIN_FLEX_WIDTH = 8
GAP = "  "


def safe_cell(text: str) -> str:
    """`text` with nothing a terminal would interpret: controls and bidi overrides become U+FFFD."""
    return text.translate(_UNSAFE)


class TableWriter:
    """An aligned text table for people; `width` (the terminal's) or None for no limit."""

    def __init__(self, listing: Listing, *, width: int | None, wide: bool = False):
        self._listing = listing
        self._width = None if wide else width
        self._widths: list[int] = []
        self._text_of = {f.name: TEXT_OF.get(f.kind) for f in listing.fields}

    def begin(self) -> bytes:
        return b""

    def rows(self, batch: Sequence[Record]) -> bytes:
        cells = [self._cells(record) for record in batch]
        lines = []
        if not self._widths:
            self._widths = self._fit(cells)
            lines.append(self._line([column.header.upper() for column in self._listing.columns]))
        lines += [self._line(row) for row in cells]
        lines.append("")
        return _utf8("\n".join(lines))

    def end(self, written: int) -> bytes:
        return b"" if written else _utf8(f"(no {self._listing.noun})\n")

    def _cells(self, record: Record) -> list[str]:
        values = dict(zip(self._listing.names, record, strict=True))
        return [
            safe_cell(column.text(values) if column.text else self._text(column.field or column.header, values))
            for column in self._listing.columns
        ]

    def _text(self, name: str, values: Mapping[str, Any]) -> str:
        value, convert = values[name], self._text_of[name]
        return convert(value) if convert else ("" if value is None else str(value))

    def _fit(self, rows: list[list[str]]) -> list[int]:
        """Natural widths; with a width limit, flex columns share what the others leave."""
        columns = self._listing.columns
        natural = [max(len(column.header), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
        if self._width is None:
            return natural
        flex = sorted((i for i, column in enumerate(columns) if column.flex), key=natural.__getitem__)
        room = self._width - len(GAP) * (len(columns) - 1) - sum(w for i, w in enumerate(natural) if i not in flex)
        widths = list(natural)
        while flex:
            share = room // len(flex)
            if natural[flex[0]] > share:
                for i in flex:
                    widths[i] = max(share, MIN_FLEX_WIDTH)
                break
            room -= natural[flex.pop(0)]
        return widths

    def _line(self, cells: list[str]) -> str:
        if self._width is not None:
            cells = [_elided(cell, w) for cell, w in zip(cells, self._widths, strict=True)]
        return GAP.join(cell.ljust(w) for cell, w in zip(cells, self._widths, strict=True)).rstrip()


def _elided(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + ELLIPSIS


# streaming -------------------------------------------------------------------------------------


async def stream_listing(batches: AsyncGenerator[Sequence[Record], None], writer: Writer, out: BinaryIO) -> int:
    """Write every batch as it arrives; the number of records written. Writes happen off the
    event loop (a pipe may block), one at a time and in order. `batches` is closed when this
    returns or fails (a closed pipe), so what it holds (a connection) is given back at once."""
    written = 0
    await _write(out, writer.begin())
    async with contextlib.aclosing(batches):
        async for batch in batches:
            await _write(out, writer.rows(batch))
            written += len(batch)
    await _write(out, writer.end(written))
    return written


async def _write(out: BinaryIO, data: bytes) -> None:
    if data:
        await asyncio.to_thread(write_whole, out, data)
