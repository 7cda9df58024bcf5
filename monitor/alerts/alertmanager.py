"""Prometheus Alertmanager: `POST {url}/api/v2/alerts` with one alert.

Alertmanager identifies an alert by its label set, so every rekorwatch alert has its own: the labels
hold the alert's id, its log and (for a signing) the account id, beside what routing and grouping
need (kind, severity, account, pipeline). Two rekorwatch alerts are never merged into one, and none
carries another's annotations.

Alertmanager resolves an alert at its `endsAt`, and one without `endsAt` after its
`resolve_timeout` (5 minutes by default); it keeps alerts in memory only. So:

- an event (a signing, an undecodable entry, a reset) is sent once with `endsAt` EVENT_HOLD after
  the send: long enough for its notification to go out (group_wait, group_interval) and for it to
  be seen in Alertmanager, short enough not to be repeated (repeat_interval is 4 h by default);
- a condition that lasts (AlertKind.lasting) is sent again every `resend_interval` while it holds,
  with `endsAt` RESEND_HOLD_FACTOR intervals ahead (as Prometheus does), so that neither a missed
  re-send nor a restarted Alertmanager resolves it; once its `resolved_at` is set it is sent once
  more with `endsAt = resolved_at`. The dispatcher does the re-sending (alerts/dispatcher.py).

Label values come from certificates and logs, which an attacker may fill: they are cut to
LABEL_LIMIT characters (the alert id keeps label sets distinct), and the body is ASCII JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from monitor.alerts.delivery import post_json
from monitor.alerts.message import AlertMessage
from monitor.store.models import iso, utcnow

EVENT_HOLD = timedelta(hours=1)
RESEND_HOLD_FACTOR = 4
LABEL_LIMIT = 256
ANNOTATION_LIMIT = 4096


def ends_at(alert: AlertMessage, now: datetime, resend_interval: float) -> datetime:
    """When Alertmanager should consider the alert over, as seen at `now`; never before it started."""
    if alert.lasting and alert.resolved_at is not None:
        end = alert.resolved_at
    elif alert.lasting:
        end = now + timedelta(seconds=RESEND_HOLD_FACTOR * resend_interval)
    else:
        end = now + EVENT_HOLD
    return max(end, alert.created_at)


def alertmanager_alert(alert: AlertMessage, now: datetime, resend_interval: float) -> dict[str, Any]:
    labels = {
        "alertname": f"rekorwatch_{alert.kind}",
        "kind": alert.kind,
        "severity": alert.severity,
        "alert_id": alert.delivery_id,
        "log": alert.log_url,
        "account_id": alert.signing_field("account_id"),
        "account": alert.account,
        "pipeline": alert.pipeline,
    }
    annotations = {
        "summary": alert.summary,
        "dedup_key": alert.dedup_key,
        "identity": alert.signing_field("identity"),
        "run_url": alert.run_url,
        "log_entry": alert.entry_url,
    }
    document: dict[str, Any] = {
        "labels": {name: _clip(value, LABEL_LIMIT) for name, value in labels.items() if value},
        "annotations": {name: _clip(value, ANNOTATION_LIMIT) for name, value in annotations.items() if value},
        "startsAt": iso(alert.created_at),
        "endsAt": iso(ends_at(alert, now, resend_interval)),
    }
    if alert.entry_url:
        document["generatorURL"] = alert.entry_url
    return document


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclass(frozen=True)
class AlertmanagerSink:
    name: str
    session: aiohttp.ClientSession = field(repr=False)
    url: str = field(repr=False)
    resend_interval: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    async def send(self, alert: AlertMessage) -> None:
        """`endsAt` is computed from the wall clock: Alertmanager compares it with its own."""
        document = alertmanager_alert(alert, utcnow(), self.resend_interval)
        body = json.dumps([document]).encode("ascii")
        await post_json(self.session, f"{self.url.rstrip('/')}/api/v2/alerts", body, extra=self.headers)
