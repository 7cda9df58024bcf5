"""Wiring: settings -> trust root, store, log sources, followers; `run` and `run --once`.

Log discovery: with no `logs:` configured, rekorwatch follows every Rekor log of the trust root
whose key is valid now (v1 and v2), starting at their head. The trust root is reloaded every
`TRUST_REFRESH_SECONDS` (over TUF when `trust.refresh` is on); a log that appears then (a new
shard) is followed from its first entry, so nothing it holds is missed. A retired log stays
followed: its checkpoint stops growing once it is read to its final size.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import structlog
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from monitor import __version__
from monitor.alerts.dispatcher import Dispatcher, outbox_sinks
from monitor.analyser import ChunkAnalyser
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
from monitor.trust import TrustRoot, TrustRootError, load_trust_root

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INCONSISTENT = 3
DAEMON_RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=10.0)
"""Retries inside one cycle; beyond them the cycle fails and `follow_forever` backs off."""
TRUST_REFRESH_SECONDS = 6 * 3600.0
ED25519 = "PKIX_ED25519"


def logs_to_follow(settings: Settings, trust: TrustRoot, start: str | int = "head") -> list[LogSettings]:
    """The configured logs, or every log of the trust root whose key is valid now.

    The API of a discovered log comes from the signing config (majorApiVersion); a log it does not
    list speaks tiles when its key is Ed25519 (Rekor v2), v1 otherwise.
    """
    if settings.logs is not None:
        return list(settings.logs)
    now = datetime.now(UTC)
    versions = {service.url: service.major_api_version for service in trust.rekor_services}
    discovered: dict[str, LogSettings] = {}
    for key in trust.tlogs:
        if not key.validity.contains(now) or key.base_url in discovered:
            continue
        version = versions.get(key.base_url, 2 if key.key_details == ED25519 else 1)
        discovered[key.base_url] = LogSettings(url=key.base_url, api="v1" if version == 1 else "tiles", start=start)
    return [discovered[url] for url in sorted(discovered)]


def make_source(
    log_settings: LogSettings, trust: TrustRoot, session: aiohttp.ClientSession, retry: RetryPolicy, metrics: Metrics
) -> LogSource:
    observe = metrics.fetch_observer(log_settings.url)
    if log_settings.api == "tiles":
        keys = trust.log_keys_for_url(log_settings.url)
        client = TilesClient(log_settings.url, session, retry=retry, observe=observe)
        return TilesSource(log_settings.url, client, keys[0].log_id if keys else b"")
    return RekorV1Source(log_settings.url, RekorV1Client(log_settings.url, session, retry=retry, observe=observe))


def new_analyser(settings: Settings, trust: TrustRoot) -> ChunkAnalyser:
    return ChunkAnalyser(Policy(settings.watch), ChainVerifier(trust))


async def load_trust(settings: Settings) -> TrustRoot:
    return await asyncio.to_thread(
        load_trust_root, settings.trust.root, settings.trust.refresh, settings.trust.signing_config
    )


@dataclass
class Runtime:
    settings: Settings
    trust: TrustRoot
    store: Store
    metrics: Metrics
    session: aiohttp.ClientSession
    retry: RetryPolicy
    dispatcher: Dispatcher
    recorder: SigningRecorder
    followers: list[LogFollower] = field(default_factory=list)

    def add_follower(self, log_settings: LogSettings) -> LogFollower:
        source = make_source(log_settings, self.trust, self.session, self.retry, self.metrics)
        follower = LogFollower(
            log_settings,
            self.trust,
            self.store,
            source,
            self.recorder,
            metrics=self.metrics,
            sinks=self.recorder.sinks,
        )
        self.followers.append(follower)
        return follower

    def adopt_trust(self, trust: TrustRoot) -> list[LogFollower]:
        """Use a refreshed trust root (rotated keys, new CAs) and follow the logs it adds from 0."""
        self.trust = trust
        old = self.recorder.analyser
        self.recorder.analyser = new_analyser(self.settings, trust)
        self.recorder.trust = trust
        old.close()
        for follower in self.followers:
            follower.trust = trust
        known = {follower.url for follower in self.followers}
        added = [s for s in logs_to_follow(self.settings, trust, start=0) if s.url not in known]
        for log_settings in added:
            log.info("log_discovered", log_url=log_settings.url, api=log_settings.api, start=0)
        return [self.add_follower(log_settings) for log_settings in added]

    async def publish_pending(self) -> None:
        self.metrics.alerts_pending.set(await self.dispatcher.pending_count())


@asynccontextmanager
async def open_runtime(settings: Settings, retry: RetryPolicy | None = None) -> AsyncIterator[Runtime]:
    await upgrade(settings.database)
    trust = await load_trust(settings)
    metrics = Metrics()
    headers = {"User-Agent": f"rekorwatch/{__version__}"}
    connector = aiohttp.TCPConnector(limit=32)
    async with (
        Store.open(settings.database) as store,
        aiohttp.ClientSession(headers=headers, connector=connector) as session,
    ):
        dispatcher = Dispatcher(
            store,
            settings.alerts,
            session,
            on_result=lambda sink, result: metrics.alert_deliveries.labels(sink=sink, result=result).inc(),
        )
        recorder = SigningRecorder(store, new_analyser(settings, trust), trust, outbox_sinks(settings.alerts), metrics)
        runtime = Runtime(settings, trust, store, metrics, session, retry or DAEMON_RETRY, dispatcher, recorder)
        for log_settings in logs_to_follow(settings, trust):
            runtime.add_follower(log_settings)
        try:
            yield runtime
        finally:
            runtime.recorder.analyser.close()


async def run_once(settings: Settings, retry: RetryPolicy | None = None) -> int:
    """One full cycle per log, then deliver due alerts; 0 if every log verified, 3 if any is
    inconsistent, 1 otherwise."""
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
    settings: Settings,
    retry: RetryPolicy | None = None,
    stop: asyncio.Event | None = None,
    trust_refresh_seconds: float = TRUST_REFRESH_SECONDS,
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
        tasks = [_follow(follower, settings, stop) for follower in runtime.followers]
        tasks.append(asyncio.create_task(runtime.dispatcher.run(stop)))
        tasks.append(asyncio.create_task(_publish_pending_forever(runtime, stop)))
        tasks.append(asyncio.create_task(_refresh_trust_forever(runtime, stop, tasks, trust_refresh_seconds)))
        log.info("rekorwatch_started", logs=[f.url for f in runtime.followers], trust=runtime.trust.source)
        try:
            await stop.wait()
            log.info("rekorwatch_stopping")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.cleanup()
    return EXIT_OK


def _follow(follower: LogFollower, settings: Settings, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(follow_forever(follower, settings.poll_interval, stop))


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _publish_pending_forever(runtime: Runtime, stop: asyncio.Event, interval: float = 5.0) -> None:
    while not stop.is_set():
        try:
            await runtime.publish_pending()
        except SQLAlchemyError as exc:
            log.warning("alerts_pending_unavailable", error=str(exc)[:200])
        await _sleep_unless_stopped(stop, interval)


async def _refresh_trust_forever(
    runtime: Runtime, stop: asyncio.Event, tasks: list[asyncio.Task[None]], interval: float
) -> None:
    """Reload the trust root now and then; follow the logs it adds (new shards) from their start."""
    while True:
        await _sleep_unless_stopped(stop, interval)
        if stop.is_set():
            return
        try:
            trust = await load_trust(runtime.settings)
        except TrustRootError as exc:
            log.warning("trust_reload_failed", error=str(exc)[:300], keeping=runtime.trust.source)
            continue
        tasks += [_follow(follower, runtime.settings, stop) for follower in runtime.adopt_trust(trust)]
