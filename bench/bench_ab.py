"""Interleaved A/B: `rekorwatch run --once` catch-ups alternating between a base commit and the
working tree, against one prefilled simulator, on a fresh database each run.

    .venv/bin/python bench/bench_ab.py --base HEAD~3 --api tiles --entries 200000
    .venv/bin/python bench/bench_ab.py --base main --api v1 --entries 100000 --pairs 5
    .venv/bin/python bench/bench_ab.py --base HEAD~1 --api tiles --entries 200000 --latency-ms 50

On a machine whose speed drifts, runs made minutes apart differ by more than most changes; runs
that alternate against the same simulator process show a change of a few percent. The base is
checked out in a temporary git worktree and run by this venv's `rekorwatch` with PYTHONPATH on it
(its decode process inherits it): the code differs, the dependencies are the working tree's. Each
pair runs in both orders in turn. Printed per run: the whole run, the catch-up (its `caught_up`
line), CPU per process and peak RSS (bench_catchup.py); then the medians and the change. Both
trees' bytecode is compiled first (bench_catchup.compile_bytecode), as a deployment has it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

import bench_catchup as catchup

ROOT = catchup.ROOT


def worktree_of(commit: str, directory: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), commit], check=True)
    return directory


def remove_worktree(directory: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(directory)], check=False)


def one_run(
    directory: Path, url: str, args: argparse.Namespace, simulator: int, code: Path | None, number: int
) -> catchup.DaemonRun:
    """One `run --once` of `code` (None: the working tree) on a fresh database."""
    database = catchup.fresh_database(directory, args.postgres, number)
    try:
        config = catchup.write_config(directory, url, database, args.api, args.concurrency)
        return catchup.run_daemon(config, database, simulator, python_path=code)
    finally:
        catchup.drop_database(database)


def describe(name: str, run: catchup.DaemonRun) -> str:
    cpu = run.memory.cpu_seconds
    per_process = ", ".join(f"{seconds:.2f}" for seconds in cpu.values())
    catch_up = f"{run.catch_up_seconds:.2f}" if run.catch_up_seconds is not None else "?"
    return (
        f"  {name}: whole {run.seconds:.2f}s  catch-up {catch_up}s  CPU {run.cpu_seconds:.2f}s ({per_process})  "
        f"peak RSS {run.memory.tree_peak_mib:.0f} MiB  exit {run.exit_code}"
    )


def summary(what: str, base: list[float], work: list[float]) -> str:
    before, after = statistics.median(base), statistics.median(work)
    return f"{what}: base {before:.2f}s, work {after:.2f}s median ({after / before - 1:+.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--api", choices=["v1", "tiles"], default="tiles")
    parser.add_argument("--entries", type=int, default=200000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rekorwatch-ab-") as tmp:
        directory = Path(tmp)
        base_code = worktree_of(args.base, directory / "base")
        for code in (base_code, ROOT):
            catchup.compile_bytecode(code)
        simulator, url = catchup.start_simulator(directory, args.entries, args.api, args.latency_ms)
        runs: dict[str, list[catchup.DaemonRun]] = {"base": [], "work": []}
        try:
            for pair in range(args.pairs):
                order = ["base", "work"] if pair % 2 == 0 else ["work", "base"]
                for name in order:
                    code = base_code if name == "base" else None
                    run = one_run(directory, url, args, simulator.pid, code, len(runs["base"]) + len(runs["work"]))
                    runs[name].append(run)
                    print(describe(name, run), flush=True)
        finally:
            simulator.terminate()
            simulator.wait()
            remove_worktree(base_code)
    print(summary("whole run", [r.seconds for r in runs["base"]], [r.seconds for r in runs["work"]]))
    catch_ups = {name: [r.catch_up_seconds for r in done if r.catch_up_seconds] for name, done in runs.items()}
    if catch_ups["base"] and catch_ups["work"]:
        print(summary("catch-up", catch_ups["base"], catch_ups["work"]))


if __name__ == "__main__":
    main()
