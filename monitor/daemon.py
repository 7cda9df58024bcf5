"""Wiring: settings -> trust root, store, log sources, followers; `run` and `run --once`.

Log discovery: with no `logs:` configured, rekorwatch follows every Rekor log of the trust root
whose key is valid now (v1 and v2), starting at their head. The trust root is reloaded every
`TRUST_REFRESH_SECONDS` (over TUF when `trust.refresh` is on); a log that appears then (a new
shard) is followed from its first entry, so nothing it holds is missed. A retired log stays
followed: its checkpoint stops growing once it is read to its final size.

Everything long-lived runs under the Supervisor (supervisor.py): no background task ends unnoticed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import aiohttp
import structlog
from pydantic import SecretStr

from monitor import __version__
from monitor.alerting import AlertRaiser
from monitor.alerts.dispatcher import Dispatcher, outbox_sinks
from monitor.analyser import ChunkAnalyser, Judges
from monitor.api import ApiContext, start_api
from monitor.build_checks import BuildChecker
from monitor.codefresh_api import BuildsClients
from monitor.config import CtLogSettings, LogSettings, Settings
from monitor.configcheck import policy_log_problems
from monitor.contract import (
    EXIT_ERROR,
    EXIT_INCONSISTENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    GossipResult,
    LogKind,
    LogState,
)
from monitor.ct_recorder import CertificateRecorder
from monitor.entries import REASONS as ENTRY_ERROR_REASONS
from monitor.gossip import Gossip, gossip_sources
from monitor.health import FollowerHealth
from monitor.metrics import Metrics
from monitor.pipeline import BatchHandler, LogFollower, Shard
from monitor.policy import Policy
from monitor.progress import ProgressReport, showing
from monitor.recorder import SigningRecorder
from monitor.store.db import upgrade
from monitor.store.repository import Store
from monitor.supervisor import FollowLoop, StallWatch, Supervisor, describe, sleep_unless
from monitor.tlog.ct import REASONS as CT_ENTRY_ERROR_REASONS
from monitor.tlog.ct_client import Rfc6962Client, StaticCtClient
from monitor.tlog.ct_head import log_id_of
from monitor.tlog.ct_source import RFC6962_API, STATIC_API, Rfc6962Source, StaticCtSource
from monitor.tlog.http import RetryPolicy
from monitor.tlog.rekor_v1 import RekorV1Client
from monitor.tlog.source import LogSource, RekorV1Source, TilesSource
from monitor.tlog.tiles import TilesClient
from monitor.trust import TrustRoot, TrustRootError, load_trust_root
from monitor.unlogged import UnloggedSweep

log = structlog.get_logger(__name__)

DAEMON_RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=10.0)
"""Retries inside one cycle; beyond them the cycle fails and the follow loop backs off."""
TRUST_REFRESH_SECONDS = 6 * 3600.0
PENDING_GAUGE_SECONDS = 5.0
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
    concurrency = log_settings.concurrency
    if log_settings.api == "tiles":
        keys = trust.log_keys_for_url(log_settings.url)
        client = TilesClient(log_settings.url, session, retry=retry, observe=observe, concurrency=concurrency)
        return TilesSource(log_settings.url, client, keys[0].log_id if keys else b"")
    client_v1 = RekorV1Client(log_settings.url, session, retry=retry, observe=observe, concurrency=concurrency)
    return RekorV1Source(log_settings.url, client_v1)


def make_ct_source(
    ct_settings: CtLogSettings, trust: TrustRoot, session: aiohttp.ClientSession, retry: RetryPolicy, metrics: Metrics
) -> Rfc6962Source | StaticCtSource:
    keys = trust.ct_keys_for(ct_settings.url, ct_settings.origin)
    if not keys:
        named = f"origin {ct_settings.origin}" if ct_settings.origin else ct_settings.url
        raise TrustRootError(f"ct_logs: the trust root ({trust.source}) has no key for {named}")
    options = {
        "retry": retry,
        "observe": metrics.fetch_observer(ct_settings.url),
        "concurrency": ct_settings.concurrency,
    }
    if ct_settings.api == STATIC_API:
        client = StaticCtClient(ct_settings.url, session, **options)
        return StaticCtSource(ct_settings.url, client, keys[0], ct_settings.origin)
    client_6962 = Rfc6962Client(ct_settings.url, session, log_id=log_id_of(keys[0]), **options)
    return Rfc6962Source(ct_settings.url, client_6962, keys[0], ct_settings.origin)


async def ct_logs_to_follow(
    settings: Settings,
    trust: TrustRoot,
    session: aiohttp.ClientSession,
    start: str | int = "head",
    followed: Collection[str] = (),
) -> list[CtLogSettings]:
    """The configured CT logs, or the trust root's CT logs valid now, each with the API it answers;
    without those `followed` already (not asked again which API they answer)."""
    if settings.ct_logs is not None:
        return [ct_settings for ct_settings in settings.ct_logs if ct_settings.url not in followed]
    now = datetime.now(UTC)
    urls = sorted({key.base_url for key in trust.ctlogs if key.validity.contains(now)} - set(followed))
    return [CtLogSettings(url=url, api=await ct_api_of(url, session), start=start) for url in urls]


async def ct_api_of(url: str, session: aiohttp.ClientSession) -> str:
    """RFC 6962 when `<url>/ct/v1/get-sth` answers, static-ct-api otherwise (as rekor-monitor tells them
    apart); a log that cannot be reached now is taken for RFC 6962, which public-good's is."""
    try:
        async with session.get(f"{url}/ct/v1/get-sth", timeout=aiohttp.ClientTimeout(total=15)) as answer:
            return RFC6962_API if answer.status == 200 else STATIC_API
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("ct_api_unknown", log_url=url, error=describe(exc), assuming=RFC6962_API)
        return RFC6962_API


