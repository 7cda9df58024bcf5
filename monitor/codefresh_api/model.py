"""What the Codefresh builds API answers (FORMATS.md §9), read tolerantly.

`GET {api_url}/api/builds/<workflow id>` answers a JSON object of which rekorwatch reads `id`,
`serviceId` (the pipeline's id), `serviceName`, `created`, `finished` (absent while the build runs)
and `status`. The schema beyond those is not confirmed, so:
- `parse_build` never raises, whatever the bytes: a field that is missing, of another type, too long,
  holding control characters or out of range reads as None and is named in `problems`; extra fields
  are ignored. Every text kept is at most MAX_TEXT printable characters (safe in a one-line reason).
- Times are ISO 8601 strings or numbers of epoch milliseconds (what the Codefresh CLI's `moment()`
  accepts), always returned timezone-aware (UTC when the text has no offset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

WORKFLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A workflow id as sent in the request path: nothing a hostile certificate could use to reach
another path or host (Codefresh's own are 24-hex ObjectIds)."""

MAX_TEXT = 256
MAX_TIME_TEXT = 40
MAX_EPOCH_MILLISECONDS = 253370764800000  # 9999-01-01T00:00:00Z
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
EXPECTED_FIELDS = ("id", "serviceId", "serviceName", "created", "status")  # `finished` is absent while running
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def is_workflow_id(value: str) -> bool:
    return WORKFLOW_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Build:
    """One build (Codefresh calls it a workflow); every field None when the answer lacks it."""

    id: str | None
    service_id: str | None
    service_name: str | None
    created: datetime | None
    finished: datetime | None
    status: str | None


@dataclass(frozen=True)
class ParsedBuild:
    build: Build | None  # None: the answer is not a JSON object
    problems: tuple[str, ...]  # how the answer differs from the expected shape, by field name


@dataclass(frozen=True)
class Found:
    build: Build


@dataclass(frozen=True)
class NotFound:
    """404: no build with that id is visible to the account's key."""


@dataclass(frozen=True)
class Unauthorized:
    """401/403: the key is refused (wrong, revoked, or lacking a scope)."""

    status: int


@dataclass(frozen=True)
class Unavailable:
    """No answer worth judging (network, timeouts, 429/5xx after the retries, nonsense); ask later,
    not before `retry_after` seconds when the API said so."""

    reason: str
    retry_after: float | None = None


BuildAnswer = Found | NotFound | Unauthorized | Unavailable


def parse_build(body: bytes) -> ParsedBuild:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ParsedBuild(None, ("the answer is not JSON",))
    if not isinstance(document, dict):
        return ParsedBuild(None, (f"the answer is a JSON {type(document).__name__}, not an object",))
    problems: list[str] = []
    build = Build(
        id=_text(document, "id", problems),
        service_id=_text(document, "serviceId", problems),
        service_name=_text(document, "serviceName", problems),
        created=_time(document, "created", problems),
        finished=_time(document, "finished", problems),
        status=_text(document, "status", problems),
    )
    return ParsedBuild(build, tuple(problems))


def _missing(document: dict[str, Any], name: str, problems: list[str]) -> bool:
    if document.get(name) is not None:
        return False
    if name in EXPECTED_FIELDS:
        problems.append(f"{name}: missing")
    return True


def _text(document: dict[str, Any], name: str, problems: list[str]) -> str | None:
    if _missing(document, name, problems):
        return None
    value = document[name]
    if not isinstance(value, str):
        problems.append(f"{name}: a {type(value).__name__}, not a string")
    elif not value or len(value) > MAX_TEXT or _CONTROL.search(value):
        problems.append(f"{name}: empty, longer than {MAX_TEXT} characters or with control characters")
    else:
        return value
    return None


def _time(document: dict[str, Any], name: str, problems: list[str]) -> datetime | None:
    if _missing(document, name, problems):
        return None
    value = document[name]
    moment = _parse_time(value)
    if moment is None:
        problems.append(f"{name}: not an ISO 8601 time nor epoch milliseconds")
    return moment


def _parse_time(value: Any) -> datetime | None:
    """A UTC time between 1970 and 9999 (so that adding the run margin cannot overflow), or None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH_MILLISECONDS:
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str) or len(value) > MAX_TIME_TEXT:
        return None
    try:
        moment = datetime.fromisoformat(value)
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None
    return moment if EARLIEST <= moment <= LATEST else None
