"""What every sink shares: the `Sink` protocol, `DeliveryError`, and one JSON POST with its failure modes.

Error messages end up in `alert_deliveries.last_error`, in logs and in the API, so they are built
from the status code, the receiver's answer and the error's class and OS reason only: never from the
URL's path or query, which may carry a token (Slack webhook URLs are secrets). The dispatcher also
scrubs every message of the sink's secrets, in case a receiver echoes them (alerts/secrets.py).

A 429 or 503 may say when to come back (`Retry-After`, seconds or an HTTP date): the error carries
it, range-checked, as `retry_after` seconds; the dispatcher waits at least that long (up to the
sink's `backoff_cap`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp

from monitor.alerts.message import AlertMessage
from monitor.store.models import utcnow

RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRY_AFTER_LIMIT = 86400.0
"""Longer waits are read as this (the dispatcher caps it further); a bigger number is no error."""
SNIPPET_BYTES = 200


class DeliveryError(Exception):
    """A send that did not succeed. `retryable=False`: asking again as is will not help (e.g. HTTP 400).
    `retry_after`: seconds the receiver asked us to wait (Retry-After), if it did."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class Sink(Protocol):
    name: str

    async def send(self, alert: AlertMessage) -> None:
        """Deliver one alert, or raise DeliveryError."""
        ...


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> None:
    """POST `body` as JSON; any 2xx is success. Redirects are not followed (a signed webhook must not
    be replayed elsewhere): a 3xx is a failure like a 4xx. `headers` win over the configured `extra`."""
    request_headers = {**(extra or {}), "Content-Type": "application/json", **(headers or {})}
    try:
        async with session.post(url, data=body, headers=request_headers, allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return
            snippet = await _answer_snippet(response)
            retry_after = None
            if response.status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After", ""), utcnow())
    except aiohttp.ClientError as exc:
        raise DeliveryError(_describe(exc)) from None
    message = f"HTTP {response.status}: {snippet}" if snippet else f"HTTP {response.status}"
    raise DeliveryError(message, retryable=response.status in RETRYABLE_STATUSES, retry_after=retry_after)


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (RFC 9110: delay-seconds or an HTTP date), within
    [0, RETRY_AFTER_LIMIT]; None when absent or not understood."""
    value = value.strip()
    if not value or len(value) > 64:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value[:12]), RETRY_AFTER_LIMIT)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000" or no zone: HTTP dates are in GMT
        return None
    return min(max((moment - now).total_seconds(), 0.0), RETRY_AFTER_LIMIT)


async def _answer_snippet(response: aiohttp.ClientResponse) -> str:
    """The start of the receiver's answer on one line (Slack says `invalid_payload`, PagerDuty why)."""
    try:
        raw = await response.content.read(SNIPPET_BYTES)
    except aiohttp.ClientError:
        return ""
    return re.sub(r"\s+", " ", raw.decode("utf-8", "replace")).strip()


def _describe(exc: aiohttp.ClientError) -> str:
    """The error's class and OS reason (which may name host and port); str(exc) may hold the whole URL."""
    reason = exc.strerror if isinstance(exc, OSError) else None
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
