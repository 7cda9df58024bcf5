"""Supervision: nothing the daemon runs in the background may end unnoticed.

    Supervisor (one per `run`)
      ├─ follow <log A> ─► LogFollower.cycle() every poll_interval ─┐
      ├─ follow <log B> ─► ...                                      │  each task: every exception is
      ├─ stall watch (wall clock, over every log's health)          │  caught, logged with its class,
      ├─ alert dispatcher                                           │  counted, backed off, and the
      ├─ pending-alerts gauge                                       │  task started again
      └─ trust refresh (may add followers)                          ┘

A follower's cycle fails in two ways. The log is unreachable or answers nonsense
(LogUnavailableError, LogProtocolError): the log's state is `unreachable`. Anything else is
rekorwatch's own trouble (the database restarted, a disk filled up, a bug): the state is `error`,
the exception's class is counted in `rekorwatch_follower_errors_total{log,error}`. Either way the
follower backs off (doubling from poll_interval up to 5 minutes) and tries again, forever: a
security monitor that stops watching without a word is worse than none.

The stall watch does not live in the cycle it watches: it runs on its own, on wall time, and raises
`log_stalled` (once per stall) when a log made no progress for 5 x poll_interval, whether its
follower is failing, hanging on a slow-drip answer, or waiting for a database that does not answer.
Progress is a committed chunk, or a cycle that left nothing to read. The alert is resolved when the
log moves again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerting import AlertRaiser
from monitor.contract import AlertKind, LogState
from monitor.health import FollowerHealth
from monitor.metrics import Metrics
from monitor.pipeline import CycleResult, LogFollower
from monitor.store.repository import Store
from monitor.tlog.errors import LogProtocolError, LogUnavailableError

log = structlog.get_logger(__name__)

STALL_FACTOR = 5
BACKOFF_CAP_SECONDS = 300.0
DETAIL_LIMIT = 500


class Backoff:
    """Delays between failures: doubling from `base` up to `cap`, reset on success."""

    def __init__(self, base: float, cap: float = BACKOFF_CAP_SECONDS):
        self.base = base
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.cap, self.base * 2 ** min(self.failures - 1, 32))

    def succeeded(self) -> None:
        self.failures = 0


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:DETAIL_LIMIT] if text else type(exc).__name__


class Supervisor:
    """Runs named tasks until `stop`; a task that fails (or ends early) is logged, counted and
    started again after a backoff."""

    def __init__(self, stop: asyncio.Event, metrics: Metrics | None = None, *, backoff_base: float = 1.0):
        self.stop = stop
        self.metrics = metrics
        self.backoff_base = backoff_base
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self.tasks[name] = asyncio.create_task(self._supervise(name, run), name=name)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(self.backoff_base, cap=60.0)
        while not self.stop.is_set():
            try:
                await run()
                if self.stop.is_set():
                    return
                log.error("task_ended", task=name, detail="a supervised task ended while the daemon runs")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("task_failed", task=name, error=type(exc).__name__, detail=describe(exc), exc_info=True)
            if self.metrics is not None:
                self.metrics.task_failures.labels(task=name).inc()
            await sleep_unless(self.stop, backoff.failed())

    async def shutdown(self, grace: float = 60.0) -> None:
        """Wait for every task to see `stop` and finish what it does; cancel what is left."""
        self.stop.set()
        tasks = list(self.tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class FollowLoop:
    """Cycles one log's follower until `stop`, whatever fails, keeping its health current."""

    follower: LogFollower
    health: FollowerHealth
    store: Store
    poll_interval: float
    metrics: Metrics | None = None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.poll_interval)
        self.follower.stopping = stop
        self.follower.on_progress = self.health.progressed
        while not stop.is_set():
            result = await self.cycle(retry_in=backoff.base * 2**backoff.failures)
            if result is None:
                delay = backoff.failed()
            else:
                if backoff.failures:
                    self.follower.log.info("log_following_again")
                backoff.succeeded()
                delay = 0 if result.entries else self.poll_interval  # more may have come while catching up
            await sleep_unless(stop, min(delay, backoff.cap))

    async def cycle(self, retry_in: float | None = None) -> CycleResult | None:
        """One cycle, whatever fails, with the log's state kept current; None when it failed."""
        try:
            result = await self.follower.cycle()
        except (LogUnavailableError, LogProtocolError) as exc:
            self.follower.log.warning("log_unreachable", error=describe(exc), retry_in=retry_in)
            await self._set_state(LogState.UNREACHABLE, describe(exc))
            return None
        except Exception as exc:
            self._report_failure(exc, retry_in)
            await self._set_state(LogState.ERROR, describe(exc))
            return None
        await self._cycled(result)
        return result

    def _report_failure(self, exc: Exception, retry_in: float | None) -> None:
        error = type(exc).__name__
        internal = not isinstance(exc, SQLAlchemyError | OSError)
        self.follower.log.error(
            "follower_failed", error=error, detail=describe(exc), retry_in=retry_in, exc_info=internal
        )
        if self.metrics is not None:
            self.metrics.follower_errors.labels(log=self.follower.url, error=error).inc()

    async def _cycled(self, result: CycleResult) -> None:
        if result.inconsistent:
            await self._set_state(LogState.INCONSISTENT, None)
        elif result.unwitnessed:
            await self._set_state(LogState.UNWITNESSED, "the newest checkpoint is not witnessed as the policy requires")
        else:
            await self._set_state(LogState.OK, None)
        if result.entries or not result.lagging or result.standby:
            self.health.progressed()

    async def _set_state(self, state: LogState, detail: str | None) -> None:
        """The state in memory and in the metrics at once; in the database when it changed (best
        effort: when the database is what fails, the next cycle writes it)."""
        self.health.state, self.health.detail = state, detail
        if self.metrics is not None:
            self.metrics.set_log_state(self.follower.url, state)
        if self.health.stored_state == (state, detail) or state is LogState.INCONSISTENT:
            return
        try:
            await self.store.mark_state(self.follower.url, state, detail)
            self.health.stored_state = (state, detail)
        except Exception as exc:
            self.follower.log.debug("log_state_not_stored", error=describe(exc))


@dataclass
class StallWatch:
    """`log_stalled` for every log that made no progress for 5 x poll_interval, checked on wall time."""

    healths: Callable[[], Iterable[FollowerHealth]]
    alerts: AlertRaiser
    poll_interval: float
    tick: float = 1.0

    @property
    def limit(self) -> float:
        return STALL_FACTOR * self.poll_interval

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for health in list(self.healths()):
                await self.check(health)
            await sleep_unless(stop, min(self.tick, self.poll_interval))

    async def check(self, health: FollowerHealth) -> None:
        idle = health.idle_seconds()
        if idle >= self.limit and not health.stall_alerted:
            log.warning("log_stalled", log_url=health.url, idle_seconds=round(idle), state=health.state)
            await self.alerts.log_stalled(health.url, health.origin, health.api, health.stalled_since, idle)
            health.stall_alerted = True
        elif idle < self.limit and health.stall_alerted:
            log.info("log_moving_again", log_url=health.url)
            await self.alerts.resolve(AlertKind.LOG_STALLED, health.url)
            health.stall_alerted = False
