"""Prometheus metrics of DESIGN.md (prefix rekorwatch_), in a registry of their own.

The `log` label is the log's URL: one series per log. Sizes are global (a sharded v1 log's
retired shards included): `tree_size` is what the log announced, `verified_size` what verified,
`next_index` the next entry to read, `lag_entries` their difference.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.log_tree_size = Gauge("rekorwatch_log_tree_size", "Entries the log announced", ["log"], registry=r)
        self.log_verified_size = Gauge(
            "rekorwatch_log_verified_size", "Size of the newest verified checkpoint", ["log"], registry=r
        )
        self.log_next_index = Gauge("rekorwatch_log_next_index", "Global index of the next entry", ["log"], registry=r)
        self.log_lag_entries = Gauge("rekorwatch_log_lag_entries", "Entries announced, not read", ["log"], registry=r)
        self.log_last_checkpoint = Gauge(
            "rekorwatch_log_last_checkpoint_timestamp_seconds",
            "Unix time of the last verified checkpoint",
            ["log"],
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
        self.signings = Counter("rekorwatch_signings", "Signings stored", ["verdict"], registry=r)
        self.alerts = Counter("rekorwatch_alerts", "Alerts raised", ["kind", "severity"], registry=r)
        self.alert_deliveries = Counter(
            "rekorwatch_alert_deliveries", "Alert delivery attempts", ["sink", "result"], registry=r
        )
        self.alerts_pending = Gauge("rekorwatch_alerts_pending", "Alert deliveries not yet delivered", registry=r)
        self.fetch_duration = Histogram(
            "rekorwatch_fetch_duration_seconds",
            "HTTP requests to the logs",
            ["log", "endpoint"],
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "rekorwatch_batch_duration_seconds",
            "Storing one verified chunk of entries with the cursor",
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def fetch_observer(self, log_url: str):  # type: ignore[no-untyped-def]
        """The `observe(endpoint, seconds)` hook of the log clients, for one log."""

        def observe(endpoint: str, seconds: float) -> None:
            self.fetch_duration.labels(log=log_url, endpoint=endpoint).observe(seconds)

        return observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
