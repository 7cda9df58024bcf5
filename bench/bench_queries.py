"""Query benchmark on PostgreSQL: the API's pages and a full CSV export over 1,000,000 signings.

A fresh database on the server of $REKORWATCH_TEST_PG_URL (default the local one) is created,
migrated to head, filled by COPY with N signings spread over A Codefresh accounts (every row unique,
as large as a real one) plus one account that stopped signing long ago (its ~25,000 signings are
all among the oldest 5%), and dropped at the end. Then, over the real aiohttp app:

- `GET /api/v1/signings?account=<name>&limit=100`: p50/p99 of first pages (every account in turn),
  of the pages that follow (cursor after cursor, as a client pages), of deep pages (a cursor near
  the account's oldest rows), and of the old account's pages;
- `rekorwatch history --format csv` of every row, as a user exports it: rows/s and peak RSS of that
  process.

The table is analysed first (as autovacuum would have done on a real database); the pages run on
the migrations' `(column, id)` indexes (migration 0008, which this benchmark led to).

    .venv/bin/python bench/bench_queries.py [--signings 1000000] [--accounts 50]

--database URL reuses a database filled by an earlier run (--keep keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
from proc import high_water_kib
from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitor.api import ApiContext, create_app
from monitor.api_params import encode_cursor
from monitor.metrics import Metrics
from monitor.store.db import upgrade
from monitor.store.repository import Store

PG_SERVER = os.environ.get("REKORWATCH_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
LOG_URL = "https://rekor.sigstore.dev"
ISSUER = "https://oidc.codefresh.io"
COPY_CHUNK = 50_000
PAGE = 100
OLD_ACCOUNT = ("0ld0ld0ld0ld0ld0ld0ld0ld", "retired-team")
OLD_SHARE = 0.05
OLD_ACCOUNT_VISITS = 25
"""First pages of the old account, each followed by three more: 100 pages, so that their p99 is not
just the slowest of a few."""

COLUMNS = (
    "log_id",
    "log_url",
    "log_index",
    "entry_uuid",
    "integrated_time",
    "signed_at",
    "kind",
    "issuer",
    "identity",
    "provider",
    "account_id",
    "account_name",
    "pipeline_id",
    "pipeline_name",
    "run_url",
    "source_repository",
    "source_ref",
    "artifact_digest",
    "certificate_sha256",
    "not_before",
    "chain_verified",
    "verdict",
    "extensions",
)
VERDICT_MIX = ["expected"] * 90 + ["renamed"] * 4 + ["unexpected_pipeline"] * 3 + ["impersonation", "untrusted"] * 1


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin(sql: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(PG_SERVER))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def accounts(count: int) -> list[tuple[str, str]]:
    return [(hashlib.sha256(f"account {n}".encode()).hexdigest()[:24], f"team-{n:02d}") for n in range(count)]


def signing_rows(
    start: int, count: int, total: int, teams: list[tuple[str, str]], rng: random.Random
) -> Iterator[tuple]:
    """Realistic Codefresh signings: ~1 KB each, every certificate and digest unique."""
    epoch = datetime(2025, 1, 1, tzinfo=UTC)
    for index in range(start, start + count):
        old = index < total * OLD_SHARE and rng.random() < 0.5
        account_id, account_name = OLD_ACCOUNT if old else rng.choice(teams)
        pipeline_id = hashlib.sha256(f"{account_id} {index % 40}".encode()).hexdigest()[:24]
        pipeline_name = f"project-{index % 7}/pipeline-{index % 40}"
        build = uuid.UUID(int=rng.getrandbits(128)).hex[:24]
        when = epoch + timedelta(seconds=index * 3)
        identity = f"https://g.codefresh.io/{account_name}/{pipeline_name}:{account_id}/{pipeline_id}"
        extensions = (
            f'{{"issuer_v2": "{ISSUER}", "build_signer_uri": "{identity}", "runner_environment": "cloud", '
            f'"source_repository_uri": "https://github.com/{account_name}/app", '
            f'"source_repository_ref": "refs/heads/main", "build_config_uri": '
            f'"https://g.codefresh.io/api/pipelines/{pipeline_id}", "run_invocation_uri": '
            f'"https://g.codefresh.io/build/{build}"}}'
        )
        yield (
            1,
            LOG_URL,
            index,
            hashlib.sha256(f"entry {index}".encode()).hexdigest(),
            when,
            when,
            "hashedrekord",
            ISSUER,
            identity,
            "codefresh",
            account_id,
            account_name,
            pipeline_id,
            pipeline_name,
            f"https://g.codefresh.io/build/{build}",
            f"https://github.com/{account_name}/app",
            "refs/heads/main",
            "sha256:" + hashlib.sha256(f"artifact {index}".encode()).hexdigest(),
            hashlib.sha256(f"certificate {index}".encode()).hexdigest(),
            when - timedelta(seconds=2),
            True,
            rng.choice(VERDICT_MIX),
            extensions,
        )


async def fill(database: str, signings: int, teams: list[tuple[str, str]]) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database))
    rng = random.Random(7)
    try:
        await connection.execute(
            "INSERT INTO logs (url, api, origin, tree_id, shard_offset, tree_size, verified_size, next_index, "
            "compact_range, state, retired, updated_at) VALUES ($1, 'v1', 'rekor.sigstore.dev - 1', '1', 0, $2, $2, "
            "$2, '', 'ok', false, now())",
            LOG_URL,
            signings,
        )
        for start in range(0, signings, COPY_CHUNK):
            records = signing_rows(start, min(COPY_CHUNK, signings - start), signings, teams, rng)
            await connection.copy_records_to_table("signings", records=records, columns=COLUMNS)
            print(f"  {start + COPY_CHUNK:,} signings", end="\r", file=sys.stderr)
        await connection.execute("VACUUM ANALYZE signings")
    finally:
        await connection.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, samples: list[float]) -> None:
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    print(f"{name:<38} n={len(samples):>4}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {max(samples) * 1000:6.1f} ms")


async def timed_page(http: aiohttp.ClientSession, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    async with http.get(url) as response:
        body = await response.json()
        assert response.status == 200, body
    elapsed = time.perf_counter() - started
    assert len(body["items"]) == PAGE, url
    return elapsed, body


async def measure_api(database: str, teams: list[tuple[str, str]], pages_per_account: int) -> None:
    async with Store.open(database) as store:
        runner = aiohttp.web.AppRunner(create_app(ApiContext(store, Metrics(), poll_interval=10.0)), access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}/api/v1/signings?limit={PAGE}"
        first, later, deep, old = [], [], [], []
        try:
            async with aiohttp.ClientSession() as http:
                await timed_page(http, f"{base}&account={teams[0][1]}")  # warm the pool
                for _, name in teams:
                    elapsed, body = await timed_page(http, f"{base}&account={name}")
                    first.append(elapsed)
                    for _ in range(pages_per_account):
                        elapsed, body = await timed_page(http, f"{base}&account={name}&cursor={body['next_cursor']}")
                        later.append(elapsed)
                for account_id, name in teams:
                    oldest = await _oldest_ids(store, account_id)
                    elapsed, _ = await timed_page(http, f"{base}&account={name}&cursor={encode_cursor(oldest)}")
                    deep.append(elapsed)
                for _ in range(OLD_ACCOUNT_VISITS):
                    elapsed, body = await timed_page(http, f"{base}&account={OLD_ACCOUNT[1]}")
                    old.append(elapsed)
                    for _ in range(3):
                        elapsed, body = await timed_page(
                            http, f"{base}&account={OLD_ACCOUNT[1]}&cursor={body['next_cursor']}"
                        )
                        old.append(elapsed)
        finally:
            await runner.cleanup()
    report("GET signings?account first page", first)
    report("GET signings?account next pages", later)
    report("GET signings?account deep page", deep)
    report("GET signings?account=<old account>", old)


async def _oldest_ids(store: Store, account_id: str) -> int:
    """An id below which exactly one page of the account's oldest signings remains."""
    async with store.engine.connect() as connection:
        query = "SELECT id FROM signings WHERE account_id = :a ORDER BY id LIMIT 1 OFFSET :n"
        return int(await connection.scalar(text(query), {"a": account_id, "n": PAGE}))


