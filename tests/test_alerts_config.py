"""The alert sinks' configuration: names unique (they key delivery rows and metrics), URLs and keys."""

from __future__ import annotations

import pytest

from monitor.alerts.dispatcher import outbox_sinks
from monitor.config import ConfigError, parse_settings


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, environ or {})
    return caught.value.problems


def test_two_sinks_of_one_type_need_names() -> None:
    text = """
alerts:
  - {type: webhook, url: https://a.example/hook}
  - {type: webhook, url: https://b.example/hook}
  - {type: log}
  - {type: slack, name: log, url: https://hooks.slack.com/services/x}
"""
    assert problems_of(text) == [
        "alerts[1]: two sinks are named 'webhook'; give each a `name`",
        "alerts[3]: two sinks are named 'log'; give each a `name`",
    ]


def test_named_sinks_route_by_name_and_min_severity() -> None:
    text = """
alerts:
  - {type: webhook, url: https://a.example/hook}
  - {type: webhook, name: audit, url: https://b.example/hook, min_severity: warning}
  - {type: pagerduty, routing_key: '${PD_KEY}', min_severity: critical}
"""
    settings = parse_settings(text, {"PD_KEY": "k3y"})
    assert outbox_sinks(settings.alerts) == [("webhook", "info"), ("audit", "warning"), ("pagerduty", "critical")]
    assert settings.alerts[2].url is None  # PagerDuty's own Events API endpoint


def test_sink_urls_must_be_http_and_are_not_echoed() -> None:
    problems = problems_of("alerts: [{type: slack, url: 'hooks.slack.com/services/T0/B0/S3CRET'}]")
    assert problems == ["alerts[0]: url must be an http(s) URL"]


def test_an_unset_pagerduty_key_is_reported() -> None:
    assert problems_of("alerts: [{type: pagerduty, routing_key: '${PD_KEY}'}]") == [
        "alerts[0]: a pagerduty sink needs a routing_key"
    ]
