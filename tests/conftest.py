"""Shared fixtures: a fresh database per test on SQLite AND PostgreSQL, and the simulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

from monitor.simulate.server import RunningSimulator, start_simulator

# The suite runs on a loaded 2-core machine beside PostgreSQL: a slow example is not a failure.
settings.register_profile("rekorwatch", deadline=None)
settings.load_profile("rekorwatch")

PG_URL = os.environ.get("REKORWATCH_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the server of REKORWATCH_TEST_PG_URL, dropped afterwards."""
    name = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_URL))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def another_database(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Another fresh database on the same backend as `database_url` (SQLite: a file in tmp_path)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'another.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """A new, empty database. PostgreSQL must be reachable: a test that needs it fails, never skips."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'rekorwatch.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """The simulator with its defaults (Rekor v1, an RFC 6962 CT log); a module that needs another
    overrides this fixture with its own `sim`."""
    running = await start_simulator(directory=tmp_path / "sim")
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
