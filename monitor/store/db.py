"""Database engines and schema migrations (Alembic is the only way the schema changes).

Commands that only read (status, history, alerts) check with `require_current_schema` first: they
never create a database (opening a missing SQLite file would), and never query an old schema.

`upgrade` (the daemon at start, `rekorwatch db upgrade`) never loads Alembic in its process: it
stayed resident in the daemon for good (12-17 MiB, 6% of a 200 MB budget).
- A database at HEAD_REVISION is recognised by reading its alembic_version row.
- A new one (no table at all) is created at head from the models, in one transaction, with the
  alembic_version table Alembic would make: Alembic's own recipe for a new database. The models
  describe the migrated schema exactly: tests/test_store.py compares both, on both backends.
- Any other is migrated by Alembic in a child process (`python -m monitor.store.migrate`).
A read command loads Alembic only to explain a database that is not at head.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, event, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from monitor.child import start_module
from monitor.store.models import Base

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0008"
"""The newest script of migrations/versions (tests/test_store.py holds it to Alembic's head)."""

MIGRATIONS = Path(os.environ.get("REKORWATCH_MIGRATIONS", Path(__file__).resolve().parents[2] / "migrations"))
"""Alembic's scripts: the repository's migrations/ (editable installs), or $REKORWATCH_MIGRATIONS."""


WAL_SWITCH_SECONDS = 5.0
"""How long a connection tries to switch a new database to WAL while others switch it too."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0] != "wal":
        _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _switch_to_wal(cursor) -> None:  # type: ignore[no-untyped-def]
    """WAL, once per database (it stays WAL). Two connections switching a new database at once
    (the daemon's first, a `status` run beside it) each hold a read lock and want the write lock:
    SQLite fails one at once, without its busy timeout. That one tries again, briefly blocking (only
    ever at a new database's first connections)."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class DatabaseNotReadyError(Exception):
    """The database a read-only command needs is missing or not migrated; the message says what to run."""


class MigrationError(Exception):
    """Alembic failed to migrate the database; the message is its last word (never the URL)."""


SQLITE_CACHED_STATEMENTS = 16
"""Prepared statements a SQLite connection keeps (Python's default: 128). A catch-up's commits insert
a varying number of signings, each number its own multi-row statement: a 200k-entry tiles catch-up
peaked higher with 128 kept (daemon and decode process, 4 interleaved pairs: 185-187 MiB against
182-185), for no measured speed."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL (readers never block the tail) and a busy timeout."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"cached_statements": SQLITE_CACHED_STATEMENTS})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str) -> None:
    """Bring the database to head (see the module's docstring); MigrationError if Alembic fails."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            revision = await connection.run_sync(_revision_creating_if_new)
    finally:
        await engine.dispose()
    if revision != HEAD_REVISION:
        await _migrate_in_child(url)


async def _migrate_in_child(url: str) -> None:
    # The URL, which may hold a password, goes on the child's stdin.
    process = await start_module(
        "monitor.store.migrate", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await process.communicate(url.encode())
    if process.returncode != 0:
        said = errors.decode(errors="replace").strip().splitlines()
        raise MigrationError(said[-1] if said else f"the migration process exited with {process.returncode}")


ALEMBIC_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""The table in which Alembic records a database's revision, as Alembic creates it."""


def _revision_creating_if_new(connection: Connection) -> str | None:
    """The database's revision; a database with no table at all is first created at head."""
    tables = inspect(connection).get_table_names()
    if not tables:
        Base.metadata.create_all(connection, checkfirst=False)  # none exists: no query per table
        ALEMBIC_VERSION.create(connection)
        connection.execute(ALEMBIC_VERSION.insert().values(version_num=HEAD_REVISION))
        return HEAD_REVISION
    return _revision_of(connection) if ALEMBIC_VERSION.name in tables else None


def _revision_of(connection: Connection) -> str | None:
    """The revision Alembic recorded; None for a database with several heads, which this linear
    history never makes (Alembic then says what is wrong)."""
    rows = connection.execute(select(ALEMBIC_VERSION.c.version_num)).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def _stored_revision(engine: AsyncEngine) -> str | None:
    """The revision Alembic recorded, read through `engine`, which is then disposed of; None for a
    database it never migrated."""
    try:
        async with engine.connect() as connection:
            if not await connection.run_sync(lambda sync: inspect(sync).has_table(ALEMBIC_VERSION.name)):
                return None
            return await connection.run_sync(_revision_of)
    finally:
        await engine.dispose()


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
