"""What the daemon knows of each log right now, in memory: read by /healthz, /readyz, /api/v1/logs,
the log-state gauge and the stall watch, and true even when the database is what fails."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor.contract import LogState


@dataclass
class FollowerHealth:
    """One log's follower as it stands."""

    url: str
    origin: str
    api: str
    state: LogState | None = None
    """None until the first cycle ended."""
    detail: str | None = None
    progress_at: float = field(default_factory=time.monotonic)
    stalled_since: datetime = field(default_factory=lambda: datetime.now(UTC))
    stall_alerted: bool = False
    stored_state: tuple[LogState, str | None] | None = None

    def progressed(self) -> None:
        self.progress_at = time.monotonic()
        self.stalled_since = datetime.now(UTC)

    def idle_seconds(self) -> float:
        return time.monotonic() - self.progress_at
