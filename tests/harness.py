"""What end-to-end tests share: a daemon running in the test's event loop with its API on a free port,
waiting for conditions, and reading metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from monitor.config import LogSettings, ServerSettings, Settings, TrustSettings
from monitor.daemon import EXIT_OK, run_forever
from monitor.simulate.server import RunningSimulator
from monitor.store.repository import Store
from monitor.tlog.http import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.02, max_delay=0.2)
"""A daemon's retries in end-to-end tests."""
CLIENT_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
"""A log client's retries in its own tests: few, and a millisecond apart."""
SCHEMA_NOT_YET = (OperationalError, ProgrammingError)
"""What reading a table raises before the daemon under test created it (SQLite: OperationalError,
PostgreSQL: ProgrammingError); anything else is a failure of the test or of the daemon."""


def base_settings(sim: RunningSimulator, database_url: str, *logs: LogSettings, **extra: Any) -> Settings:
    """A daemon on the simulator: its trust root (never refreshed), a 0.2 s poll, no CT log, and
    `logs` (by default the simulator's own log, read from index 0); `extra` sets any other field."""
    values: dict[str, Any] = {
        "database": database_url,
        "trust": TrustSettings(root=str(sim.trust_files.trusted_root), refresh=False),
        "logs": list(logs) or [LogSettings(url=sim.url, api="tiles" if sim.log.tiles else "v1", start=0)],
        "poll_interval": 0.2,
        "ct_logs": [],
    }
    return Settings(**{**values, **extra})


async def free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Wait until `check()` is true; fail with `what` after `within` seconds (a bound for a broken
    daemon, not a performance figure)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def rows_of(database_url: str, model: type) -> list:  # type: ignore[type-arg]
    """Every row of one table, in insertion order, read through a store of its own."""
    async with Store.open(database_url) as store, store.sessions() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


def metric(exposition: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition; 0.0 when it is absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in exposition.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


@dataclass
class Daemon:
    base: str
    stop: asyncio.Event
    task: asyncio.Task[int]

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            return response.status, body

    async def metrics(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200
        return text


@asynccontextmanager
async def running_daemon(
    settings: Settings, retry: RetryPolicy = FAST_RETRY, port: int | None = None, **options: Any
) -> AsyncIterator[Daemon]:
    """`rekorwatch run` in this event loop, its API on `port` (default: a free one); stopped cleanly on exit."""
    port = port or await free_port()
    settings = settings.model_copy(update={"server": ServerSettings(listen=f"127.0.0.1:{port}")})
    stop = asyncio.Event()
    daemon = Daemon(
        f"http://127.0.0.1:{port}", stop, asyncio.create_task(run_forever(settings, retry, stop, **options))
    )
    try:
        await eventually(lambda: _answers(daemon), "the daemon's API answers")
        yield daemon
    finally:
        stop.set()
        assert await daemon.task == EXIT_OK


async def _answers(daemon: Daemon) -> bool:
    if daemon.task.done():
        daemon.task.result()  # a daemon that died says why
    try:
        status, _ = await daemon.get("/healthz")
    except aiohttp.ClientConnectionError:
        return False
    return status == 200
