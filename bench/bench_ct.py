"""CT catch-up benchmark: read a whole simulated CT log from index 0 with the CT client, no daemon.

The simulator runs in its own process with N precertificates in its CT log (1% of the watched
Codefresh pipeline, the rest GitHub and email identities). This process then does what a CT follower
must, in one process and one event loop: verify the tree head with the key of the simulator's
trusted_root.json, fetch every entry (chunks of 1024, a few ahead), fold each leaf hash into a compact
range whose root must equal the signed one, decode every entry (precertificate checked against its
leaf), and for watched issuers parse the certificate, identify it and check its chain. Prints entries/s,
to compare with the daemon's CT follower.

--daemon: instead, the real daemon (`rekorwatch run --once`, SQLite) follows the CT log from 0 (its
Rekor log is empty): the whole pipeline, certificates stored, with the peak RSS of its process tree.

    .venv/bin/python bench/bench_ct.py --entries 200000 [--ct-api static] [--daemon]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from bench_catchup import WATCH, WATCHED_ISSUER, run_daemon

from monitor.identity import identify
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import certificate_issuer, parse_fulcio_certificate
from monitor.tlog.ct import CtLogEntry, decode_ct_entry
from monitor.tlog.ct_client import Rfc6962Client, StaticCtClient
from monitor.tlog.ct_source import Rfc6962Source, StaticCtSource
from monitor.tlog.merkle import CompactRange
from monitor.trust import load_trust_root

CHUNK = 1024
AHEAD = 3


@dataclass
class Tally:
    entries: int = 0
    watched: int = 0
    chained: int = 0
    fetch_wait: float = 0.0
    decode: float = 0.0


def start_simulator(directory: Path, entries: int, ct_api: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "monitor", "simulate", "--listen", "127.0.0.1:0", "--dir", str(directory)]
    command += ["--ct-api", ct_api, "--ct-prefill", str(entries)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"  simulator: {line.rstrip()}", file=sys.stderr)
        match = re.search(r"CT log at (http://\S+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit("the simulator did not start")


def analyse(entries: Sequence[CtLogEntry], chains: CtChainVerifier, tally: Tally) -> None:
    """What the follower does with each entry once it is read: decode it, judge the watched ones."""
    for raw in entries:
        entry = decode_ct_entry(raw)
        if certificate_issuer(entry.certificate) != WATCHED_ISSUER:
            continue
        certificate = parse_fulcio_certificate(entry.certificate)
        identify(certificate)
        tally.watched += 1
        tally.chained += chains.issuing_ca(entry, certificate) is not None


async def catch_up(url: str, trust_root: Path, ct_api: str) -> Tally:
    trust = load_trust_root(str(trust_root))
    (key,) = trust.ct_log_keys_for_url(url)
    chains, tally = CtChainVerifier(trust), Tally()
    async with aiohttp.ClientSession() as session:
        if ct_api == "static":
            source: Rfc6962Source | StaticCtSource = StaticCtSource(url, StaticCtClient(url, session), key)
        else:
            source = Rfc6962Source(url, Rfc6962Client(url, session), key)
        (head,) = await source.heads()
        checkpoint = source.open_checkpoint(head.signed_note)
        size, compact = checkpoint.size, CompactRange()
        bounds = iter([(start, min(start + CHUNK, size)) for start in range(0, size, CHUNK)])
        pending: deque[asyncio.Task[Sequence[CtLogEntry]]] = deque()

        def fetch_next() -> None:
            chunk = next(bounds, None)
            if chunk is not None:
                pending.append(asyncio.create_task(source.entries(chunk[0], chunk[1], head, size)))

        for _ in range(AHEAD):
            fetch_next()
        while pending:
            waited = time.perf_counter()
            entries = await pending.popleft()
            fetch_next()
            started = time.perf_counter()
            tally.fetch_wait += started - waited
            compact.extend(entry.leaf_hash for entry in entries)
            analyse(entries, chains, tally)
            tally.decode += time.perf_counter() - started
            tally.entries += len(entries)
        if compact.root() != checkpoint.root_hash:
            raise SystemExit("the entries do not hash to the signed root")
    return tally


def run_the_daemon(directory: Path, ct_url: str, ct_api: str, entries: int, simulator: int) -> None:
    """`rekorwatch run --once` following the CT log from 0, its Rekor log (the same simulator) empty."""
    parts = urlsplit(ct_url)
    database, config = directory / "rw.db", directory / "bench.yaml"
    config.write_text(
        f"database: sqlite+aiosqlite:///{database}\n"
        f"trust: {{root: {directory / 'trusted_root.json'}, refresh: false}}\n"
        f"logs: [{{url: {parts.scheme}://{parts.netloc}, api: v1, start: 0}}]\n"
        f"ct_logs: [{{url: {ct_url}, api: {ct_api}, start: 0}}]\n"
        f"poll_interval: 10s\n{WATCH}"
    )
    run = run_daemon(config, f"sqlite+aiosqlite:///{database}", simulator)
    with sqlite3.connect(database) as connection:
        (certificates,) = connection.execute("SELECT count(*) FROM certificates").fetchone()
    print(f"ct_api={ct_api} entries={entries} certificates stored={certificates} exit={run.exit_code}")
    print(f"daemon catch-up (start-up included): {run.seconds:.2f}s  {entries / run.seconds:,.0f} entries/s")
    memory = run.memory
    print(f"peak RSS: daemon + children {memory.tree_peak_mib:.0f} MiB, daemon alone {memory.root_peak_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--ct-api", choices=["rfc6962", "static"], default="rfc6962")
    parser.add_argument("--daemon", action="store_true", help="run the real daemon, not the bare CT client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rekorwatch-bench-ct-") as tmp:
        started = time.perf_counter()
        simulator, url = start_simulator(Path(tmp), args.entries, args.ct_api)
        ready = time.perf_counter() - started
        print(f"simulator ready with {args.entries} CT entries in {ready:.1f}s", file=sys.stderr)
        if args.daemon:
            try:
                run_the_daemon(Path(tmp), url, args.ct_api, args.entries, simulator.pid)
            finally:
                simulator.terminate()
                simulator.wait()
            return
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            tally = asyncio.run(catch_up(url, Path(tmp) / "trusted_root.json", args.ct_api))
            elapsed = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            simulator.terminate()
            simulator.wait()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(f"ct_api={args.ct_api} entries={tally.entries} watched={tally.watched} chained={tally.chained}")
    print(f"catch-up: {elapsed:.2f}s  {tally.entries / elapsed:,.0f} entries/s  (load {os.getloadavg()[0]:.1f})")
    print(f"client: CPU {cpu:.2f}s, decoding {tally.decode:.2f}s, waiting for entries {tally.fetch_wait:.2f}s")
    print(f"client peak RSS: {after.ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
