"""Generic webhook: one alert per POST, the body and headers fixed by DESIGN.md."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from monitor.alerts.delivery import post_json
from monitor.alerts.message import AlertMessage

DELIVERY_HEADER = "X-Rekorwatch-Delivery"
SIGNATURE_HEADER = "X-Rekorwatch-Signature"


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`: what a receiver recomputes with the shared secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_headers(alert: AlertMessage, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: alert.delivery_id}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    return headers


@dataclass(frozen=True)
class WebhookSink:
    name: str
    session: aiohttp.ClientSession = field(repr=False)
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    async def send(self, alert: AlertMessage) -> None:
        body = alert.webhook_body()
        await post_json(self.session, self.url, body, webhook_headers(alert, body, self.secret), self.headers)
