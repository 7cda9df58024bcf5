"""The `log` sink: one structlog line per alert, at the alert's severity."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from monitor.alerts.message import AlertMessage

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LogSink:
    name: str

    async def send(self, alert: AlertMessage) -> None:
        bound = log.bind(sink=self.name)
        emit = {"critical": bound.critical, "warning": bound.warning}.get(alert.severity, bound.info)
        emit(
            "alert",
            alert_id=alert.id,
            dedup_key=alert.dedup_key,
            kind=alert.kind,
            severity=alert.severity,
            summary=alert.summary,
            account=alert.account,
            pipeline=alert.pipeline,
            identity=alert.signing_field("identity"),
            run_url=alert.run_url,
            log_url=alert.log_url,
            log_entry=alert.entry_url,
        )
