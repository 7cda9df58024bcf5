"""Catch-up benchmark: `rekorwatch run --once` from index 0 against a prefilled simulator, and its
ratio to a bare client (`--floor`) reading the same log from the same simulator process.

The simulator runs in its own process (as a real log would be elsewhere), prefilled with N entries
as large as real ones, each with its own certificate, 1% of them Codefresh signings of the watched
account. The daemon runs as a subprocess; its peak RSS is sampled from /proc over its whole process
tree (the daemon, its decode worker and any other child) and printed with the daemon's alone, as
is each process's CPU time (which one the catch-up keeps busy).

    .venv/bin/python bench/bench_catchup.py --entries 200000 --api tiles --floor
    .venv/bin/python bench/bench_catchup.py --entries 100000 --api v1 --floor
    .venv/bin/python bench/bench_catchup.py --entries 200000 --api tiles --floor --latency-ms 50
    .venv/bin/python bench/bench_catchup.py --entries 20000 --api v1 --floor --latency-ms 50
    .venv/bin/python bench/bench_catchup.py --entries 100000 --api v1 --floor --postgres

--latency-ms N: the simulator delays every answer of the log's API by N ms (a log across a WAN).
--floor: before each rekorwatch run, bench/floor_client.py (fetch with 16 requests in flight, leaf
hash, JSON, base64, a byte search for the issuer, X.509 only on a hit; one process) reads the same
entries twice: with orjson (`fast`) and with the json module (`stdlib`, like the bare client issue
9 measured). Two ratios to each: the whole run (process start to exit, both sides) and the catch-up
alone (the floor's first request to its last entry; rekorwatch's `caught_up` log line, first chunk
to last commit: no start-up, migrations or shutdown).
--repeat K: K rounds (floors, then rekorwatch on a fresh database), and the median ratios.
--concurrency N: the log's `concurrency` in rekorwatch's config. Default 16: as many requests in
flight as the bare client keeps, so that both ask the log alike (the daemon's own default is 8, kind
to public logs; across a WAN it halves what either client reads).
--postgres: a fresh database per round on the server of $REKORWATCH_TEST_PG_URL (default the local
one), dropped afterwards; the default is a fresh SQLite file per round.

Both clients share a 2-core machine with the simulator: the simulator's CPU time is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import floor_client
from proc import cpu_seconds_of, memory_kib, process_tree

BIN = Path(sys.executable).with_name("rekorwatch")
FLOOR = Path(__file__).with_name("floor_client.py")
FLOOR_JSON = ("fast", "stdlib")
WATCHED_ISSUER = "https://oidc.codefresh.io"
WATCH = f"""watch:
  issuers: [{WATCHED_ISSUER}]
  codefresh:
    - account_id: 628a80b693a15c0f9c13ab75
      account_name: test-codefresh
      pipelines: [{{id: 65e6d5551e47e5bc243ca93f}}]
"""
SAMPLE_SECONDS = 0.05
PG_SERVER = os.environ.get("REKORWATCH_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


ROOT = Path(__file__).resolve().parent.parent


def compile_bytecode(root: Path) -> None:
    """Compile the measured code's modules, as `pip install` of a wheel (the Dockerfile) does. An
    editable install never has them on a machine that sets PYTHONDONTWRITEBYTECODE (this one does):
    every process, the daemon, its decode process and the bare client alike, would then compile
    rekorwatch's modules at each start, about 0.2 s of the daemon's, which no deployment pays."""
    compileall.compile_dir(root / "monitor", quiet=1)


# -- the simulator ----------------------------------------------------------------------------------


def start_simulator(directory: Path, entries: int, api: str, latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    command = [str(BIN), "simulate", "--listen", "127.0.0.1:0", "--dir", str(directory), "--api", api]
    command += ["--prefill", str(entries), "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"  simulator: {line.rstrip()}", file=sys.stderr)
        match = re.search(r"(http://\S+)", line)
        if match and "simulator at" in line:
            threading.Thread(target=drain, args=(process.stdout,), daemon=True).start()
            return process, match.group(1)
    raise SystemExit("the simulator did not start")


def drain(stream: object) -> None:
    """Keep reading the simulator's output, so that it never blocks on a full pipe."""
    for line in stream:  # type: ignore[attr-defined]
        print(f"  simulator: {line.rstrip()}", file=sys.stderr)


# -- databases --------------------------------------------------------------------------------------


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


def fresh_database(directory: Path, postgres: bool, round_number: int) -> str:
    if not postgres:
        return f"sqlite+aiosqlite:///{directory / f'bench-{round_number}.db'}"
    from sqlalchemy.engine import make_url

    name = f"rekorwatch_bench_{os.getpid()}_{round_number}"
    _admin(f'CREATE DATABASE "{name}"')
    return make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def drop_database(database: str) -> None:
    if database.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        _admin(f'DROP DATABASE IF EXISTS "{make_url(database).database}" WITH (FORCE)')


