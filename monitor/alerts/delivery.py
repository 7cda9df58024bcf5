"""What every sink shares: the `Sink` protocol, `DeliveryError`, and one JSON POST with its failure modes.

Error messages end up in `alert_deliveries.last_error`, in logs and in the API, so they are built
from the status code, the receiver's answer and the error's class and OS reason only: never from the
URL's path or query, which may carry a token (Slack webhook URLs are secrets). The dispatcher also
scrubs every message of the sink's secrets, in case a receiver echoes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from monitor.alerts.message import AlertMessage

RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
SNIPPET_BYTES = 200


class DeliveryError(Exception):
    """A send that did not succeed. `retryable=False`: asking again as is will not help (e.g. HTTP 400)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class Sink(Protocol):
    name: str

    async def send(self, alert: AlertMessage) -> None:
        """Deliver one alert, or raise DeliveryError."""
        ...


async def post_json(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """POST `body` as JSON; any 2xx is success. Redirects are not followed (a signed webhook must not
    be replayed elsewhere): a 3xx is a failure like a 4xx."""
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with session.post(url, data=body, headers=request_headers, allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return
            snippet = await _answer_snippet(response)
    except aiohttp.ClientError as exc:
        raise DeliveryError(_describe(exc)) from None
    message = f"HTTP {response.status}: {snippet}" if snippet else f"HTTP {response.status}"
    raise DeliveryError(message, retryable=response.status in RETRYABLE_STATUSES)


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
