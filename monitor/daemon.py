"""Wiring: settings -> trust root, store, log clients, followers; `run` and `run --once`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import structlog

from monitor import __version__
from monitor.config import LogSettings, Settings
from monitor.pipeline import LogFollower, follow_forever
from monitor.store.db import upgrade
from monitor.store.repository import Store
from monitor.tlog.http import LogProtocolError, LogUnavailableError, RetryPolicy
from monitor.tlog.rekor_v1 import RekorV1Client
from monitor.trust import TrustRoot, load_trust_root

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INCONSISTENT = 3


def logs_to_follow(settings: Settings, trust: TrustRoot) -> list[LogSettings]:
    """The configured logs, or by default every Rekor log of the signing config valid now."""
    if settings.logs is not None:
        return list(settings.logs)
    services = trust.rekor_services_at(datetime.now(UTC))
    return [
        LogSettings(url=svc.url, api="v1" if svc.major_api_version == 1 else "tiles", start="head")
        for svc in sorted(services, key=lambda s: s.url)
    ]


@dataclass
class Runtime:
    settings: Settings
    trust: TrustRoot
    store: Store
    followers: list[LogFollower]


@asynccontextmanager
async def open_runtime(settings: Settings, retry: RetryPolicy | None = None) -> AsyncIterator[Runtime]:
    await upgrade(settings.database)
    trust = await asyncio.to_thread(
        load_trust_root, settings.trust.root, settings.trust.refresh, settings.trust.signing_config
    )
    store = Store.open(settings.database)
    headers = {"User-Agent": f"rekorwatch/{__version__}"}
    connector = aiohttp.TCPConnector(limit=32)
    try:
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            followers = []
            for log_settings in logs_to_follow(settings, trust):
                if log_settings.api != "v1":
                    log.warning("log_api_not_supported_yet", log_url=log_settings.url, api=log_settings.api)
                    continue
                client = RekorV1Client(log_settings.url, session, retry=retry or RetryPolicy())
                followers.append(LogFollower(log_settings, trust, store, client))
            yield Runtime(settings, trust, store, followers)
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
    return code


async def run_forever(settings: Settings, retry: RetryPolicy | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_runtime(settings, retry) as runtime:
        log.info("rekorwatch_started", logs=[f.url for f in runtime.followers], trust=runtime.trust.source)
        tasks = [
            asyncio.create_task(follow_forever(follower, settings.poll_interval, stop))
            for follower in runtime.followers
        ]
        await stop.wait()
        log.info("rekorwatch_stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
    return EXIT_OK
