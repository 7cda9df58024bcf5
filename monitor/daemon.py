"""Wiring: settings -> trust root, store, log clients, followers; `run` and `run --once`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import structlog
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from monitor import __version__
from monitor.alerts.dispatcher import Dispatcher, outbox_sinks
from monitor.api import ApiContext, start_api
from monitor.config import LogSettings, Settings
from monitor.identity.fulcio import ChainVerifier
from monitor.metrics import Metrics
from monitor.pipeline import LogFollower, follow_forever
from monitor.policy import Policy
from monitor.recorder import SigningRecorder
from monitor.store.db import upgrade
from monitor.store.repository import Store
from monitor.tlog.http import LogProtocolError, LogUnavailableError, RetryPolicy
from monitor.tlog.rekor_v1 import RekorV1Client
from monitor.tlog.source import LogSource, RekorV1Source, TilesSource
from monitor.tlog.tiles import TilesClient
from monitor.trust import TrustRoot, load_trust_root

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INCONSISTENT = 3
DAEMON_RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=10.0)
"""Retries inside one cycle; beyond them the cycle fails and `follow_forever` backs off."""


def logs_to_follow(settings: Settings, trust: TrustRoot) -> list[LogSettings]:
    """The configured logs, or by default every Rekor log of the signing config valid now."""
    if settings.logs is not None:
        return list(settings.logs)
    services = trust.rekor_services_at(datetime.now(UTC))
    return [
        LogSettings(url=svc.url, api="v1" if svc.major_api_version == 1 else "tiles", start="head")
        for svc in sorted(services, key=lambda s: s.url)
    ]


def make_source(
    log_settings: LogSettings,
    trust: TrustRoot,
    session: aiohttp.ClientSession,
    retry: RetryPolicy,
    metrics: Metrics,
) -> LogSource:
    observe = metrics.fetch_observer(log_settings.url)
    if log_settings.api == "tiles":
        keys = trust.log_keys_for_url(log_settings.url)
        client = TilesClient(log_settings.url, session, retry=retry, observe=observe)
        return TilesSource(log_settings.url, client, keys[0].log_id if keys else b"")
    return RekorV1Source(log_settings.url, RekorV1Client(log_settings.url, session, retry=retry, observe=observe))


@dataclass
class Runtime:
    settings: Settings
    trust: TrustRoot
    store: Store
    metrics: Metrics
    followers: list[LogFollower]
    dispatcher: Dispatcher

    async def publish_pending(self) -> None:
        self.metrics.alerts_pending.set(await self.dispatcher.pending_count())


@asynccontextmanager
async def open_runtime(settings: Settings, retry: RetryPolicy | None = None) -> AsyncIterator[Runtime]:
    await upgrade(settings.database)
    trust = await asyncio.to_thread(
        load_trust_root, settings.trust.root, settings.trust.refresh, settings.trust.signing_config
    )
    store = Store.open(settings.database)
    metrics = Metrics()
    policy = Policy(settings.watch)
    headers = {"User-Agent": f"rekorwatch/{__version__}"}
    connector = aiohttp.TCPConnector(limit=32)
    try:
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            followers = []
            sinks = outbox_sinks(settings.alerts)
            for log_settings in logs_to_follow(settings, trust):
                source = make_source(log_settings, trust, session, retry or DAEMON_RETRY, metrics)
                recorder = SigningRecorder(store, policy, ChainVerifier(trust), trust, sinks=sinks, metrics=metrics)
                followers.append(
                    LogFollower(log_settings, trust, store, source, recorder, metrics=metrics, sinks=sinks)
                )
            dispatcher = Dispatcher(
                store,
                settings.alerts,
                session,
                on_result=lambda sink, result: metrics.alert_deliveries.labels(sink=sink, result=result).inc(),
            )
            yield Runtime(settings, trust, store, metrics, followers, dispatcher)
    finally:
        await store.close()


async def run_once(settings: Settings, retry: RetryPolicy | None = None) -> int:
    """One full cycle per log; 0 if every log verified, 3 if any is inconsistent, 1 otherwise."""
    code = EXIT_OK
    async with open_runtime(settings, retry) as runtime:
        for follower in runtime.followers:
            try:
                result = await follower.cycle()
            except (LogUnavailableError, LogProtocolError) as exc:
                follower.log.error("log_cycle_failed", error=str(exc)[:300])
                code = max(code, EXIT_ERROR)
                continue
            if result.inconsistent:
                code = EXIT_INCONSISTENT
        await runtime.dispatcher.deliver_due()
    return code


async def run_forever(
    settings: Settings, retry: RetryPolicy | None = None, stop: asyncio.Event | None = None
) -> int:
    """Tail every log, deliver alerts and serve the API until `stop` (default: SIGTERM/SIGINT).

    Shutdown is graceful: each log commits the chunk in flight and starts no other.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with open_runtime(settings, retry) as runtime:
        api = await start_api(
            ApiContext(runtime.store, runtime.metrics, settings.poll_interval, _secret(settings.server.api_token)),
            settings.server.host,
            settings.server.port,
        )
        tasks = [
            asyncio.create_task(follow_forever(follower, settings.poll_interval, stop))
            for follower in runtime.followers
        ]
        tasks.append(asyncio.create_task(runtime.dispatcher.run(stop)))
        tasks.append(asyncio.create_task(_publish_pending_forever(runtime, stop)))
        log.info("rekorwatch_started", logs=[f.url for f in runtime.followers], trust=runtime.trust.source)
        try:
            await stop.wait()
            log.info("rekorwatch_stopping")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.cleanup()
    return EXIT_OK


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def _publish_pending_forever(runtime: Runtime, stop: asyncio.Event, interval: float = 5.0) -> None:
    while not stop.is_set():
        try:
            await runtime.publish_pending()
        except SQLAlchemyError as exc:
            log.warning("alerts_pending_unavailable", error=str(exc)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
