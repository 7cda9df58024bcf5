"""Times as rekorwatch writes and reads them.

Written: RFC 3339 in UTC to the second, `2026-01-02T03:04:05Z`, in every format (tables, CSV, JSON);
a naive datetime is UTC. Read (`--since`, `since=`): RFC 3339 (no offset means UTC), a date
(`2026-01-02`, midnight UTC), or a span before now (`30m`, `24h`, `7d`, `2w`). Every parsed time is
timezone-aware UTC and within the range datetime can hold; anything else is a ValueError with a
one-line message.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"(\d{1,7})([smhdw])")
_SPAN_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_TIME_TEXT = 64
"""Longer input is no time: rejected before any parsing."""


def rfc3339(moment: datetime | None) -> str | None:
    """`2026-01-02T03:04:05Z`: UTC, whole seconds (sub-second digits are dropped, not rounded)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.isoformat(timespec="seconds") + "Z"
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds")[:-6] + "Z"  # without its "+00:00"


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An absolute time, a date, or a span before `now` (default: the current time) -> aware UTC."""
    text = value.strip()
    if len(text) > MAX_TIME_TEXT:
        raise ValueError("is not a time: too long")
    span = _SPAN.fullmatch(text)
    if span:
        return _before(now or datetime.now(UTC), int(span.group(1)), span.group(2), text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an RFC 3339 time, a YYYY-MM-DD date or a span like 30m, 24h, 7d") from None


def _before(now: datetime, amount: int, unit: str, text: str) -> datetime:
    try:
        return now - timedelta(**{_SPAN_UNIT[unit]: amount})
    except OverflowError:
        raise ValueError(f"{text} reaches before year 1") from None