def new_analyser(
    settings: Settings, trust: TrustRoot, started: asyncio.subprocess.Process | None = None
) -> ChunkAnalyser:
    return ChunkAnalyser(Judges.of(Policy(settings.watch), trust), started=started)


async def load_trust(settings: Settings) -> TrustRoot:
    trust = await asyncio.to_thread(
        load_trust_root, settings.trust.root, settings.trust.refresh, settings.trust.signing_config
    )
    problems = policy_log_problems(settings, trust)
    if problems:
        raise TrustRootError("; ".join(problems))
    return trust


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
    certificates: CertificateRecorder
    alerts: AlertRaiser
    builds: BuildChecker
    unlogged: UnloggedSweep
    followers: list[LogFollower] = field(default_factory=list)
    health: dict[str, FollowerHealth] = field(default_factory=dict)
    progress: ProgressReport = field(default_factory=ProgressReport)
    gossip: Gossip | None = None

    def add_follower(self, log_settings: LogSettings | CtLogSettings) -> LogFollower:
        """Follow a Rekor log, or (CtLogSettings) a CT log."""
        source: LogSource
        handler: BatchHandler
        if isinstance(log_settings, CtLogSettings):
            source = make_ct_source(log_settings, self.trust, self.session, self.retry, self.metrics)
            handler, entry_error_reasons = self.certificates, CT_ENTRY_ERROR_REASONS
        else:
            source = make_source(log_settings, self.trust, self.session, self.retry, self.metrics)
            handler, entry_error_reasons = self.recorder, ENTRY_ERROR_REASONS
        follower = LogFollower(
            log_settings,
            self.trust,
            self.store,
            source,
            handler,
            self.alerts,
            self.metrics,
            progress=self.progress.of(log_settings.url),
        )
        self.followers.append(follower)
        self.health[follower.url] = FollowerHealth(follower.url, source.origin("", log_settings.origin), source.api)
        policy = log_settings.parsed_witness_policy
        witnesses = [witness.name for witness in policy.witnesses] if policy else []
        self.metrics.track_log(follower.url, entry_error_reasons, witnesses)
        return follower

    @property
    def followers_by_url(self) -> dict[str, LogFollower]:
        return {follower.url: follower for follower in self.followers}

    def rekor_log_urls(self) -> list[str]:
        return [follower.url for follower in self.followers if follower.kind is LogKind.REKOR]

    def follow_loop(self, follower: LogFollower) -> FollowLoop:
        return FollowLoop(follower, self.health[follower.url], self.store, self.settings.poll_interval, self.metrics)

    async def adopt_trust(self, trust: TrustRoot) -> list[LogSettings]:
        """Use a refreshed trust root (rotated keys, new CAs); returns the logs it adds, to follow
        from 0. The old analyser answers what was sent to it; new chunks go to the new one."""
        self.trust = trust
        old = self.recorder.analyser
        self.recorder.analyser = self.certificates.analyser = new_analyser(self.settings, trust)
        await old.close()
        for follower in self.followers:
            follower.trust = trust
        known = {follower.url for follower in self.followers}
        added = [s for s in logs_to_follow(self.settings, trust, start=0) if s.url not in known]
        for log_settings in added:
            log.info("log_discovered", log_url=log_settings.url, api=log_settings.api, start=0)
        return added

    async def new_ct_logs(self, start: str | int = "head") -> list[CtLogSettings]:
        """The CT logs (configured, or of the trust root) that are not followed yet."""
        followed = {follower.url for follower in self.followers}
        return await ct_logs_to_follow(self.settings, self.trust, self.session, start, followed)

    async def publish_stored_state(self) -> None:
        """Gauges and states as the database has them, so a restart shows at once what was known."""
        for follower in self.followers:
            rows = await self.store.logs(follower.url)
            if not rows:
                continue
            follower.shards = [Shard.of(row) for row in rows]
            follower.publish()
            states = {LogState(row.state) for row in rows}
            state = LogState.INCONSISTENT if LogState.INCONSISTENT in states else LogState(rows[-1].state)
            self.metrics.set_log_state(follower.url, state)
            self.health[follower.url].state = state

    async def resolve_conditions_of_unfollowed_logs(self) -> None:
        """A log dropped from the configuration (or the trust root) takes its open stall and witness
        alerts with it: nothing would ever clear them, and Alertmanager would keep them firing."""
        resolved = await self.store.resolve_conditions_of_unfollowed_logs(self.followers_by_url)
        if resolved:
            log.info("resolved_alerts_of_unfollowed_logs", alerts=resolved)

    async def publish_pending(self) -> None:
        counts = await self.dispatcher.pending_by_sink()
        self.metrics.alerts_pending.set(sum(counts.values()))
        for route in self.dispatcher.routes:
            self.metrics.deliveries_pending.labels(sink=route.name).set(counts.get(route.name, 0))


