"""Raising and resolving the alerts about logs (not signings): the one way the daemon does it, so
every alert is deduplicated, counted in `rekorwatch_alerts_total`, and carries the log it is about.

Signing alerts are built by the recorder and stored with their chunk (one transaction); this module
raises the others: `log_inconsistent` (with the shard's cursor stopped in the same transaction),
`log_stalled` (once per stall; resolved when the log moves again) and `log_reset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from monitor.contract import (
    SEVERITY_OF,
    AlertKind,
    condition_key,
    log_inconsistent_key,
    log_reset_key,
    log_stalled_key,
)
from monitor.metrics import Metrics
from monitor.store.repository import NewAlert, Store, alert_payload
from monitor.tailcore import LogInconsistent

if TYPE_CHECKING:
    from monitor.pipeline import Shard

log = structlog.get_logger(__name__)


def log_alert(
    kind: AlertKind, dedup_key: str, summary: str, url: str, origin: str, api: str, **details: object
) -> NewAlert:
    return NewAlert(
        dedup_key=dedup_key,
        kind=kind,
        severity=SEVERITY_OF[kind],
        summary=summary,
        payload=alert_payload(url, origin, api, **details),
        log_url=url,
    )


@dataclass
class AlertRaiser:
    store: Store
    sinks: Sequence[tuple[str, str]] = ()
    metrics: Metrics | None = None

    def count(self, kind: str, severity: str) -> None:
        if self.metrics is not None:
            self.metrics.alert_raised(kind, severity)

    async def raise_alert(self, alert: NewAlert) -> bool:
        """Store the alert unless its event was alerted already; True if it is new."""
        new = await self.store.raise_alert(alert, self.sinks)
        if new:
            self.count(alert.kind, alert.severity)
        return new

    async def log_inconsistent(
        self, url: str, origin: str, api: str, shard: Shard | None, exc: LogInconsistent, **details: object
    ) -> None:
        """Raise `log_inconsistent`; with a stored shard, stop its cursor in the same transaction."""
        tree_id = shard.state.tree_id if shard else ""
        verified = shard.state.verified.size if shard and shard.state.verified else 0
        log.error("log_inconsistent", log_url=url, tree_id=tree_id, reason=exc.reason, detail=exc.detail)
        where = f" (shard {tree_id})" if tree_id else ""
        alert = log_alert(
            AlertKind.LOG_INCONSISTENT,
            log_inconsistent_key(url, tree_id, exc.reason, verified),
            f"log {url}{where} is inconsistent: {exc.detail}",
            url,
            origin,
            api,
            reason=exc.reason,
            detail=exc.detail,
            tree_id=tree_id,
            **details,
        )
        if shard is None:
            await self.raise_alert(alert)
            return
        alert = NewAlert(**{**alert.__dict__, "log_id": shard.id})
        if await self.store.mark_inconsistent(shard.id, exc.detail, alert, self.sinks):
            self.count(alert.kind, alert.severity)

    async def log_stalled(self, url: str, origin: str, api: str, since: datetime, idle_seconds: float) -> bool:
        moment = since.astimezone(UTC).isoformat(timespec="seconds")
        alert = log_alert(
            AlertKind.LOG_STALLED,
            log_stalled_key(url, moment),
            f"log {url} made no progress for {idle_seconds:.0f}s (since {moment})",
            url,
            origin,
            api,
            since=moment,
        )
        return await self.raise_alert(alert)

    async def raise_condition(
        self, kind: AlertKind, url: str, origin: str, api: str, summary: str, **details: object
    ) -> bool:
        """Raise a lasting condition once per episode: not while an alert of that kind for that log is
        open (it is resolved when the condition clears). True if raised now."""
        if await self.store.open_alert_exists(kind, url):
            return False
        moment = datetime.now(UTC).isoformat(timespec="seconds")
        return await self.raise_alert(
            log_alert(kind, condition_key(kind, url, moment), summary, url, origin, api, **details)
        )

    async def resolve(self, kind: AlertKind, url: str) -> int:
        return await self.store.resolve_alerts(kind, url)

    async def log_reset(self, url: str, origin: str, api: str, reason: str) -> int:
        """An operator accepted the log's current history: clear its inconsistent shards."""
        moment = datetime.now(UTC).isoformat(timespec="seconds")
        alert = log_alert(
            AlertKind.LOG_RESET,
            log_reset_key(url, moment),
            f"log {url} was reset by an operator: {reason}",
            url,
            origin,
            api,
            reason=reason,
        )
        shards = await self.store.reset_log(url, alert, self.sinks)
        if shards:
            self.count(alert.kind, alert.severity)
        return shards
