"""PagerDuty Events API v2: one `trigger` per alert, de-duplicated by the alert's dedup_key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from monitor.alerts.delivery import post_json
from monitor.alerts.message import AlertMessage
from monitor.store.models import iso

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255


def pagerduty_dedup_key(dedup_key: str) -> str:
    """The alert's dedup_key, or its digest when longer than PagerDuty accepts (it would answer 400)."""
    if len(dedup_key) <= DEDUP_KEY_LIMIT:
        return dedup_key
    return "sha256:" + hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()


def pagerduty_event(alert: AlertMessage, routing_key: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "summary": alert.summary[:SUMMARY_LIMIT],
        "source": "rekorwatch",
        "severity": SEVERITIES.get(alert.severity, "error"),
        "timestamp": iso(alert.created_at),
        "class": alert.kind,
        "custom_details": {
            "alert_id": alert.delivery_id,
            "dedup_key": alert.dedup_key,
            "kind": alert.kind,
            "signing": alert.signing,
            "log": alert.log,
            "details": dict(alert.details),
        },
    }
    if alert.account:
        payload["group"] = alert.account
    if alert.pipeline:
        payload["component"] = alert.pipeline
    links = [{"href": url, "text": text} for url, text in ((alert.run_url, "CI run"), (alert.entry_url, "Log entry"))]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": pagerduty_dedup_key(alert.dedup_key),
        "client": "rekorwatch",
        "payload": payload,
        "links": [link for link in links if link["href"]],
    }


@dataclass(frozen=True)
class PagerDutySink:
    name: str
    session: aiohttp.ClientSession = field(repr=False)
    routing_key: str = field(repr=False)
    url: str = field(default=EVENTS_URL, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps(pagerduty_event(alert, self.routing_key), ensure_ascii=False).encode("utf-8")
        await post_json(self.session, self.url, body, extra=self.headers)
