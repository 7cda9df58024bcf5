"""What the HTTP API accepts from a request: query parameters, cursors and the bearer token.

Everything a client sends is checked here, before it reaches a query: a parameter the endpoint
does not know, one given twice, a NUL (PostgreSQL text refuses it), an integer of more digits than
an id can have or beyond the database's INTEGER ids, a cursor this API did not give out, a time
that is no time, a value outside its choices, an Authorization header that is not UTF-8. Each is a
`BadRequest` with a one-line message (the API answers 400 with it); nothing a client sends can
reach the database as an error.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import datetime

from multidict import MultiMapping

from monitor.timefmt import parse_time

MAX_ID = 2**31 - 1
"""Ids are INTEGER on PostgreSQL: a larger one is no id, and would be a database error."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_VALUE_LENGTH = 2048
"""A filter value longer than this matches nothing stored (indexed values are at most 1 KiB)."""
_DECIMAL = re.compile(r"[0-9]{1,10}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,16}")


class BadRequest(Exception):
    """A client error: the message is safe to send back (it never echoes long input)."""


def decimal(raw: str, what: str, minimum: int, maximum: int) -> int:
    """An ASCII decimal integer within [minimum, maximum], or BadRequest."""
    if not _DECIMAL.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise BadRequest(f"{what} must be an integer from {minimum} to {maximum}")
    return int(raw)


def encode_cursor(before_id: int | None) -> str | None:
    return None if before_id is None else base64.urlsafe_b64encode(str(before_id).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> int:
    if _CURSOR.fullmatch(raw):
        try:
            value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
            return decimal(value, "cursor", 1, MAX_ID)
        except (binascii.Error, UnicodeDecodeError, ValueError, BadRequest):
            pass
    raise BadRequest("cursor is not one this API gave out")


class Params:
    """The query parameters of one request, each known to the endpoint and given at most once.
    An empty value counts as absent."""

    def __init__(self, query: MultiMapping[str], known: Iterable[str]):
        allowed = frozenset(known)
        self._values: dict[str, str] = {}
        for name in query:
            if name not in allowed:
                raise BadRequest(f"unknown parameter {_shown(name)}; this endpoint takes {', '.join(sorted(allowed))}")
            values = query.getall(name)
            if len(values) > 1:
                raise BadRequest(f"parameter {name} is given {len(values)} times; give it once")
            value = values[0]
            if "\x00" in value:
                raise BadRequest(f"parameter {name} holds a NUL character")
            if len(value) > MAX_VALUE_LENGTH:
                raise BadRequest(f"parameter {name} is longer than {MAX_VALUE_LENGTH} characters")
            if value:
                self._values[name] = value

    def text(self, name: str) -> str | None:
        return self._values.get(name)

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._values.get(name)
        return () if value is None else (value,)

    def choices(self, name: str, allowed: Iterable[str]) -> tuple[str, ...]:
        options = tuple(allowed)
        value = self._values.get(name)
        if value is not None and value not in options:
            raise BadRequest(f"{name} must be one of {', '.join(options)}")
        return () if value is None else (value,)

    def choice(self, name: str, allowed: Iterable[str]) -> str | None:
        return next(iter(self.choices(name, allowed)), None)

    def limit(self) -> int:
        raw = self._values.get("limit")
        return DEFAULT_LIMIT if raw is None else decimal(raw, "limit", 1, MAX_LIMIT)

    def cursor(self) -> int | None:
        raw = self._values.get("cursor")
        return None if raw is None else decode_cursor(raw)

    def time(self, name: str) -> datetime | None:
        raw = self._values.get(name)
        if raw is None:
            return None
        try:
            return parse_time(raw)
        except ValueError as exc:
            raise BadRequest(f"{name}: {exc}") from None


def bearer_token(header: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, as bytes; None without one."""
    if header is None:
        return None
    try:
        raw = header.encode("utf-8")
    except UnicodeEncodeError:  # aiohttp keeps undecodable header bytes as surrogates
        raise BadRequest("the Authorization header is not valid UTF-8") from None
    scheme, _, token = raw.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:40] + "…")