@asynccontextmanager
async def open_runtime(
    settings: Settings, retry: RetryPolicy | None = None, decode_worker: asyncio.subprocess.Process | None = None
) -> AsyncIterator[Runtime]:
    """`decode_worker`: a decode process started before the daemon's imports (cli.py), used first."""
    await upgrade(settings.database)
    trust = await load_trust(settings)
    metrics = Metrics()
    headers = {"User-Agent": f"rekorwatch/{__version__}"}
    connector = aiohttp.TCPConnector(limit=64)
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
        sinks = outbox_sinks(settings.alerts)
        metrics.track_sinks(name for name, _ in sinks)
        analyser = new_analyser(settings, trust, decode_worker)
        runtime = Runtime(
            settings,
            trust,
            store,
            metrics,
            session,
            retry or DAEMON_RETRY,
            dispatcher,
            SigningRecorder(analyser, settings.watch),
            CertificateRecorder(analyser),
            AlertRaiser(store, sinks, metrics),
            BuildChecker(store, BuildsClients(settings.watch, session), sinks, metrics),
            UnloggedSweep(store, settings.ct_grace, sinks, metrics),
        )
        runtime.unlogged.rekor_logs = runtime.rekor_log_urls
        for log_settings in logs_to_follow(settings, trust):
            runtime.add_follower(log_settings)
        for ct_settings in await runtime.new_ct_logs():
            runtime.add_follower(ct_settings)
        if settings.gossip is not None:
            sources = gossip_sources(settings.gossip, session)
            metrics.track_gossip(source.name for source in sources)
            followed = lambda: runtime.followers_by_url  # noqa: E731
            runtime.gossip = Gossip(settings.gossip, store, runtime.alerts, followed, sources, metrics)
        await runtime.publish_stored_state()
        await runtime.resolve_conditions_of_unfollowed_logs()
        try:
            yield runtime
        finally:
            await runtime.recorder.analyser.close()


async def run_once(
    settings: Settings, retry: RetryPolicy | None = None, decode_worker: asyncio.subprocess.Process | None = None
) -> int:
    """One full cycle per log, then the build checks and alert deliveries that are due; 0 if every
    log verified, 3 if any is inconsistent, 1 otherwise."""
    code = EXIT_OK
    async with open_runtime(settings, retry, decode_worker) as runtime:
        done = asyncio.Event()
        progress = asyncio.create_task(_show_progress_forever(runtime.progress, done))
        try:
            for follower in runtime.followers:
                result = await runtime.follow_loop(follower).cycle()
                if result is None:
                    code = max(code, EXIT_ERROR)
                elif result.inconsistent:
                    code = EXIT_INCONSISTENT
        finally:
            done.set()
            await progress
        if runtime.gossip is not None:
            if any(c.result is GossipResult.SPLIT_VIEW for c in await runtime.gossip.round()):
                code = EXIT_INCONSISTENT
        await runtime.builds.drain()
        await runtime.unlogged.sweep()
        await runtime.dispatcher.deliver_due()
    return code


