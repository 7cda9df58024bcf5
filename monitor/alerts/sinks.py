"""Configured sinks -> `Sink` objects."""

from __future__ import annotations

import aiohttp

from monitor.alerts.alertmanager import AlertmanagerSink
from monitor.alerts.delivery import Sink
from monitor.alerts.logsink import LogSink
from monitor.alerts.pagerduty import EVENTS_URL, PagerDutySink
from monitor.alerts.slack import SlackSink
from monitor.alerts.webhook import WebhookSink
from monitor.config import AlertSink


def build_sink(config: AlertSink, session: aiohttp.ClientSession) -> Sink:
    secret = config.secret.get_secret_value() if config.secret else None
    url = config.url or ""
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    match config.type:
        case "webhook":
            return WebhookSink(config.sink_name, session, url, secret, headers)
        case "slack":
            return SlackSink(config.sink_name, session, url, headers)
        case "pagerduty":
            routing_key = config.routing_key.get_secret_value() if config.routing_key else ""
            return PagerDutySink(config.sink_name, session, routing_key, url or EVENTS_URL, headers)
        case "alertmanager":
            return AlertmanagerSink(config.sink_name, session, url, config.resend_interval, headers)
        case "log":
            return LogSink(config.sink_name)
    raise ValueError(f"unknown sink type {config.type!r}")
