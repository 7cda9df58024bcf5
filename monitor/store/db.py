"""Database engines and schema migrations (Alembic is the only way the schema changes; a database
with no table yet is created from the models, which describe the migrated schema exactly, and
recorded at head: Alembic's recipe for a new database).

Commands that only read (status, history, alerts) check with `require_current_schema` first: they
never create a database (opening a missing SQLite file would), and never query an old schema.

A database already at HEAD_REVISION is recognised by reading its alembic_version row. The daemon
(`rekorwatch run`) migrates in a child process (`python -m monitor.store.migrate`, a `Migration`),
started first thing so that it runs on the other core while the daemon imports its modules: in the
daemon, Alembic and the migration scripts stayed resident for good (12-17 MiB, 6% of a 200 MB
budget). `rekorwatch db upgrade`, which exits once done, migrates in process. A read command loads
Alembic only to explain a database that is not at head.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from monitor.store.models import Base

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


class MigrationError(Exception):
    """The migration process failed; the message is its last word (the error, never the URL)."""


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
    """Migrate to head; a database with no table yet is created at head from the models instead."""
    if asyncio.run(_created_at_head(url)):
        return
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def _created_at_head(url: str) -> bool:
    """Create an empty database's tables from the models and record it at head, in one transaction
    (Alembic's recipe for a new database: 0.2-0.3 s of CPU less than the 8 migrations). The models
    describe the migrated schema exactly (tests/test_store.py compares both). False: it has tables."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(_create_if_empty, url)
    finally:
        await engine.dispose()


def _create_if_empty(connection: Connection, url: str) -> bool:
    if inspect(connection).get_table_names():
        return False
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    Base.metadata.create_all(connection)
    MigrationContext.configure(connection).stamp(ScriptDirectory.from_config(alembic_config(url)), "head")
    return True


class Migration:
    """`python -m monitor.store.migrate` migrating one database to head (or finding it there)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def start(cls, url: str) -> Migration:
        # -P: the child imports rekorwatch as installed, never a `monitor` package in the current
        # directory. The URL, which may hold a password, goes on its stdin, not its command line.
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "monitor.store.migrate"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(url.encode())
        return cls(process)

    async def finished(self) -> None:
        """Wait for the migration; MigrationError with the child's last word if it failed."""
        errors = await asyncio.to_thread(self._wait)
        if self._process.returncode != 0:
            said = errors.decode(errors="replace").strip().splitlines()
            raise MigrationError(said[-1] if said else f"the migration process exited with {self._process.returncode}")

    def _wait(self) -> bytes:
        """What the child said on stderr, once it exited."""
        assert self._process.stderr is not None
        with self._process.stderr:
            errors = self._process.stderr.read()
        self._process.wait()
        return errors


async def upgrade(url: str, migration: Migration | None = None) -> None:
    """Migrate to head: wait for `migration` if one was started for this URL, else migrate in this
    process unless the database is at head already. MigrationError if it fails."""
    if migration is not None:
        await migration.finished()
    elif await stored_revision(url) != HEAD_REVISION:
        try:
            await asyncio.to_thread(upgrade_sync, url)  # Alembic runs its own event loop: a thread of its own
        except Exception as exc:
            raise MigrationError(migration_failure(exc)) from exc


def migration_failure(exc: BaseException) -> str:
    """What a failed migration says: the error's type and first line (never a traceback, or the URL)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


async def stored_revision(url: str) -> str | None:
    """The revision of the database at `url`, through the daemon's engine (SQLite: WAL)."""
    return await _stored_revision(create_engine(url))


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
