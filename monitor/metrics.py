"""Prometheus metrics of DESIGN.md (prefix rekorwatch_), in a registry of their own.

Every series a rule or a dashboard panel reads exists from the first scrape: a log's gauges and
counters are created (at 0) when the log is configured, not when its first event happens, and every
known label value of a counter starts at 0. A counter born at 1 is invisible to `increase()`, so
without this the first rejected checkpoint or the first critical signing would never alert.

The `log` label is the log's URL. Sizes are global (a sharded v1 log's retired shards included):
`tree_size` is what the log announced in a checkpoint whose signature verified, `verified_size`
what was accepted, `next_index` the next entry to read, `lag_entries` what is announced and unread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from monitor import __version__
from monitor.contract import SEVERITY_OF, AlertKind, BuildResult, GossipResult, LogState, Severity, Verdict
from monitor.tailcore import ShardState
from monitor.tlog.http import FAILURES, Observer

FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CHECKPOINT_RESULTS = ("ok", "failed")
DELIVERY_RESULTS = ("delivered", "error", "failed")
disable_created_metrics()


def _alert_label_values() -> list[tuple[str, str]]:
    usual = [(kind.value, severity.value) for kind, severity in SEVERITY_OF.items()]
    return [*usual, (AlertKind.UNLOGGED_CERTIFICATE.value, Severity.WARNING.value)]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.build_info = Gauge("rekorwatch_build_info", "rekorwatch's version", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)
        self.log_tree_size = Gauge("rekorwatch_log_tree_size", "Entries the log announced", ["log"], registry=r)
        self.log_verified_size = Gauge(
            "rekorwatch_log_verified_size", "Size of the newest verified checkpoint", ["log"], registry=r
        )
        self.log_next_index = Gauge("rekorwatch_log_next_index", "Global index of the next entry", ["log"], registry=r)
        self.log_lag_entries = Gauge("rekorwatch_log_lag_entries", "Entries announced, not read", ["log"], registry=r)
        self.log_last_checkpoint = Gauge(
            "rekorwatch_log_last_checkpoint_timestamp_seconds",
            "Unix time of the last verified checkpoint (0: none yet)",
            ["log"],
            registry=r,
        )
        self.log_state = Gauge(
            "rekorwatch_log_state", "1 for the log's current state, 0 for the others", ["log", "state"], registry=r
        )
        self.cosignature_timestamp = Gauge(
            "rekorwatch_checkpoint_cosignature_timestamp_seconds",
            "When each policy witness cosigned the log's newest accepted checkpoint",
            ["log", "witness"],
            registry=r,
        )
        self.entries_processed = Counter(
            "rekorwatch_entries_processed", "Entries read, verified and committed", ["log"], registry=r
        )
        self.entry_errors = Counter(
            "rekorwatch_entry_errors", "Entries that could not be decoded", ["log", "reason"], registry=r
        )
        self.checkpoint_verifications = Counter(
            "rekorwatch_checkpoint_verifications", "Checkpoint verifications", ["log", "result"], registry=r
        )
        self.fetch_errors = Counter(
            "rekorwatch_fetch_errors", "Failed requests to the logs, by reason", ["log", "reason"], registry=r
        )
        self.follower_errors = Counter(
            "rekorwatch_follower_errors",
            "Cycles of a log's follower that failed in rekorwatch itself (database, bug), by exception class",
            ["log", "error"],
            registry=r,
        )
        self.task_failures = Counter(
            "rekorwatch_task_failures",
            "Background tasks of the daemon that failed and were started again",
            ["task"],
            registry=r,
        )
        self.gossip_checks = Counter(
            "rekorwatch_gossip_checks",
            "Checkpoints of other monitors and distributors compared with ours, by source and result",
            ["source", "result"],
            registry=r,
        )
        self.signings = Counter("rekorwatch_signings", "Signings stored", ["verdict"], registry=r)
        self.certificates = Counter(
            "rekorwatch_certificates", "Certificates of watched issuers seen in CT logs", ["verdict"], registry=r
        )
        self.unlogged_certificates = Gauge(
            "rekorwatch_unlogged_certificates",
            "Watched certificates in CT with no Rekor signing ct_grace after they were logged",
            registry=r,
        )
        self.build_checks = Counter(
            "rekorwatch_build_checks", "Codefresh build checks, by result", ["result"], registry=r
        )
        self.alerts = Counter("rekorwatch_alerts", "Alerts raised", ["kind", "severity"], registry=r)
        self.alert_deliveries = Counter(
            "rekorwatch_alert_deliveries", "Alert delivery attempts", ["sink", "result"], registry=r
        )
        self.alerts_pending = Gauge("rekorwatch_alerts_pending", "Alert deliveries not yet delivered", registry=r)
        self.deliveries_pending = Gauge(
            "rekorwatch_alert_deliveries_pending", "Alert deliveries not yet delivered, per sink", ["sink"], registry=r
        )
        self.fetch_duration = Histogram(
            "rekorwatch_fetch_duration_seconds",
            "HTTP requests to the logs",
            ["log", "endpoint"],
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "rekorwatch_batch_duration_seconds",
            "Storing verified chunks of entries with the cursor, in one transaction (up to 4 chunks)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        for verdict in Verdict:
            self.signings.labels(verdict=verdict.value)
            self.certificates.labels(verdict=verdict.value)
        for result in BuildResult:
            self.build_checks.labels(result=result.value)
        for kind, severity in _alert_label_values():
            self.alerts.labels(kind=kind, severity=severity)

    # series that exist from the start ----------------------------------------------------------

    def track_log(self, url: str, entry_error_reasons: Iterable[str], witnesses: Iterable[str] = ()) -> None:
        """Create every series of a configured log, at 0, before anything happened to it; its entries
        fail to decode for `entry_error_reasons` (a Rekor log's or a CT log's)."""
        for witness in witnesses:
            self.cosignature_timestamp.labels(log=url, witness=witness)
        for gauge in (
            self.log_tree_size,
            self.log_verified_size,
            self.log_next_index,
            self.log_lag_entries,
            self.log_last_checkpoint,
        ):
            gauge.labels(log=url)
        for state in LogState:
            self.log_state.labels(log=url, state=state.value)
        self.entries_processed.labels(log=url)
        for reason in entry_error_reasons:
            self.entry_errors.labels(log=url, reason=reason)
        for result in CHECKPOINT_RESULTS:
            self.checkpoint_verifications.labels(log=url, result=result)
        for failure in FAILURES:
            self.fetch_errors.labels(log=url, reason=failure)

    def track_gossip(self, sources: Iterable[str]) -> None:
        for source in sources:
            for result in GossipResult:
                self.gossip_checks.labels(source=source, result=result.value)

    def track_sinks(self, names: Iterable[str]) -> None:
        for name in names:
            self.deliveries_pending.labels(sink=name)
            for result in DELIVERY_RESULTS:
                self.alert_deliveries.labels(sink=name, result=result)

    # log gauges --------------------------------------------------------------------------------

    def set_log_state(self, url: str, current: LogState) -> None:
        for state in LogState:
            self.log_state.labels(log=url, state=state.value).set(1 if state is current else 0)

    def publish_log(self, url: str, shards: Sequence[ShardState], last_checkpoint_at: datetime | None) -> None:
        """A log's global sizes, from its shards as they stand."""
        if not shards:
            return
        self.log_tree_size.labels(log=url).set(max(s.offset + s.announced for s in shards))
        verified = max(s.offset + (s.verified.size if s.verified else 0) for s in shards)
        self.log_verified_size.labels(log=url).set(verified)
        self.log_next_index.labels(log=url).set(max(s.next_global for s in shards))
        self.log_lag_entries.labels(log=url).set(sum(s.lag for s in shards))
        if last_checkpoint_at is not None:
            self.log_last_checkpoint.labels(log=url).set(last_checkpoint_at.timestamp())

    # events ------------------------------------------------------------------------------------

    def alert_raised(self, kind: str, severity: str) -> None:
        self.alerts.labels(kind=kind, severity=severity).inc()

    def fetch_observer(self, log_url: str) -> Observer:
        """The `observe(endpoint, seconds, failure)` hook of the log clients, for one log."""

        def observe(endpoint: str, seconds: float, failure: str | None) -> None:
            self.fetch_duration.labels(log=log_url, endpoint=endpoint).observe(seconds)
            if failure is not None:
                self.fetch_errors.labels(log=log_url, reason=failure).inc()

        return observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
