"""Commit benchmark: the CPU a catch-up spends storing chunks, by how many chunks share a transaction.

`Store.commit_batch` of CHUNKS chunks, each with SIGNINGS signings (rows as large as real ones,
made as the recorder makes them), GROUP chunks to a transaction as the tail groups proven chunks
(`pipeline.COMMIT_CHUNKS`; 1: a transaction per chunk), on a fresh database: SQLite by default,
or PostgreSQL (the server of $REKORWATCH_TEST_PG_URL). Prints the process's CPU time (both the
event loop's and the SQLite driver thread's) per chunk and per signing, for making the rows and for
committing them; each round on a fresh database, alternating the groupings, medians at the end.

    .venv/bin/python bench/bench_commit.py                       # groups of 1 and 4, SQLite
    .venv/bin/python bench/bench_commit.py --groups 1 2 4 8 --postgres
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bench_catchup as catchup

from monitor.store.db import upgrade
from monitor.store.models import LogRow, NewSigning
from monitor.store.repository import Batch, SignedAlert, Store

EPOCH = datetime(2026, 1, 2, tzinfo=UTC)
CHUNK = 1024


@dataclass(frozen=True)
class CommitCost:
    make_ms: float  # per chunk
    commit_ms: float  # per chunk


def signing(log_id: int, index: int) -> NewSigning:
    unique = hashlib.sha256(index.to_bytes(8, "big")).hexdigest()
    return NewSigning(
        log_id=log_id,
        log_url="https://rekor.example.org",
        log_index=index,
        entry_uuid=unique,
        integrated_time=EPOCH,
        signed_at=EPOCH,
        kind="hashedrekord",
        issuer="https://oidc.codefresh.io",
        identity="https://g.codefresh.io/build/" + unique[:24],
        provider="codefresh",
        account_id="628a80b693a15c0f9c13ab75",
        account_name="acme",
        pipeline_id="65e6d5551e47e5bc243ca93f",
        pipeline_name="app/release",
        run_url="https://g.codefresh.io/build/" + unique[:24],
        source_repository="https://github.com/acme/app",
        source_ref="refs/heads/main",
        artifact_digest="sha256:" + unique,
        certificate_sha256=unique,
        issuer_ca=unique,
        certificate_serial=unique[:40],
        not_before=EPOCH,
        chain_verified=True,
        verdict="expected",
        extensions='{"build_config_uri": "https://g.codefresh.io/api/pipelines/65e6d5551e47e5bc243ca93f"}',
    )


async def measure(database: str, chunks: int, signings: int, group: int) -> CommitCost:
    await upgrade(database)
    async with Store.open(database) as store:
        log = LogRow(url="https://rekor.example.org", api="v1", origin="o - 1", tree_id="1", compact_range=b"")
        log_id = (await store.add_log(log)).id
        made = committed = 0.0
        for first_chunk in range(0, chunks, group):
            started = time.process_time()
            batch = Batch(log_id, first_chunk * CHUNK, 0, b"")
            for chunk in range(first_chunk, min(first_chunk + group, chunks)):
                first = chunk * CHUNK
                batch.signings += [SignedAlert(signing(log_id, first + n), None) for n in range(signings)]
                batch.next_index, batch.compact_range = first + CHUNK, b"\x00" * 64
            made += time.process_time() - started
            started = time.process_time()
            await store.commit_batch(batch)
            committed += time.process_time() - started
    return CommitCost(made / chunks * 1000, committed / chunks * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--signings", type=int, default=10, help="signings a chunk (1% of 1024: 10)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4], help="chunks a transaction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    costs: dict[int, list[CommitCost]] = {group: [] for group in args.groups}
    with tempfile.TemporaryDirectory(prefix="rekorwatch-commit-") as tmp:
        for round_number in range(args.rounds):
            for group in args.groups:
                database = catchup.fresh_database(Path(tmp), args.postgres, round_number * 100 + group)
                try:
                    cost = asyncio.run(measure(database, args.chunks, args.signings, group))
                finally:
                    catchup.drop_database(database)
                costs[group].append(cost)
                print(f"  group {group}: make {cost.make_ms:.2f} ms a chunk, commit {cost.commit_ms:.2f} ms a chunk")
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"{backend}, {args.chunks} chunks of {args.signings} signings, medians over {args.rounds} rounds:")
    for group, measured in costs.items():
        commit = statistics.median(cost.commit_ms for cost in measured)
        make = statistics.median(cost.make_ms for cost in measured)
        per_signing = f", {commit / args.signings * 1000:.0f} µs a signing" if args.signings else ""
        print(f"  {group} chunk(s) a transaction: commit {commit:.2f} ms a chunk{per_signing}; rows made {make:.2f} ms")


if __name__ == "__main__":
    main()
