"""The bare client: the least any monitor must do per entry, in one Python process.

Per entry: fetch it (16 requests in flight), compute its RFC 6962 leaf hash, parse its JSON, base64-decode
its certificates, search each DER for the watched issuer's URL, and parse the certificate (X.509) only
when that search hits. Nothing is verified, stored or judged: rekorwatch's rate divided by this one
is the share of the wire and CPU it keeps for everything a real monitor adds (proofs, compact range,
chain checks, SQL, alerts).

`--json fast` parses with orjson, the fastest a Python client does it; `--json stdlib` with the json
module, like the bare client issue 9 measured (about 30 µs per entry on its machine).

    python bench/floor_client.py --url http://127.0.0.1:PORT --api v1|tiles --entries N [--json fast|stdlib]

Rekor v1: POST /api/v1/log/entries/retrieve with 10 logIndexes per request (Rekor's maximum).
tlog-tiles: entry bundles of 256. Prints one JSON object: entries, seconds, rate, hits, watched,
cpu_seconds, peak_rss_mib.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson
from cryptography import x509
from proc import high_water_kib

from monitor.tlog.entry_bundle import parse_entry_bundle
from monitor.tlog.tiles import TILE_WIDTH, entries_path

IN_FLIGHT = 16
V1_BATCH = 10
ISSUER_OIDS = (x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"))


@dataclass
class Tally:
    entries: int = 0
    hits: int = 0  # certificates whose DER contains the issuer's bytes
    watched: int = 0  # of those, certificates whose issuer extension is the watched issuer


@dataclass(frozen=True)
class FloorResult:
    entries: int
    seconds: float
    rate: float
    hits: int
    watched: int
    cpu_seconds: float
    peak_rss_mib: float


def pem_der(pem: bytes) -> bytes | None:
    """The DER of a PEM CERTIFICATE (None for a public key)."""
    if b"CERTIFICATE-----" not in pem[:40]:
        return None
    body = pem[pem.index(b"\n") : pem.rindex(b"-----END")]
    return binascii.a2b_base64(body)


def certificates(entry: dict[str, Any]) -> Iterator[bytes]:
    """The DER certificates of an entry of the kinds the simulator (and mostly Rekor) writes."""
    spec = entry["spec"]
    kind = entry["kind"]
    if "hashedRekordV002" in spec:
        verifier = spec["hashedRekordV002"]["signature"]["verifier"]
        if "x509Certificate" in verifier:
            yield binascii.a2b_base64(verifier["x509Certificate"]["rawBytes"])
        return
    if kind == "hashedrekord":
        pems = [spec["signature"]["publicKey"]["content"]]
    elif kind == "dsse":
        pems = [signature["verifier"] for signature in spec["signatures"]]
    elif kind == "intoto":
        pems = [signature["publicKey"] for signature in spec["content"]["envelope"]["signatures"]]
    else:
        pems = []
    for pem in pems:
        der = pem_der(binascii.a2b_base64(pem))
        if der is not None:
            yield der


def examine(body: bytes, issuer: bytes, tally: Tally, loads: Callable[[bytes], Any]) -> None:
    hashlib.sha256(b"\x00" + body).digest()
    tally.entries += 1
    for der in certificates(loads(body)):
        if issuer in der:
            tally.hits += 1
            extensions = x509.load_der_x509_certificate(der).extensions
            values = [ext.value.value for ext in extensions if ext.oid in ISSUER_OIDS]
            if any(issuer in value for value in values):
                tally.watched += 1


async def v1_bodies(session: aiohttp.ClientSession, url: str, first: int, end: int) -> list[bytes]:
    indexes = list(range(first, end))
    async with session.post(f"{url}/api/v1/log/entries/retrieve", json={"logIndexes": indexes}) as response:
        response.raise_for_status()
        answer = orjson.loads(await response.read())
    return [binascii.a2b_base64(entry["body"]) for item in answer for entry in item.values()]


async def tile_bodies(session: aiohttp.ClientSession, url: str, first: int, end: int) -> list[bytes]:
    width = end - first
    async with session.get(url + entries_path(first // TILE_WIDTH, width)) as response:
        response.raise_for_status()
        return parse_entry_bundle(await response.read(), width)


async def batches(session: aiohttp.ClientSession, url: str, api: str, entries: int) -> AsyncIterator[list[bytes]]:
    """Every entry of [0, entries), fetched by IN_FLIGHT workers; batches come in completion order."""
    fetch, step = (v1_bodies, V1_BATCH) if api == "v1" else (tile_bodies, TILE_WIDTH)
    jobs = iter([(first, min(first + step, entries)) for first in range(0, entries, step)])
    queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize=IN_FLIGHT)

    async def worker() -> None:
        for first, end in jobs:
            await queue.put(await fetch(session, url, first, end))
        await queue.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(IN_FLIGHT)]
    finished = 0
    try:
        while finished < IN_FLIGHT:
            batch = await queue.get()
            if batch is None:
                finished += 1
            else:
                yield batch
    finally:
        for task in workers:
            task.cancel()


async def run(url: str, api: str, entries: int, issuer: bytes, loads: Callable[[bytes], Any]) -> FloorResult:
    tally = Tally()
    cpu_before = time.process_time()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        async for batch in batches(session, url, api, entries):
            for body in batch:
                examine(body, issuer, tally, loads)
    seconds = time.perf_counter() - started
    if tally.entries != entries:
        raise SystemExit(f"read {tally.entries} entries, expected {entries}")
    return FloorResult(
        entries=tally.entries,
        seconds=round(seconds, 3),
        rate=round(tally.entries / seconds, 1),
        hits=tally.hits,
        watched=tally.watched,
        cpu_seconds=round(time.process_time() - cpu_before, 3),
        peak_rss_mib=round(high_water_kib(os.getpid()) / 1024, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api", choices=["v1", "tiles"], required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--issuer", default="https://oidc.codefresh.io")
    parser.add_argument("--json", choices=["fast", "stdlib"], default="fast", help="orjson, or the json module")
    args = parser.parse_args()
    loads = orjson.loads if args.json == "fast" else json.loads
    result = asyncio.run(run(args.url.rstrip("/"), args.api, args.entries, args.issuer.encode(), loads))
    sys.stdout.write(orjson.dumps(asdict(result)).decode() + "\n")


if __name__ == "__main__":
    main()
