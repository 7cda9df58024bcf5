"""Prometheus Alertmanager: `POST {url}/api/v2/alerts` with one alert.

Alertmanager identifies an alert by its labels, so they hold what routing and grouping need (kind,
severity, account, pipeline); everything specific to one signing goes into the annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from monitor.alerts.delivery import post_json
from monitor.alerts.message import AlertMessage
from monitor.store.models import iso


def alertmanager_alert(alert: AlertMessage) -> dict[str, Any]:
    labels = {"alertname": f"rekorwatch_{alert.kind}", "kind": alert.kind, "severity": alert.severity}
    if alert.account:
        labels["account"] = alert.account
    if alert.pipeline:
        labels["pipeline"] = alert.pipeline
    annotations = {
        "summary": alert.summary,
        "alert_id": alert.delivery_id,
        "dedup_key": alert.dedup_key,
        "identity": alert.signing_field("identity"),
        "run_url": alert.run_url,
        "log_url": alert.log_url,
        "log_entry": alert.entry_url,
    }
    document: dict[str, Any] = {
        "labels": labels,
        "annotations": {key: value for key, value in annotations.items() if value},
        "startsAt": iso(alert.created_at),
    }
    if alert.entry_url:
        document["generatorURL"] = alert.entry_url
    return document


@dataclass(frozen=True)
class AlertmanagerSink:
    name: str
    session: aiohttp.ClientSession = field(repr=False)
    url: str = field(repr=False)

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps([alertmanager_alert(alert)], ensure_ascii=False).encode("utf-8")
        await post_json(self.session, f"{self.url.rstrip('/')}/api/v2/alerts", body)