def signings_stored(database: str) -> int:
    query = "SELECT count(*) FROM signings"
    if database.startswith("sqlite"):
        with sqlite3.connect(database.split(":///", 1)[1]) as connection:
            return int(connection.execute(query).fetchone()[0])
    import asyncpg
    from sqlalchemy.engine import make_url

    async def count() -> int:
        connection = await asyncpg.connect(make_url(database).set(drivername="postgresql").render_as_string(False))
        try:
            return int(await connection.fetchval(query))
        finally:
            await connection.close()

    return asyncio.run(count())


def write_config(directory: Path, url: str, database: str, api: str, concurrency: int) -> Path:
    config = directory / "bench.yaml"
    in_flight = f", concurrency: {concurrency}"
    config.write_text(
        f"database: {database}\n"
        f"trust: {{root: {directory / 'trusted_root.json'}, refresh: false}}\n"
        f"logs: [{{url: {url}, api: {api}, start: 0{in_flight}}}]\n"
        f"ct_logs: []\npoll_interval: 10s\n{WATCH}"
    )
    return config


# -- memory of a process tree -----------------------------------------------------------------------


@dataclass
class TreeMemory:
    """Peaks over samples of a process tree: the sum of its RSS at one moment, and each process's
    own high-water mark (exact, kept by the kernel; their sum bounds the tree's true peak). Also
    each process's CPU time at its last sample (up to one sample short of its end): which process
    a catch-up keeps busy, the daemon or its decode process."""

    root: int
    tree_peak_kib: int = 0
    high_water_kib: dict[int, int] = field(default_factory=dict)
    cpu_seconds: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        total = 0
        for pid in process_tree(self.root):
            memory = memory_kib(pid)
            if memory is not None:
                total += memory[0]
                self.high_water_kib[pid] = max(self.high_water_kib.get(pid, 0), memory[1])
            with contextlib.suppress(OSError):
                self.cpu_seconds[pid] = cpu_seconds_of(pid)
        self.tree_peak_kib = max(self.tree_peak_kib, total)

    @property
    def root_peak_mib(self) -> float:
        return self.high_water_kib.get(self.root, 0) / 1024

    @property
    def tree_peak_mib(self) -> float:
        return self.tree_peak_kib / 1024

    @property
    def high_water_sum_mib(self) -> float:
        return sum(self.high_water_kib.values()) / 1024


# -- one round --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonRun:
    seconds: float
    catch_up_seconds: float | None  # from its `caught_up` log line
    exit_code: int
    cpu_seconds: float
    simulator_cpu_seconds: float
    memory: TreeMemory
    signings: int | None  # None when the daemon failed


@dataclass(frozen=True)
class FloorRun:
    json: str
    seconds: float  # first request to last entry
    process_seconds: float  # process start to exit
    rate: float
    watched: int
    cpu_seconds: float
    simulator_cpu_seconds: float
    peak_rss_mib: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor(url: str, api: str, entries: int, simulator: int, json_parser: str) -> FloorRun:
    simulator_cpu = cpu_seconds_of(simulator)
    command = [sys.executable, str(FLOOR), "--url", url, "--api", api, "--entries", str(entries)]
    command += ["--issuer", WATCHED_ISSUER, "--json", json_parser]
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    process_seconds = time.perf_counter() - started
    result = json.loads(output)
    return FloorRun(
        json_parser,
        result["seconds"],
        process_seconds,
        result["rate"],
        result["watched"],
        result["cpu_seconds"],
        cpu_seconds_of(simulator) - simulator_cpu,
        result["peak_rss_mib"],
    )


def run_daemon(config: Path, database: str, simulator: int, python_path: Path | None = None) -> DaemonRun:
    """`rekorwatch run --once`; with `python_path`, the rekorwatch found there (another checkout)."""
    env = {**os.environ, "REKORWATCH_LOG_LEVEL": "info"}
    if python_path is not None:
        env["PYTHONPATH"] = str(python_path)
    cpu, simulator_cpu = children_cpu(), cpu_seconds_of(simulator)
    output = config.with_name("daemon.log")
    with output.open("w") as sink:
        started = time.perf_counter()
        daemon = subprocess.Popen([str(BIN), "run", "--once", "-c", str(config)], env=env, stdout=sink, stderr=sink)
        memory = TreeMemory(daemon.pid)
        while daemon.poll() is None:
            memory.sample()
            time.sleep(SAMPLE_SECONDS)
        elapsed = time.perf_counter() - started
    log_lines = output.read_text()
    if daemon.returncode != 0:
        print(log_lines[-4000:], file=sys.stderr)
    return DaemonRun(
        elapsed,
        catch_up_seconds(log_lines),
        daemon.returncode,
        children_cpu() - cpu,
        cpu_seconds_of(simulator) - simulator_cpu,
        memory,
        signings_stored(database) if daemon.returncode == 0 else None,
    )


