"""Catch-up benchmark: `rekorwatch run --once` from index 0 against a prefilled simulator.

The simulator runs in its own process (as a real log would be elsewhere), prefilled with N entries,
each with its own certificate (1% from the watched Codefresh issuer). The daemon runs as a
subprocess too, so its peak RSS is measured alone. Prints entries/s and peak RSS.

    .venv/bin/python bench/bench_catchup.py --entries 100000 [--postgres] [--api tiles]

--postgres uses a fresh database on the server of $REKORWATCH_TEST_PG_URL (default the local one),
dropped afterwards; the default is a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("rekorwatch")
WATCH = """watch:
  issuers: [https://oidc.codefresh.io]
  codefresh:
    - account_id: 628a80b693a15c0f9c13ab75
      account_name: test-codefresh
      pipelines: [{id: 65e6d5551e47e5bc243ca93f}]
"""


def start_simulator(directory: Path, entries: int, api: str) -> tuple[subprocess.Popen[str], str]:
    command = [str(BIN), "simulate", "--listen", "127.0.0.1:0", "--dir", str(directory), "--api", api]
    command += ["--prefill", str(entries)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"  simulator: {line.rstrip()}", file=sys.stderr)
        match = re.search(r"(http://\S+)", line)
        if match and "simulator at" in line:
            return process, match.group(1)
    raise SystemExit("the simulator did not start")


def write_config(directory: Path, url: str, database: str, api: str) -> Path:
    config = directory / "bench.yaml"
    config.write_text(
        f"database: {database}\n"
        f"trust: {{root: {directory / 'trusted_root.json'}, refresh: false}}\n"
        f"logs: [{{url: {url}, api: {api}, start: 0}}]\n"
        f"poll_interval: 10s\n{WATCH}"
    )
    return config


PG_SERVER = os.environ.get("REKORWATCH_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _admin(sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    async def run() -> None:
        connection = await asyncpg.connect(make_url(PG_SERVER).set(drivername="postgresql").render_as_string(False))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def fresh_postgres() -> str:
    from sqlalchemy.engine import make_url

    name = f"rekorwatch_bench_{os.getpid()}"
    _admin(f'CREATE DATABASE "{name}"')
    return make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def drop_postgres(database: str) -> None:
    from sqlalchemy.engine import make_url

    _admin(f'DROP DATABASE IF EXISTS "{make_url(database).database}" WITH (FORCE)')


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the decode worker), from /proc."""
    total_kib = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total_kib += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database, not SQLite")
    parser.add_argument("--api", choices=["v1", "tiles"], default="v1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rekorwatch-bench-") as tmp:
        directory = Path(tmp)
        database = fresh_postgres() if args.postgres else f"sqlite+aiosqlite:///{directory / 'bench.db'}"
        started = time.perf_counter()
        simulator, url = start_simulator(directory, args.entries, args.api)
        print(f"simulator ready with {args.entries} entries in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        try:
            config = write_config(directory, url, database, args.api)
            env = {**os.environ, "REKORWATCH_LOG_LEVEL": "warning"}
            started = time.perf_counter()
            daemon = subprocess.Popen([str(BIN), "run", "--once", "-c", str(config)], env=env)
            tree_peak_mib = 0.0
            while daemon.poll() is None:
                tree_peak_mib = max(tree_peak_mib, tree_rss_mib(daemon.pid))
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            peak_mib = usage.ru_maxrss / 1024
            cpu = usage.ru_utime + usage.ru_stime
        finally:
            simulator.terminate()
            simulator.wait()
            if args.postgres:
                drop_postgres(database)
    backend = database.split(":", 1)[0]
    print(f"api={args.api} backend={backend} entries={args.entries} exit={daemon.returncode}")
    print(f"catch-up: {elapsed:.2f}s  {args.entries / elapsed:,.0f} entries/s")
    print(f"peak RSS: largest process {peak_mib:.0f} MiB, daemon + its worker together {tree_peak_mib:.0f} MiB")
    print(f"daemon CPU: {cpu:.2f}s ({cpu / elapsed:.0%} of one core)")


if __name__ == "__main__":
    main()
