"""Database engines and schema migrations (Alembic is the only way the schema changes).

Commands that only read (status, history, alerts) check with `require_current_schema` first: they
never create a database (opening a missing SQLite file would), and never query an old schema.

A database already at HEAD_REVISION is recognised by reading its alembic_version row: Alembic (0.2 s
to import, 11 MiB resident in the daemon for good) is loaded only to migrate, or to explain a
database that is not at head.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0008"
"""The newest script of migrations/versions (tests/test_store.py holds it to Alembic's head)."""

MIGRATIONS = Path(os.environ.get("REKORWATCH_MIGRATIONS", Path(__file__).resolve().parents[2] / "migrations"))
"""Alembic's scripts: the repository's migrations/ (editable installs), or $REKORWATCH_MIGRATIONS."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class DatabaseNotReadyError(Exception):
    """The database a read-only command needs is missing or not migrated; the message says what to run."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL (readers never block the tail) and a busy timeout."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_sync(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def upgrade(url: str) -> None:
    """Migrate to head; Alembic runs its own event loop, so it gets a thread of its own."""
    if await _stored_revision(create_engine(url)) != HEAD_REVISION:
        await asyncio.to_thread(upgrade_sync, url)


async def _stored_revision(engine: AsyncEngine) -> str | None:
    """The revision Alembic recorded, read through `engine`, which is then disposed of; None for a
    database it never migrated (or one with several heads, which this linear history never makes:
    Alembic then says what is wrong)."""
    try:
        async with engine.connect() as connection:
            if not await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
                return None
            rows = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    return rows[0] if len(rows) == 1 else None


def _schema_problem(url: str, current: str | None) -> str | None:
    """What is wrong with a database at revision `current`, or None when it is at head."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(url))
    head = scripts.get_current_head()
    if current == head:
        return None
    if current is None:
        return "the database is not migrated: run `rekorwatch db upgrade`"
    if current not in {script.revision for script in scripts.walk_revisions()}:
        return f"the database is at revision {current}, newer than this rekorwatch knows (it knows up to {head})"
    return f"the database is at revision {current}, this rekorwatch needs {head}: run `rekorwatch db upgrade`"


async def require_current_schema(url: str) -> None:
    """Raise DatabaseNotReadyError unless the database exists and is migrated to head; creates nothing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or not await asyncio.to_thread(os.path.isfile, path):
            raise DatabaseNotReadyError(
                f"no database at {path or '(memory)'}: `rekorwatch run` creates it, or `rekorwatch db upgrade`"
            )
    current = await _stored_revision(create_async_engine(url))  # no WAL pragma: an unready database is left untouched
    if current == HEAD_REVISION:
        return
    problem = await asyncio.to_thread(_schema_problem, url, current)
    if problem:
        raise DatabaseNotReadyError(problem)