def measure_export(database: str, signings: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rekorwatch-bench-") as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(f"database: {database}\n")
        command = [sys.executable, "-m", "monitor", "history", "--format", "csv", "-c", str(config)]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert process.stdout is not None
        lines, peak_kib = 0, 0
        while chunk := process.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            peak_kib = max(peak_kib, high_water_kib(process.pid))
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    assert status == 0, f"history exited with {status}"
    assert lines == signings + 1, f"{lines - 1} rows exported of {signings}"
    print(f"history --format csv: {signings:,} rows in {elapsed:.1f}s = {signings / elapsed:,.0f} rows/s")
    # VmHWM, sampled while it writes (bench/proc.py says why not wait4's ru_maxrss)
    print(f"  peak RSS {peak_kib / 1024:.0f} MiB, CPU {usage.ru_utime + usage.ru_stime:.1f}s")


async def prepare(args: argparse.Namespace, teams: list[tuple[str, str]]) -> tuple[str, bool]:
    if args.database:
        return args.database, False
    name = f"rekorwatch_bench_queries_{os.getpid()}"
    await admin(f'CREATE DATABASE "{name}"')
    database = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    await upgrade(database)
    started = time.perf_counter()
    await fill(database, args.signings, teams)
    print(f"filled {args.signings:,} signings in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return database, True


async def analyse(database: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        await connection.execute("ANALYZE signings")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signings", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--pages", type=int, default=10, help="pages followed per account")
    parser.add_argument("--database", help="reuse this filled database instead of a fresh one")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()
    # As the daemon after its imports (cli._daemon): a full collection walking every module's objects
    # took 50-70 ms here, and showed as the slowest pages.
    gc.freeze()
    teams = accounts(args.accounts)
    database, created = asyncio.run(prepare(args, teams))
    try:
        print(f"PostgreSQL, {args.signings:,} signings across {args.accounts} accounts and one old account")
        asyncio.run(analyse(database))
        asyncio.run(measure_api(database, teams, args.pages))
        measure_export(database, args.signings)
    finally:
        if created and not args.keep:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{make_url(database).database}" WITH (FORCE)'))
        elif created:
            print(f"kept {database}", file=sys.stderr)


if __name__ == "__main__":
    main()
