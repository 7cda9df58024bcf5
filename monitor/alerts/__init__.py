"""Alert delivery: the outbox dispatcher (dispatcher.py) and its sinks (webhook, slack, pagerduty,
alertmanager, log). Reads and writes only `alert_deliveries` (via monitor.store.outbox) and its sinks."""
