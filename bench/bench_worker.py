"""How decoding crosses the process boundary: the lean decode process (monitor/decode_worker.py), on
the catch-up mix, chunk by chunk as the tail feeds it.

    .venv/bin/python bench/bench_worker.py [--entries 30000] [--api v1|tiles]

Each variant analyses the same entries in chunks of 1024 with three chunks in flight (the tail's
prefetch) and reports: the wall time, the CPU the parent (the daemon) spent handing chunks over and
taking answers back, per entry, the time until the first answer (start-up), and the workers' peak RSS.
Variants: one lean process (the daemon's); one that also returns the leaf hashes (so the daemon
need not hash); two lean processes (one per core).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from bench_decode import local_trust, mix_bodies, mix_policy
from proc import high_water_kib

from monitor.analysis import Judges
from monitor.decode_worker import DecodeProcess
from monitor.simulate.ca import LocalCA

CHUNK = 1024
IN_FLIGHT = 3


def setup(ca: LocalCA) -> Judges:
    return Judges.of(mix_policy(), local_trust(ca))


async def feed(bodies: Sequence[bytes], analyse: Callable[[Sequence[bytes]], Awaitable[object]]) -> float:
    """Analyse every chunk, IN_FLIGHT at a time; returns the seconds until the first answer."""
    started, first = time.perf_counter(), 0.0
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(chunk: Sequence[bytes]) -> None:
        nonlocal first
        async with slots:
            await analyse(chunk)
            first = first or time.perf_counter() - started

    await asyncio.gather(*(one(bodies[at : at + CHUNK]) for at in range(0, len(bodies), CHUNK)))
    return first


async def run_variant(name: str, bodies: Sequence[bytes], judges: Judges) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    count = 2 if name.startswith("two") else 1
    hashes = "leaf hashes" in name
    workers = [await DecodeProcess.start(judges) for _ in range(count)]
    turn = 0

    async def analyse(chunk: Sequence[bytes]) -> object:
        nonlocal turn
        turn += 1
        return await workers[turn % count].analyse(chunk, hash_from=turn * CHUNK if hashes else None)

    first = await feed(bodies, analyse)
    rss = [high_water_kib(worker.pid) / 1024 for worker in workers]
    for worker in workers:
        await worker.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"  {name:<42} {len(bodies) / wall:9,.0f} entries/s  parent CPU {cpu / len(bodies) * 1e6:5.1f} µs/entry  "
        f"first answer {first:5.2f}s  worker RSS {' + '.join(f'{value:.0f}' for value in rss)} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=30000)
    parser.add_argument("--api", choices=["v1", "tiles"], default="tiles")
    args = parser.parse_args()
    ca = LocalCA.generate()
    bodies = mix_bodies(ca, args.entries, rekor_v2=args.api == "tiles")
    judges = setup(ca)
    print(f"{len(bodies)} {args.api} entries, chunks of {CHUNK}, {IN_FLIGHT} in flight:")
    for name in (
        "one lean process",
        "one lean process, leaf hashes too",
        "two lean processes",
    ):
        asyncio.run(run_variant(name, bodies, judges))


if __name__ == "__main__":
    main()
