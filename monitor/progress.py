"""Where a catch-up is: a rolling rate and an ETA per log, shown while a log lags.

At a terminal, one live line on stderr, redrawn every second and cleared before each log line;
otherwise a structured `catch_up_progress` log line every 10 s per lagging log (next_index,
tree_size, rate, eta_seconds). The rate is also stored with the log (`logs.read_rate`), so that
`rekorwatch status`, another process, shows the rate and ETA of a log that lags.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

import structlog

log = structlog.get_logger(__name__)

RATE_WINDOW_SECONDS = 30.0
LIVE_INTERVAL_SECONDS = 1.0
LOG_INTERVAL_SECONDS = 10.0
CLEAR_LINE = "\r\x1b[K"


@dataclass
class LogProgress:
    url: str
    next_index: int = 0
    tree_size: int = 0
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def update(self, next_index: int, tree_size: int, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        self.next_index, self.tree_size = next_index, tree_size
        self.samples.append((moment, next_index))
        while len(self.samples) > 2 and moment - self.samples[0][0] > RATE_WINDOW_SECONDS:
            self.samples.popleft()

    @property
    def lag(self) -> int:
        return max(self.tree_size - self.next_index, 0)

    @property
    def rate(self) -> float | None:
        """Entries per second over the last half minute of commits; None before two of them."""
        if len(self.samples) < 2:
            return None
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        return (last - first) / (end - start) if end > start else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        return self.lag / rate if rate else None

    def line(self) -> str:
        rate, eta = self.rate, self.eta_seconds
        speed = f"{rate:,.0f}/s" if rate is not None else "…/s"
        return f"{self.url} {self.next_index:,}/{self.tree_size:,} {speed} ETA {format_duration(eta)}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


@dataclass
class ProgressReport:
    """Every followed log's progress, and how it is shown."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    live: bool | None = None
    logs: dict[str, LogProgress] = field(default_factory=dict)
    _shown: bool = False

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = self.stream.isatty()

    def of(self, url: str) -> LogProgress:
        return self.logs.setdefault(url, LogProgress(url))

    def lagging(self) -> list[LogProgress]:
        return [progress for progress in self.logs.values() if progress.lag > 0]

    @property
    def interval(self) -> float:
        return LIVE_INTERVAL_SECONDS if self.live else LOG_INTERVAL_SECONDS

    def show(self) -> None:
        lagging = self.lagging()
        if self.live:
            self.clear()
            if lagging:
                self.stream.write(" | ".join(progress.line() for progress in lagging))
                self.stream.flush()
                self._shown = True
            return
        for progress in lagging:
            rate, eta = progress.rate, progress.eta_seconds
            log.info(
                "catch_up_progress",
                log_url=progress.url,
                next_index=progress.next_index,
                tree_size=progress.tree_size,
                rate=round(rate, 1) if rate is not None else None,
                eta_seconds=round(eta) if eta is not None else None,
            )

    def clear(self) -> None:
        """Erase the live line (before a log line is printed, and at the end)."""
        if self._shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self._shown = False


_LIVE: list[ProgressReport] = []


def showing(report: ProgressReport) -> None:
    """Make `report`'s live line the one log lines clear first (one daemon per process)."""
    _LIVE[:] = [report]


def clear_live_line(_logger: object, _name: str, event: dict[str, object]) -> dict[str, object]:
    """A structlog processor: no log line is printed over the live progress line."""
    for report in _LIVE:
        report.clear()
    return event
