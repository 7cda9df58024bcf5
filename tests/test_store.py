"""The store: migrations keep data, alert dedup across writers, and one tailer per log on PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from monitor.store.db import HEAD_REVISION, MigrationError, alembic_config, create_engine, upgrade
from monitor.store.models import INDEXED_TEXT_BYTES, TRUNCATED_MARK, CertificateRow, LogRow, NewSigning, SigningRow
from monitor.store.repository import Batch, IssuedCertificate, NewAlert, SignedAlert, Store
from tests.conftest import another_database
from tests.seed import EPOCH, LOG_URL, Spec, new_signing, signing_row

OLD_LOG = (
    "INSERT INTO logs (url, api, origin, tree_id, shard_offset, tree_size, verified_size, next_index, "
    "compact_range, state, retired, updated_at) VALUES ('https://rekor.example', 'v1', 'rekor.example - 7', "
    "'7', 0, 10, 10, 10, :blob, 'ok', false, CURRENT_TIMESTAMP)"
)

OLD_ALERT = (
    "INSERT INTO alerts (dedup_key, kind, severity, summary, payload, created_at) "
    "VALUES ('log_stalled:x', 'log_stalled', 'warning', 'old alert', '{}', CURRENT_TIMESTAMP)"
)


async def test_upgrading_from_the_first_revision_keeps_the_data(database_url: str) -> None:
    await _upgrade_to(database_url, "0001")
    store = Store.open(database_url)
    try:
        async with store.engine.begin() as connection:
            await connection.execute(text(OLD_LOG), {"blob": b"\x01" * 64})
            await connection.execute(text(OLD_ALERT))
    finally:
        await store.close()
    await upgrade(database_url)
    store = Store.open(database_url)
    try:
        [log] = await store.logs()
        assert (log.url, log.next_index, log.compact_range) == ("https://rekor.example", 10, b"\x01" * 64)
        [alert] = await store.alerts()
        assert (alert.summary, alert.resolved_at) == ("old alert", None)
        async with store.engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM signings")) == 0
    finally:
        await store.close()


async def _upgrade_to(database_url: str, revision: str) -> None:
    import asyncio

    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)


async def test_a_new_database_is_created_as_the_migrations_leave_one(database_url: str, tmp_path: Path) -> None:
    """A database with no table is created from the models and recorded at head: its schema must be
    the migrated one, table by table (alembic_version too: columns, types, nullability, server
    defaults, indexes, unique, foreign and primary keys), or the two kinds of databases would drift apart."""
    await _upgrade_to(database_url, "0001")
    await upgrade(database_url)  # not empty: the migrations run
    async with another_database(database_url, tmp_path) as created:
        await upgrade(created)  # empty: created from the models
        migrated_schema, created_schema = await _schema(database_url), await _schema(created)
        assert await _revision(created) == HEAD_REVISION
    assert created_schema == migrated_schema
    assert {"logs", "signings", "alerts", "certificates", "alembic_version"} <= set(created_schema)


async def _revision(url: str) -> str:
    store = Store.open(url)
    try:
        async with store.engine.connect() as connection:
            return str(await connection.scalar(text("SELECT version_num FROM alembic_version")))
    finally:
        await store.close()


async def _schema(url: str) -> dict[str, object]:
    store = Store.open(url)
    try:
        async with store.engine.connect() as connection:
            return await connection.run_sync(_describe_tables)
    finally:
        await store.close()


def _describe_tables(connection: Connection) -> dict[str, object]:
    found = inspect(connection)
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in found.get_columns(table)),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)),
            sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
            sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"], str(f.get("options")))
                for f in found.get_foreign_keys(table)
            ),
            sorted(found.get_pk_constraint(table).items()),
        )
        for table in found.get_table_names()
    }


async def test_an_alert_is_raised_once_whatever_the_number_of_writers(database_url: str) -> None:
    await upgrade(database_url)
    first, second = Store.open(database_url), Store.open(database_url)
    try:
        alert = NewAlert("impersonation:u:1:abc", "impersonation", "critical", "x", {})
        assert await first.raise_alert(alert, [("hook", "info")])
        assert not await second.raise_alert(alert, [("hook", "info")])
        assert len(await first.alerts()) == 1
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_replica_tails_a_log_and_another_takes_over_when_it_dies(database_url: str) -> None:
    await upgrade(database_url)
    first, second = Store.open(database_url), Store.open(database_url)
    try:
        assert await first.hold_log_lock("https://rekor.example")
        assert await first.hold_log_lock("https://rekor.example"), "the holder keeps it"
        assert not await second.hold_log_lock("https://rekor.example")
        assert await second.hold_log_lock("https://other.example"), "one lock per log"
        await first.close()  # the replica dies: its connection and lock go
        assert await second.hold_log_lock("https://rekor.example")
    finally:
        await second.close()


def test_head_revision_is_alembics_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert scripts.get_current_head() == HEAD_REVISION


async def test_upgrading_never_loads_alembic_in_its_process(database_url: str, tmp_path: Path) -> None:
    """Alembic and the migration scripts would stay resident in the daemon for good: an old database
    is migrated by a child process, a new one created from the models, one at head only recognised."""
    await _upgrade_to(database_url, "0001")
    new = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    script = (
        "import asyncio, sys\n"
        "from monitor.store.db import require_current_schema, upgrade\n"
        f"for url in ({database_url!r}, {new!r}):\n"
        "    asyncio.run(upgrade(url))\n"
        "    asyncio.run(upgrade(url))\n"
        "    asyncio.run(require_current_schema(url))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    loaded, _ = await process.communicate()
    assert process.returncode == 0
    assert loaded.decode().strip() == "[]"
    assert (await _revision(database_url), await _revision(new)) == (HEAD_REVISION, HEAD_REVISION)


async def test_connections_opening_a_new_sqlite_database_at_once_all_get_it_in_wal(tmp_path: Path) -> None:
    """Switching a new database to WAL takes its write lock: two connections switching it at once
    (the daemon's first and a `status` polling beside it) deadlock, and SQLite fails one of them at
    once ("database is locked"), whatever the busy timeout. Each opens it in its own thread (as in
    its own process); forty pairs: some collide."""

    async def journal_mode(url: str) -> str:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return str((await connection.execute(text("PRAGMA journal_mode"))).scalar())
        finally:
            await engine.dispose()

    def in_its_own_loop(url: str) -> str:
        return asyncio.run(journal_mode(url))

    with ThreadPoolExecutor(2) as threads:
        for number in range(40):
            url = f"sqlite+aiosqlite:///{tmp_path / f'new-{number}.db'}"
            assert list(threads.map(in_its_own_loop, [url, url])) == ["wal", "wal"]


async def test_a_failed_migration_says_why(database_url: str, tmp_path: Path) -> None:
    await upgrade(database_url)
    store = Store.open(database_url)
    try:
        async with store.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await store.close()
    why = "CommandError: Can't locate revision identified by '9999'"
    with pytest.raises(MigrationError, match=why):
        await upgrade(database_url)
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(f"database: {database_url}\nlogs: []\nct_logs: []\n")
    for command_line in (["db", "upgrade"], ["run", "--once"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", *command_line, "--config", str(config), stderr=asyncio.subprocess.PIPE
        )
        _, said = await process.communicate()
        assert process.returncode == 1
        assert said.decode().splitlines()[-1] == f"error: database: migrating it failed: {why}"


async def test_certificates_and_signings_are_linked_by_issuer_and_serial_together(database_url: str) -> None:
    """A certificate and a signing are the same only with both the issuing CA and the serial equal:
    a CA shared with one and a serial shared with another links neither, whichever is stored first."""
    await upgrade(database_url)
    async with Store.open(database_url) as store:
        log = await store.add_log(LogRow(url=LOG_URL, api="v1", origin="o - 1", tree_id="1", compact_range=b""))
        batches = _Batches(store, log.id)
        await batches.commit(certificates=[_certificate(log.id, "a", "1")])
        await batches.commit(signings=[_signing(log.id, 0, "a", "2"), _signing(log.id, 1, "b", "1")])
        await batches.commit(certificates=[_certificate(log.id, "b", "2")])
        assert await _links(store) == {("a", "1"): None, ("b", "2"): None}
        await batches.commit(signings=[_signing(log.id, 2, "a", "1")])
        await batches.commit(certificates=[_certificate(log.id, "b", "1")])
        assert await _links(store) == {("a", "1"): 2, ("b", "2"): None, ("b", "1"): 1}


@dataclass
class _Batches:
    store: Store
    log_id: int
    next_index: int = 0

    async def commit(self, *, signings: Sequence[NewSigning] = (), certificates: Sequence[CertificateRow] = ()) -> None:
        batch = Batch(self.log_id, self.next_index, self.next_index + 1, b"")
        batch.signings = [SignedAlert(signing, None) for signing in signings]
        batch.certificates = [IssuedCertificate(certificate, None) for certificate in certificates]
        await self.store.commit_batch(batch)
        self.next_index += 1


def _signing(log_id: int, index: int, issuer_ca: str, serial: str) -> NewSigning:
    signing = new_signing(log_id, index, Spec())
    signing.issuer_ca, signing.certificate_serial = issuer_ca * 64, serial
    return signing


def _certificate(log_id: int, issuer_ca: str, serial: str) -> CertificateRow:
    return CertificateRow(
        log_id=log_id,
        log_url="https://ct.example",
        ct_index=0,
        ct_timestamp=EPOCH,
        entry_type="x509",
        issuer_ca=issuer_ca * 64,
        serial=serial,
        issuer="https://oidc.codefresh.io",
        certificate_sha256=(issuer_ca + serial) * 32,
        chain_verified=True,
        verdict="expected",
    )


async def _links(store: Store) -> dict[tuple[str, str], int | None]:
    """{(CA letter, serial): the log index of the certificate's signing, or None}"""
    async with store.sessions() as session:
        rows = await session.execute(
            select(CertificateRow.issuer_ca, CertificateRow.serial, SigningRow.log_index).outerjoin(
                SigningRow, SigningRow.id == CertificateRow.signing_id
            )
        )
        return {(issuer_ca[0], serial): log_index for issuer_ca, serial, log_index in rows}


def test_a_new_signing_has_the_columns_of_the_signings_table_and_is_fitted_as_a_stored_one() -> None:
    assert {field.name for field in fields(NewSigning)} == {column.key for column in SigningRow.__table__.columns}
    long_name = "x" * (INDEXED_TEXT_BYTES + 10)
    values = new_signing(1, 0, Spec(account_name=long_name, pipeline_name="a\x00b"))
    stored = signing_row(1, 0, Spec(account_name=long_name, pipeline_name="a\x00b"))
    assert values.as_object() == stored.as_object()
    assert values.account_name is not None and values.account_name.endswith(TRUNCATED_MARK)
