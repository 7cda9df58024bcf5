"""A sink's secrets never reach `last_error` or the logs, whatever a receiver echoes: the whole URL
or one path segment, a query value, the secret, a header, percent-encoded, JSON- or HTML-escaped,
cut short. A property test over random secrets and echo transformations, and hostile receivers."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, unquote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.alerts.dispatcher import Dispatcher
from monitor.alerts.secrets import FRAGMENT, REDACTED, Secrets, scrub, sink_secrets
from monitor.alerts.sinks import build_sink
from monitor.config import AlertSink
from monitor.store.repository import Store
from tests.alerting import (
    ROUTING_KEY,
    SLACK_TOKEN_PATH,
    WEBHOOK_SECRET,
    Received,
    deliveries,
    open_store,
    raise_alert,
    running_receiver,
    signing_object,
    sink,
)

# what a receiver may do to what it echoes -----------------------------------------------------------


def json_escaped(text: str) -> str:
    return json.dumps(text)[1:-1]


def json_escaped_slashes(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1].replace("/", "\\/")


def unicode_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in text)


def html_escaped(text: str) -> str:
    return "".join(f"&#x{ord(c):X};" if not c.isalnum() else c for c in text)


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda text: text,
    "quote": lambda text: quote(text, safe=""),
    "quote_path": lambda text: quote(text, safe="/"),
    "quote_all_lower": lambda text: "".join(f"%{b:02x}" for b in text.encode()),
    "json": json_escaped,
    "json_slashes": json_escaped_slashes,
    "unicode": unicode_escaped,
    "html": html_escaped,
    "html_amp": html.escape,
}


def normalized_forms(text: str) -> set[str]:
    """`text` decoded by the standard library, every way and twice: what a reader could recover."""
    forms = {text}
    for _ in range(2):
        for form in list(forms):
            forms |= {unquote(form), html.unescape(form)}
            try:
                forms.add(json.loads(f'"{form}"'))
            except ValueError:
                pass
    return forms


def surviving_fragments(text: str, secret: str) -> set[str]:
    windows = {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
    return {w for form in normalized_forms(text) for w in windows if w in form}


# the property -----------------------------------------------------------------------------------------

URL_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
ANY_SECRET = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="[]"),
    min_size=FRAGMENT,
    max_size=48,
)
URL_SECRET = st.text(st.sampled_from(URL_SAFE), min_size=FRAGMENT, max_size=48)
CONTEXT = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz ABC:{},=\"'0123456789"), max_size=30)


def placed(where: str, secret: str) -> AlertSink:
    """A sink configured with `secret` in one of the places a sink keeps secrets."""
    match where:
        case "secret":
            return sink(type="webhook", url="https://hooks.example.com/rekorwatch", secret=secret)
        case "routing_key":
            return sink(type="pagerduty", routing_key=secret)
        case "header":
            return sink(
                type="alertmanager", url="https://am.example.com", headers={"Authorization": f"Bearer {secret}"}
            )
        case "path":
            return sink(type="slack", url=f"https://hooks.slack.com/services/T0/{secret}")
        case "query":
            return sink(type="webhook", url=f"https://hooks.example.com/in?x=1&token={secret}")
        case "password":
            return sink(type="alertmanager", url=f"https://rekorwatch:{secret}@am.example.com")
    raise AssertionError(where)


@given(
    where=st.sampled_from(["secret", "routing_key", "header", "path", "query", "password"]),
    secret=st.data(),
    cut=st.data(),
    encodings=st.lists(st.sampled_from(sorted(ENCODINGS)), min_size=1, max_size=2),
    before=CONTEXT,
    after=CONTEXT,
)
def test_no_fragment_of_a_secret_survives_scrubbing(
    where: str, secret: st.DataObject, cut: st.DataObject, encodings: list[str], before: str, after: str
) -> None:
    value = secret.draw(URL_SECRET if where in ("path", "query", "password") else ANY_SECRET, label="secret")
    start = cut.draw(st.integers(0, len(value) - FRAGMENT), label="start")
    end = cut.draw(st.integers(start + FRAGMENT, len(value)), label="end")
    echoed = value[start:end]
    for encoding in encodings:
        echoed = ENCODINGS[encoding](echoed)
    trimmed = cut.draw(st.integers(0, min(6, len(echoed))), label="trimmed at the end")
    text = f"HTTP 503: {before}{echoed[: len(echoed) - trimmed] if trimmed else echoed}{after}"

    scrubbed = sink_secrets(placed(where, value)).scrub(text)

    assert not surviving_fragments(scrubbed, value), (text, scrubbed)
    assert scrubbed.startswith("HTTP 503")


def test_the_forms_a_receiver_may_echo() -> None:
    slack = sink(type="slack", url=f"https://hooks.slack.com{SLACK_TOKEN_PATH}")
    secrets = sink_secrets(slack)
    url = f"https://hooks.slack.com{SLACK_TOKEN_PATH}"
    echoes = {
        "no_service: B0000SECRET/XXXXXXXXSLACKTOKEN": "no_service: [redacted]",
        f"bad url {quote(url, safe='')}": f"bad url https%3A%2F%2Fhooks.slack.com{REDACTED}",
        json.dumps({"url": url}).replace("/", "\\/"): '{"url": "https:\\/\\/hooks.slack.com' + REDACTED + '"}',
        "token XXXXXXXXSLACK": "token [redacted]",
        "cut short: /services/T0": "cut short: [redacted]",
        "HTTP 503: upstream down": "HTTP 503: upstream down",
    }
    for echo, expected in echoes.items():
        assert secrets.scrub(echo) == expected


def test_the_basic_credentials_of_a_url_are_secret() -> None:
    secrets = sink_secrets(sink(type="alertmanager", url="https://ops:hunter2hunter2@am.example.com"))
    header = base64.b64encode(b"ops:hunter2hunter2").decode()
    assert secrets.scrub(f"Authorization: Basic {header}") == f"Authorization: Basic {REDACTED}"
    assert secrets.scrub("password hunter2hunter2!") == f"password {REDACTED}!"
    assert secrets.scrub("am.example.com refused") == "am.example.com refused"  # the host is no secret


def test_a_secret_cut_short_by_the_answer_snippet_is_still_redacted() -> None:
    assert scrub(f"HTTP 500: key={ROUTING_KEY[:6]}", [ROUTING_KEY]) == f"HTTP 500: key={REDACTED}"
    assert scrub(f"x {ROUTING_KEY} y", [ROUTING_KEY]) == f"x {REDACTED} y"
    assert scrub("nothing to hide", [""]) == "nothing to hide"


def test_a_short_explicit_secret_is_matched_whole() -> None:
    secrets = Secrets.of([], short=["k3y!x"])
    assert secrets.scrub("key k3y!x or k3y") == f"key {REDACTED} or k3y"


def test_sink_objects_do_not_show_their_secrets() -> None:
    configs = [
        sink(type="webhook", url="https://h.example/x?token=SUPERSECRETQUERYTOKEN", secret=WEBHOOK_SECRET),
        sink(type="slack", url=f"https://hooks.slack.com{SLACK_TOKEN_PATH}"),
        sink(type="pagerduty", routing_key=ROUTING_KEY),
        sink(type="alertmanager", url="https://am.example", headers={"Authorization": "Bearer AMTOKEN0123456789"}),
    ]
    shown = " ".join(repr(build_sink(config, None)) for config in configs)  # type: ignore[arg-type]
    secrets = [WEBHOOK_SECRET, "SUPERSECRETQUERYTOKEN", "SLACKTOKEN", ROUTING_KEY, "AMTOKEN0123456789"]
    assert not any(s in shown for s in secrets)


# hostile receivers, end to end --------------------------------------------------------------------------

AM_TOKEN = "Bearer AMTOKEN0123456789abcdef"
PASSWORD = "PASSWORD0secret0987"


def echo_of(received: Received) -> str:
    """Each receiver path gets a different echo, as a confused or hostile server might answer."""
    kind = received.path.split("/")[1]
    headers = json.dumps(received.headers).replace("/", "\\/")
    match kind:
        case "segment":  # only the token segments of the path
            return "/".join(received.path.split("/")[-2:])
        case "percent":
            return quote(received.path, safe="")
        case "headers":
            return headers
        case "body":
            return json.dumps({"got": received.body.decode()})
    return received.path


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


async def test_echoing_receivers_get_no_secret_into_last_error_or_logs(store: Store) -> None:
    async def echo(received: Received) -> web.StreamResponse:
        return web.Response(status=503, text=echo_of(received))

    async with running_receiver(echo) as hostile, aiohttp.ClientSession() as http:
        base = hostile.url("/").rstrip("/")
        with_password = base.replace("http://", f"http://rekorwatch:{PASSWORD}@")
        sinks = [
            sink(type="slack", name="segment", url=f"{base}/segment{SLACK_TOKEN_PATH}"),
            sink(type="webhook", name="percent", url=f"{base}/percent/hook?token=SUPERSECRETQUERYTOKEN"),
            sink(type="alertmanager", name="am", url=f"{base}/headers", headers={"Authorization": AM_TOKEN}),
            sink(type="alertmanager", name="am-basic", url=f"{with_password}/headers"),
            sink(type="pagerduty", url=f"{base}/body/v2/enqueue", routing_key=ROUTING_KEY),
        ]
        alert = await raise_alert(store, sinks, signing=signing_object())
        with capture_logs() as logs:
            assert await Dispatcher(store, sinks, http).deliver_due() == 0

    assert any(r.headers.get("Authorization", "").startswith("Basic ") for r in hostile.requests)
    secrets = [
        SLACK_TOKEN_PATH,
        "SUPERSECRETQUERYTOKEN",
        AM_TOKEN,
        PASSWORD,
        base64.b64encode(f"rekorwatch:{PASSWORD}".encode()).decode(),
        ROUTING_KEY,
    ]
    rows = await deliveries(store, alert)
    assert set(rows) == {config.sink_name for config in sinks}
    logged = json.dumps(logs, default=str)
    assert any(line["event"] == "alert_delivery_failed" for line in logs)
    for row in rows.values():
        assert row.last_error is not None and row.last_error.startswith("HTTP 503: "), row.last_error
        assert REDACTED in row.last_error, row.last_error
    for secret in secrets:
        for row in rows.values():
            assert not surviving_fragments(row.last_error or "", secret), (row.sink, row.last_error)
        assert not surviving_fragments(logged, secret)


def test_the_checks_themselves_see_an_encoded_secret() -> None:
    """The property's detector is not blind: each encoding of a secret is found before scrubbing."""
    secret = "s3cr3t/t0ken:value"
    for name, encode in ENCODINGS.items():
        assert surviving_fragments(f"x {encode(secret)} y", secret), name
