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


def test_backoff_cap_and_resend_interval_default_and_bounds() -> None:
    settings = parse_settings(
        "alerts: [{type: alertmanager, url: 'http://am:9093', backoff_cap: 30m}, {type: log}]", {}
    )
    assert (settings.alerts[0].backoff_cap, settings.alerts[0].resend_interval) == (1800.0, 60.0)
    assert settings.alerts[1].backoff_cap == 300.0
    problems = problems_of("alerts: [{type: log, backoff_cap: 100ms}, {type: log, name: b, resend_interval: 2h}]")
    assert problems == [
        "alerts[0].backoff_cap: Input should be greater than or equal to 1",
        "alerts[1].resend_interval: Input should be less than or equal to 3600",
    ]


def test_sink_headers_are_checked_without_echoing_their_values() -> None:
    settings = parse_settings(
        "alerts: [{type: alertmanager, url: 'http://am:9093', headers: {Authorization: '${AM_TOKEN}'}}]",
        {"AM_TOKEN": "Bearer s3cret-t0ken"},
    )
    assert settings.alerts[0].headers["Authorization"].get_secret_value() == "Bearer s3cret-t0ken"
    problems = problems_of('alerts: [{type: webhook, url: "http://h", headers: {"Bad Name": x, Ok: "a\\nb"}}]')
    assert problems == ["alerts[0].headers: 'Bad Name' is not an HTTP header name"]
    problems = problems_of('alerts: [{type: webhook, url: "http://h", headers: {Ok: "s3cret\\nb"}}]')
    assert problems == ["alerts[0].headers: the value of header 'Ok' holds a control character"]
    assert not any("s3cret" in line for line in problems)
    both = "alerts: [{type: alertmanager, url: 'http://u:p@am:9093', headers: {authorization: 'Bearer x'}}]"
    assert problems_of(both) == [
        "alerts[0]: give credentials either in the url or in an Authorization header, not both"
    ]
