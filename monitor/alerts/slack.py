"""Slack incoming webhook: a message a person reads at a glance (what signed, whose, links to the run
and to the log entry).

Names, identities and run URLs come from certificates, which an impersonator controls: every value is
escaped for mrkdwn (`&`, `<`, `>`) so it can neither mention `@channel` nor disguise a link, and the
run link shows its own URL rather than a label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from monitor.alerts.delivery import post_json
from monitor.alerts.message import AlertMessage
from monitor.store.models import iso

SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
KIND_TITLES = {
    "unexpected_pipeline": "Unexpected pipeline signed",
    "impersonation": "Impersonation: another account with your account's name signed",
    "renamed": "Signing by a renamed account or pipeline",
    "untrusted_certificate": "Untrusted certificate claims your identity",
    "log_inconsistent": "Transparency log is inconsistent",
    "log_stalled": "Transparency log stalled",
    "entry_undecodable": "Undecodable log entry",
}
HEADER_LIMIT = 150
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_target(url: str) -> str:
    """A URL safe inside `<url|label>`: escaped, and a `|` cannot end it early."""
    return escape(url).replace("|", "%7C")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def title_of(alert: AlertMessage) -> str:
    title = KIND_TITLES.get(alert.kind, alert.kind.replace("_", " ").capitalize())
    return f"{SEVERITY_EMOJI.get(alert.severity, '')} {title} ({alert.severity})".strip()


def slack_message(alert: AlertMessage) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title_of(alert), HEADER_LIMIT), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(alert.summary), TEXT_LIMIT)}},
    ]
    fields = signing_fields(alert.signing) if alert.signing else log_fields(alert)
    if fields:
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    links = link_lines(alert)
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(links)}})
    footer = f"rekorwatch alert {alert.id} · {iso(alert.created_at)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    fallback = f"[{alert.severity.upper()}] {alert.kind}: {alert.summary}"
    return {"text": clip(escape(fallback), TEXT_LIMIT), "blocks": blocks}


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(f"*{label}*\n{escape(value)}", FIELD_LIMIT)}


def _name_and_id(name: Any, ident: Any) -> str | None:
    if name and ident:
        return f"{name} ({ident})"
    return str(name or ident) if (name or ident) else None


def signing_fields(signing: Mapping[str, Any]) -> list[dict[str, str]]:
    source = signing.get("source_repository")
    if source and signing.get("source_ref"):
        source = f"{source} @ {signing['source_ref']}"
    rows = [
        ("Account", _name_and_id(signing.get("account_name"), signing.get("account_id"))),
        ("Pipeline", _name_and_id(signing.get("pipeline_name"), signing.get("pipeline_id"))),
        ("Identity", signing.get("identity")),
        ("Issuer", signing.get("issuer")),
        ("Verdict", signing.get("verdict")),
        ("Source", source),
        ("Artifact", signing.get("artifact_digest")),
        ("Signed at", signing.get("integrated_time") or signing.get("not_before")),
    ]
    return [_field(label, str(value)) for label, value in rows if value]


def log_fields(alert: AlertMessage) -> list[dict[str, str]]:
    log = alert.log or {}
    rows = [("Log", log.get("url")), ("Origin", log.get("origin"))]
    rows += [(key.replace("_", " ").capitalize(), value) for key, value in sorted(alert.details.items())]
    return [_field(label, _text(value)) for label, value in rows if value not in (None, "")]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def link_lines(alert: AlertMessage) -> list[str]:
    lines = []
    if alert.run_url:
        lines.append(f"*Run:* <{link_target(alert.run_url)}>")
    if alert.entry_url:
        label = f"{alert.signing_field('log_url')} #{alert.signing_field('log_index')}"
        lines.append(f"*Log entry:* <{link_target(alert.entry_url)}|{escape(label)}>")
    return lines


@dataclass(frozen=True)
class SlackSink:
    name: str
    session: aiohttp.ClientSession = field(repr=False)
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps(slack_message(alert), ensure_ascii=False).encode("utf-8")
        await post_json(self.session, self.url, body, extra=self.headers)
