"""Configured sinks -> `Sink` objects, and the secret strings their errors must never show."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from monitor.alerts.alertmanager import AlertmanagerSink
from monitor.alerts.delivery import Sink
from monitor.alerts.logsink import LogSink
from monitor.alerts.pagerduty import EVENTS_URL, PagerDutySink
from monitor.alerts.slack import SlackSink
from monitor.alerts.webhook import WebhookSink
from monitor.config import AlertSink

MIN_SECRET_FRAGMENT = 8
MIN_CUT_SECRET = 4
REDACTED = "[redacted]"


def build_sink(config: AlertSink, session: aiohttp.ClientSession) -> Sink:
    secret = config.secret.get_secret_value() if config.secret else None
    url = config.url or ""
    match config.type:
        case "webhook":
            return WebhookSink(config.sink_name, session, url, secret)
        case "slack":
            return SlackSink(config.sink_name, session, url)
        case "pagerduty":
            routing_key = config.routing_key.get_secret_value() if config.routing_key else ""
            return PagerDutySink(config.sink_name, session, routing_key, url or EVENTS_URL)
        case "alertmanager":
            return AlertmanagerSink(config.sink_name, session, url)
        case "log":
            return LogSink(config.sink_name)
    raise ValueError(f"unknown sink type {config.type!r}")


def secret_values(config: AlertSink) -> tuple[str, ...]:
    """Strings to scrub from anything a sink reports: its secrets, its URL, and the URL's path and
    query (a receiver echoing `/services/T0/B0/XXXX` leaks a Slack token just as well)."""
    values = [secret.get_secret_value() for secret in (config.secret, config.routing_key) if secret]
    if config.url:
        parts = urlsplit(config.url)
        values += [config.url, parts.path, parts.query, f"{parts.path}?{parts.query}"]
    return tuple(sorted({v for v in values if len(v) >= MIN_SECRET_FRAGMENT}, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in `text`, and a secret's beginning at its end (an answer snippet cut short)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for secret in secrets:
        for size in range(len(secret) - 1, MIN_CUT_SECRET - 1, -1):
            if text.endswith(secret[:size]):
                return text[:-size] + REDACTED
    return text