async def run_forever(
    settings: Settings,
    retry: RetryPolicy | None = None,
    stop: asyncio.Event | None = None,
    trust_refresh_seconds: float = TRUST_REFRESH_SECONDS,
    decode_worker: asyncio.subprocess.Process | None = None,
) -> int:
    """Tail every log, deliver alerts and serve the API until `stop` (default: SIGTERM/SIGINT).

    Shutdown is graceful: each log commits the chunk in flight and starts no other. Stopped by
    SIGTERM (or `stop`) it returns 0; by Ctrl-C (SIGINT), 130.
    """
    ctrl_c = asyncio.Event()
    if stop is None:
        stop = asyncio.Event()
        _stop_on_signals(stop, ctrl_c)
    async with open_runtime(settings, retry, decode_worker) as runtime:
        context = ApiContext(
            runtime.store,
            runtime.metrics,
            settings.poll_interval,
            _secret(settings.server.api_token),
            health=lambda: runtime.health,
        )
        api = await start_api(context, settings.server.host, settings.server.port)
        supervisor = Supervisor(stop, runtime.metrics)
        for follower in runtime.followers:
            _supervise_follower(supervisor, runtime, follower, stop)
        watch = StallWatch(lambda: runtime.health.values(), runtime.alerts, settings.poll_interval)
        supervisor.start("stall watch", partial(watch.run, stop))
        supervisor.start("alert dispatcher", partial(runtime.dispatcher.run, stop))
        supervisor.start("build checks", partial(runtime.builds.run, stop))
        supervisor.start("unlogged certificates", partial(runtime.unlogged.run, stop))
        if runtime.gossip is not None:
            supervisor.start("gossip", partial(runtime.gossip.run, stop))
        supervisor.start("catch-up progress", partial(_show_progress_forever, runtime.progress, stop))
        supervisor.start("pending alerts gauge", partial(_publish_pending_forever, runtime, stop))
        supervisor.start(
            "trust refresh", partial(_refresh_trust_forever, runtime, supervisor, stop, trust_refresh_seconds)
        )
        log.info("rekorwatch_started", logs=[f.url for f in runtime.followers], trust=runtime.trust.source)
        try:
            await stop.wait()
            log.info("rekorwatch_stopping")
        finally:
            await supervisor.shutdown()
            await api.cleanup()
    return EXIT_INTERRUPTED if ctrl_c.is_set() else EXIT_OK


def _stop_on_signals(stop: asyncio.Event, ctrl_c: asyncio.Event) -> None:
    """SIGTERM sets `stop`; SIGINT (Ctrl-C) sets `ctrl_c` as well."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: (ctrl_c.set(), stop.set()))


def _supervise_follower(supervisor: Supervisor, runtime: Runtime, follower: LogFollower, stop: asyncio.Event) -> None:
    supervisor.start(f"follow {follower.url}", partial(runtime.follow_loop(follower).run, stop))


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def _show_progress_forever(report: ProgressReport, stop: asyncio.Event) -> None:
    showing(report)
    try:
        while not stop.is_set():
            await sleep_unless(stop, report.interval)
            report.show()
    finally:
        report.clear()


async def _publish_pending_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await runtime.publish_pending()
        await sleep_unless(stop, PENDING_GAUGE_SECONDS)


async def _refresh_trust_forever(
    runtime: Runtime, supervisor: Supervisor, stop: asyncio.Event, interval: float
) -> None:
    """Reload the trust root now and then; follow the logs it adds (new shards) from their start."""
    while True:
        await sleep_unless(stop, interval)
        if stop.is_set():
            return
        try:
            trust = await load_trust(runtime.settings)
        except TrustRootError as exc:
            log.warning("trust_reload_failed", error=str(exc)[:300], keeping=runtime.trust.source)
            continue
        # each follower is supervised as soon as it is added: one that is added and not supervised
        # would count as followed at every later refresh and never be read
        for log_settings in [*await runtime.adopt_trust(trust), *await runtime.new_ct_logs(start=0)]:
            _supervise_follower(supervisor, runtime, runtime.add_follower(log_settings), stop)