def catch_up_seconds(log_lines: str) -> float | None:
    for line in log_lines.splitlines():
        if '"caught_up"' in line:
            return float(json.loads(line)["seconds"])
    return None


def report_floor(entries: int, run: FloorRun) -> None:
    """Its rates over the whole run (process start to exit) and over the catch-up alone, as rekorwatch's."""
    print(
        f"  bare client ({run.json}): {run.seconds:.2f}s ({run.process_seconds:.2f}s with start-up)  "
        f"{entries / run.process_seconds:,.0f} entries/s ({run.rate:,.0f} in the catch-up)  "
        f"watched {run.watched}  CPU {run.cpu_seconds:.1f}s  "
        f"simulator CPU {run.simulator_cpu_seconds:.1f}s  RSS {run.peak_rss_mib:.0f} MiB"
    )


def report_daemon(entries: int, run: DaemonRun) -> None:
    memory = run.memory
    catch_up, catch_up_rate = "", ""
    if run.catch_up_seconds:
        catch_up = f" (catch-up {run.catch_up_seconds:.2f}s)"
        catch_up_rate = f" ({entries / run.catch_up_seconds:,.0f} in the catch-up)"
    print(
        f"  rekorwatch:  {run.seconds:.2f}s{catch_up}  {entries / run.seconds:,.0f} entries/s{catch_up_rate}  "
        f"signings {run.signings}  "
        f"CPU {run.cpu_seconds:.1f}s ({run.cpu_seconds / run.seconds:.0%} of one core)  "
        f"simulator CPU {run.simulator_cpu_seconds:.1f}s  exit {run.exit_code}"
    )
    print(
        f"  peak RSS: daemon + children {memory.tree_peak_mib:.0f} MiB (sampled sum; sum of each process's "
        f"high-water mark {memory.high_water_sum_mib:.0f} MiB, {len(memory.high_water_kib)} processes), "
        f"daemon alone {memory.root_peak_mib:.0f} MiB"
    )
    children = [seconds for pid, seconds in memory.cpu_seconds.items() if pid != memory.root]
    shown = ", ".join(f"{seconds:.1f}s" for seconds in children) or "none"
    print(f"  CPU by process: daemon {memory.cpu_seconds.get(memory.root, 0):.1f}s, children {shown}")


def report_ratios(floor: FloorRun, daemon: DaemonRun, ratios: dict[str, list[float]]) -> None:
    """rekorwatch's rate over the floor's, for the whole run and for the catch-up alone."""
    measured = {"whole run": floor.process_seconds / daemon.seconds}
    if daemon.catch_up_seconds:
        measured["catch-up"] = floor.seconds / daemon.catch_up_seconds
    for what, ratio in measured.items():
        ratios.setdefault(f"{what} / bare client ({floor.json})", []).append(ratio)
    shown = "  ".join(f"{what} {ratio:.2f}" for what, ratio in measured.items())
    print(f"  ratio rekorwatch / bare client ({floor.json}): {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--api", choices=["v1", "tiles"], default="v1")
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database, not SQLite")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every read by this many ms")
    parser.add_argument("--floor", action="store_true", help="also run the bare client; print the ratio")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (each: floor, then rekorwatch)")
    parser.add_argument(
        "--concurrency", type=int, default=floor_client.IN_FLIGHT, help="the log's `concurrency` in rekorwatch's config"
    )
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {}
    compile_bytecode(ROOT)
    with tempfile.TemporaryDirectory(prefix="rekorwatch-bench-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        simulator, url = start_simulator(directory, args.entries, args.api, args.latency_ms)
        print(f"simulator ready with {args.entries} entries in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        backend = "postgresql" if args.postgres else "sqlite"
        print(f"api={args.api} backend={backend} entries={args.entries} latency={args.latency_ms:g}ms")
        print(f"rekorwatch concurrency={args.concurrency}, bare client {floor_client.IN_FLIGHT} requests in flight")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        try:
            for round_number in range(args.repeat):
                parsers = FLOOR_JSON if args.floor else ()
                floors = [run_floor(url, args.api, args.entries, simulator.pid, parser) for parser in parsers]
                for floor in floors:
                    report_floor(args.entries, floor)
                database = fresh_database(directory, args.postgres, round_number)
                try:
                    config = write_config(directory, url, database, args.api, args.concurrency)
                    daemon = run_daemon(config, database, simulator.pid)
                finally:
                    drop_database(database)
                report_daemon(args.entries, daemon)
                for floor in floors:
                    report_ratios(floor, daemon, ratios)
        finally:
            simulator.terminate()
            simulator.wait()
    if args.repeat > 1:
        for name, values in ratios.items():
            print(f"median ratio over {len(values)} rounds, {name}: {statistics.median(values):.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
