"""One alert as every sink sees it: the alert row, its payload unpacked (DESIGN.md "Webhook delivery").

Links point only where something answers: a signing's log entry is linked through the log's own API
(`log.api` of the payload): a Rekor v1 entry URL, or for a tiles log the entry bundle holding it;
for any other API, or an alert whose payload does not say, there is no entry link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.contract import LASTING_KINDS
from monitor.store.models import AlertRow, iso
from monitor.tlog.tiles import TILE_WIDTH, entries_path


@dataclass(frozen=True)
class AlertMessage:
    id: int
    dedup_key: str
    kind: str
    severity: str
    summary: str
    created_at: datetime
    signing: Mapping[str, Any] | None
    """The signing object (as in the API); None for log alerts."""
    log: Mapping[str, Any] | None
    """{"url": ..., "origin": ...} of the log the alert is about."""
    details: Mapping[str, Any]
    """The payload's other keys (e.g. "reason", "detail" of a log alert)."""
    resolved_at: datetime | None = None
    """When a lasting condition cleared (AlertRow.resolved_at)."""

    @classmethod
    def from_row(cls, row: AlertRow) -> AlertMessage:
        payload = dict(json.loads(row.payload or "{}"))
        signing = payload.pop("signing", None)
        log = payload.pop("log", None)
        return cls(
            id=row.id,
            dedup_key=row.dedup_key,
            kind=row.kind,
            severity=row.severity,
            summary=row.summary,
            created_at=row.created_at,
            signing=signing,
            log=log,
            details=payload,
            resolved_at=row.resolved_at,
        )

    @property
    def delivery_id(self) -> str:
        """X-Rekorwatch-Delivery: the alert id, the same on every retry and for every sink (DESIGN.md)."""
        return str(self.id)

    def webhook_body(self) -> bytes:
        """The webhook JSON, serialized once and deterministically: the HMAC covers exactly these bytes."""
        document = {
            "id": self.delivery_id,
            "kind": self.kind,
            "severity": self.severity,
            "created_at": iso(self.created_at),
            "summary": self.summary,
            "signing": self.signing,
            "log": self.log,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def signing_field(self, name: str) -> str | None:
        value = self.signing.get(name) if self.signing else None
        return None if value is None else str(value)

    @property
    def account(self) -> str | None:
        """The account's name where the certificate has one, else its id."""
        return self.signing_field("account_name") or self.signing_field("account_id")

    @property
    def pipeline(self) -> str | None:
        return self.signing_field("pipeline_name") or self.signing_field("pipeline_id")

    @property
    def log_url(self) -> str | None:
        value = (self.log or {}).get("url") or self.signing_field("log_url")
        return None if value is None else str(value)

    @property
    def lasting(self) -> bool:
        """A condition that holds until `resolved_at` (AlertKind.lasting), rather than an event."""
        return self.kind in LASTING_KINDS

    @property
    def log_api(self) -> str | None:
        value = (self.log or {}).get("api")
        return value if isinstance(value, str) else None

    @property
    def entry_url(self) -> str | None:
        """The log entry of the signing from the log's own API (works for any deployment, public-good
        or private, unlike search.sigstore.dev): a v1 entry, or a tiles log's entry bundle."""
        log_url, log_index = self.signing_field("log_url"), (self.signing or {}).get("log_index")
        if not log_url or not isinstance(log_index, int) or isinstance(log_index, bool) or log_index < 0:
            return None
        match self.log_api:
            case "v1":
                return f"{log_url.rstrip('/')}/api/v1/log/entries?logIndex={log_index}"
            case "tiles":
                return f"{log_url.rstrip('/')}{entries_path(log_index // TILE_WIDTH)}"
        return None

    @property
    def run_url(self) -> str | None:
        """The CI run that signed, when it is a plain http(s) URL (it comes from the certificate)."""
        value = self.signing_field("run_url")
        return value if value and value.startswith(("https://", "http://")) else None
