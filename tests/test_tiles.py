"""The tlog-tiles client and the simulator's tiles mode, over real HTTP.

Proofs computed from the tiles are checked with the daemon's own verifiers against the roots of the
simulator's signed checkpoints, opened with the key of the trusted_root.json it writes. A hostile
peer (below) serves what no honest log serves.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from monitor.simulate.ca import LocalCA
from monitor.simulate.log import Shard, SimLog
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH, EntryFactory, populate
from monitor.simulate.tiles import TileAddress, parse_tile_address
from monitor.tlog.entry_bundle import BundleRefused, EntryBundle, TileFormatError, bundled_entries, parse_entry_bundle
from monitor.tlog.errors import LogProtocolError, LogUnavailableError
from monitor.tlog.http import RetryPolicy
from monitor.tlog.merkle import EMPTY_ROOT, ProofError, leaf_hash, node_hash, verify_consistency, verify_inclusion
from monitor.tlog.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint, verifier_for_key
from monitor.tlog.source import FetchedBundles, TileEntry
from monitor.tlog.tiles import (
    TilesClient,
    consistency_ranges,
    encode_index,
    entries_path,
    inclusion_ranges,
    parse_tile,
    tile_path,
    tile_width,
)
from tests.paths import SIGSTORE

FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)
HASH = bytes(range(32))


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


def frame(bodies: list[bytes]) -> bytes:
    return b"".join(len(body).to_bytes(2, "big") + body for body in bodies)


def small_bodies(first: int, count: int) -> list[bytes]:
    return [f"entry {number}".encode() for number in range(first, first + count)]


# Paths, widths and proof shapes


def test_indexes_are_written_in_three_digit_groups() -> None:
    assert [encode_index(n) for n in (0, 7, 999, 1000, 1234067, 10**9)] == [
        "000",
        "007",
        "999",
        "x001/000",
        "x001/x234/067",
        "x001/x000/x000/000",
    ]
    assert tile_path(0, 1234067) == "/tile/0/x001/x234/067"
    assert tile_path(1, 5, 8) == "/tile/1/005.p/8"
    assert entries_path(1234067, 255) == "/tile/entries/x001/x234/067.p/255"
    assert entries_path(3, 256) == "/tile/entries/003"
    for width in (0, 257):
        with pytest.raises(ValueError):
            tile_path(0, 0, width)


def test_the_simulator_reads_every_path_the_client_writes() -> None:
    rng = random.Random(4)
    for index in [0, 1, 999, 1000, 1234067, 2**64 - 1, *(rng.randrange(10**12) for _ in range(50))]:
        for width in (1, 17, 255, 256):
            written = entries_path(index, width).removeprefix("/tile/entries/")
            assert parse_tile_address(written) == TileAddress(index, width)
    for bad in ("x000/001", "1", "0001", "001/", "x001", "001.p/256", "001.p/0", "001.p/08", "001.p/", "y01/001"):
        assert parse_tile_address(bad) is None, bad


def test_partial_tiles_have_the_widths_of_the_spec_example() -> None:
    # c2sp.org/tlog-tiles: a tree of 70,000 has 273 full level-0 tiles and a partial one of 112,
    # one full level-1 tile and a partial one of 17, and a partial level-2 tile of 1.
    assert tile_width(0, 272, 70_000) == 256 and tile_width(0, 273, 70_000) == 112
    assert (tile_width(1, 0, 70_000), tile_width(1, 1, 70_000), tile_width(2, 0, 70_000)) == (256, 17, 1)
    assert (tile_width(0, 0, 256), tile_width(1, 0, 256)) == (256, 1)
    for level, index, size in ((0, 274, 70_000), (1, 2, 70_000), (3, 0, 70_000), (0, 0, 0), (1, 0, 255), (64, 0, 9)):
        with pytest.raises(ValueError):
            tile_width(level, index, size)


def test_proof_shapes_equal_the_proofs_the_simulator_builds() -> None:
    shard = Shard(tree_id=1)
    for body in small_bodies(0, 520):
        shard.append(body, integrated_time=0)
    for size in [*range(1, 70), 255, 256, 257, 511, 512, 513, 520]:
        for index in {0, size // 3, size - 1}:
            proof = [shard.range_hash(start, end) for start, end in inclusion_ranges(index, size)]
            assert proof == shard.inclusion_proof(index, size)
        for size1 in {1, size // 2 or 1, size - 1 or 1, size}:
            proof = [shard.range_hash(start, end) for start, end in consistency_ranges(size1, size)]
            assert proof == shard.consistency_proof(size1, size), (size1, size)
    assert consistency_ranges(0, 9) == []


# Framing


def test_entry_bundles_are_length_prefixed() -> None:
    bodies = [b"", b"x", b"\xff" * 300, b"y" * 65535]
    assert parse_entry_bundle(frame(bodies), 4) == bodies
    assert parse_entry_bundle(b"", 0) == []


@pytest.mark.parametrize(
    ("raw", "width", "problem"),
    [
        (frame([b"ab"]), 2, "ends after 1 of 2"),
        (frame([b"ab"])[:-1], 1, "runs past the end"),
        (b"\x00", 1, "ends after 0 of 1"),
        (frame([b"ab", b"cd"]), 1, "follow the last"),
        (b"\xff\xff" + b"a" * 100, 1, "runs past the end"),
    ],
)
def test_malformed_bundles_are_refused(raw: bytes, width: int, problem: str) -> None:
    with pytest.raises(TileFormatError, match=problem):
        parse_entry_bundle(raw, width)


def test_tiles_must_be_whole_hashes_of_the_right_count() -> None:
    assert parse_tile(HASH * 3, 3) == [HASH] * 3
    with pytest.raises(TileFormatError, match="whole number"):
        parse_tile(HASH * 3 + b"\x00", 3)
    with pytest.raises(TileFormatError, match="2 hashes, expected 3"):
        parse_tile(HASH * 2, 3)


# A hostile peer


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class HostilePeer:
    """Answers each path with its canned answers in turn (the last one repeats), 404 when it has none."""

    url: str = ""
    answers: dict[str, list[Canned]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def answer(self, path: str, *canned: Canned) -> None:
        self.answers[path] = list(canned)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        queue = self.answers.get(request.path) or [Canned(404)]
        canned = queue.pop(0) if len(queue) > 1 else queue[0]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(canned.delay)
            return web.Response(status=canned.status, body=canned.body, headers=canned.headers)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def peer() -> AsyncIterator[HostilePeer]:
    hostile = HostilePeer()
    app = web.Application()
    app.router.add_get("/{tail:.*}", hostile.handle)
    async with TestServer(app) as server:
        hostile.url = str(server.make_url(""))
        yield hostile


def peer_client(peer: HostilePeer, http: aiohttp.ClientSession, **options: Any) -> TilesClient:
    return TilesClient(peer.url, http, retry=FAST_RETRY, **options)


async def test_a_missing_partial_tile_falls_back_to_the_full_one(
    peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    full = [bytes([n]) * 32 for n in range(256)]
    peer.answer("/tile/0/x001/234", Canned(body=b"".join(full)))
    assert await peer_client(peer, http).get_tile(0, 1234, 1234 * 256 + 40) == full[:40]
    assert peer.seen == ["/tile/0/x001/234.p/40", "/tile/0/x001/234"]


async def test_a_partial_bundle_falls_back_and_gzip_is_undone(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    bodies = small_bodies(512, 256)
    peer.answer("/tile/entries/002", Canned(body=gzip.compress(frame(bodies)), headers={"Content-Encoding": "gzip"}))
    assert await peer_client(peer, http).get_entry_bundle(2, 512 + 7) == bodies[:7]
    assert peer.seen == ["/tile/entries/002.p/7", "/tile/entries/002"]


FETCHES: dict[str, Callable[[TilesClient], Awaitable[object]]] = {
    "level 0 of 5": lambda client: client.get_tile(0, 0, 5),
    "level 1 of 512": lambda client: client.get_tile(1, 0, 512),
    "entries of 5": lambda client: client.get_entries(0, 5, 5),
    "checkpoint": lambda client: client.get_checkpoint(),
}


@pytest.mark.parametrize(
    ("path", "canned", "fetch"),
    [
        pytest.param("/tile/0/000.p/5", Canned(body=HASH * 256), "level 0 of 5", id="partial tile of 256 hashes"),
        pytest.param("/tile/0/000", Canned(body=HASH * 5), "level 0 of 5", id="full tile of 5 hashes"),
        pytest.param("/tile/1/000.p/2", Canned(body=HASH * 2 + b"\x01"), "level 1 of 512", id="stray byte"),
        pytest.param("/tile/entries/000.p/5", Canned(body=frame(small_bodies(0, 4))), "entries of 5", id="short"),
        pytest.param("/tile/entries/000.p/5", Canned(body=frame(small_bodies(0, 6))), "entries of 5", id="long"),
        pytest.param("/tile/entries/000.p/5", Canned(body=frame(small_bodies(0, 5))[:-3]), "entries of 5", id="cut"),
        pytest.param("/tile/entries/000.p/5", Canned(400), "entries of 5", id="400"),
        pytest.param("/checkpoint", Canned(body=b"\xffnot utf-8"), "checkpoint", id="checkpoint not UTF-8"),
    ],
)
async def test_hostile_answers_are_protocol_errors(
    path: str, canned: Canned, fetch: str, peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    peer.answer(path, canned)
    with pytest.raises(LogProtocolError):
        await FETCHES[fetch](peer_client(peer, http))


async def test_absent_resources_are_protocol_errors(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    client = peer_client(peer, http)
    with pytest.raises(LogProtocolError, match="404"):
        await client.get_checkpoint()
    with pytest.raises(LogProtocolError, match="404"):
        await client.get_entries(0, 3, 3)
    assert peer.seen[-2:] == ["/tile/entries/000.p/3", "/tile/entries/000"]


async def test_bundles_are_fetched_with_bounded_concurrency(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    bodies = small_bodies(0, 256 * 12)
    for bundle in range(12):
        peer.answer(f"/tile/entries/{bundle:03d}", Canned(body=frame(bodies[bundle * 256 :][:256]), delay=0.02))
    client = peer_client(peer, http, concurrency=3)
    assert await client.get_entries(100, 3000, 3072) == bodies[100:3000]
    assert peer.max_in_flight == 3


async def test_one_failing_bundle_cancels_the_rest(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    for bundle in range(8):
        peer.answer(f"/tile/entries/{bundle:03d}", Canned(body=frame(small_bodies(0, 256)), delay=5))
    peer.answer("/tile/entries/000", Canned(body=b"\x00"))
    started = asyncio.get_running_loop().time()
    with pytest.raises(LogProtocolError):
        await peer_client(peer, http, concurrency=8).get_entries(0, 8 * 256, 8 * 256)
    assert asyncio.get_running_loop().time() - started < 2


async def test_5xx_and_429_bursts_are_ridden_out(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    bodies = small_bodies(0, 3)
    peer.answer(
        "/tile/entries/000.p/3",
        Canned(503),
        Canned(429, headers={"Retry-After": "0"}),
        Canned(500),
        Canned(body=frame(bodies)),
    )
    assert await peer_client(peer, http).get_entries(0, 3, 3) == bodies
    peer.answer("/checkpoint", Canned(503))
    with pytest.raises(LogUnavailableError):
        await peer_client(peer, http).get_checkpoint()
    assert peer.seen.count("/checkpoint") == FAST_RETRY.max_attempts


async def test_every_attempt_is_observed(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    observed: list[str] = []
    client = TilesClient(
        peer.url, http, retry=FAST_RETRY, observe=lambda endpoint, _seconds, _failure: observed.append(endpoint)
    )
    peer.answer("/checkpoint", Canned(500), Canned(body=b"note\n"))
    peer.answer("/tile/0/000.p/1", Canned(body=HASH))
    peer.answer("/tile/entries/000.p/1", Canned(body=frame([b"a"])))
    await client.get_checkpoint()
    await client.get_tile(0, 0, 1)
    await client.get_entries(0, 1, 1)
    assert observed == ["checkpoint", "checkpoint", "tile", "entries"]


async def test_hash_tiles_are_read_once_a_cycle(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    """Each chunk's prefix proof needs the same tiles at the right edge of the tree: they are read
    once (also by readers asking together), until the next checkpoint read starts a new cycle."""
    tile = [bytes([n]) * 32 for n in range(5)]
    peer.answer("/tile/0/000.p/5", Canned(body=b"".join(tile), delay=0.05))
    peer.answer("/checkpoint", Canned(body=b"note\n"))
    client = peer_client(peer, http)
    assert await asyncio.gather(*(client.get_tile(0, 0, 5) for _ in range(3))) == [tile] * 3
    assert await client.get_tile(0, 0, 5) == tile
    assert await client.consistency_proof(3, 5) == await client.consistency_proof(3, 5)
    assert peer.seen == ["/tile/0/000.p/5"]
    await client.get_checkpoint()
    assert await client.get_tile(0, 0, 5) == tile
    assert peer.seen == ["/tile/0/000.p/5", "/checkpoint", "/tile/0/000.p/5"]


async def test_node_hashes_are_kept_per_tree_size(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    """A node's hash computed from the tiles of one tree is not reused for a proof from another's."""
    tile = [bytes([n]) * 32 for n in range(6)]
    peer.answer("/tile/0/000.p/4", Canned(body=b"".join(tile[:4])))
    peer.answer("/tile/0/000.p/6", Canned(body=b"".join(tile)))
    client = peer_client(peer, http)
    pair = node_hash(tile[0], tile[1])
    assert await client.hashes_at(1, [0], 4) == [pair]
    assert await client.hashes_at(1, [0], 6) == [pair]
    assert await client.hashes_at(1, [0], 4) == [pair]
    assert peer.seen == ["/tile/0/000.p/4", "/tile/0/000.p/6"]


async def test_a_node_hash_computed_across_a_new_cycle_is_not_kept(
    peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    """Its tiles were read in the cycle that ended: the new one reads and computes them again."""
    tile = [bytes([n]) * 32 for n in range(4)]
    peer.answer("/tile/0/000.p/4", Canned(body=b"".join(tile), delay=0.05))
    peer.answer("/checkpoint", Canned(body=b"note\n"))
    client = peer_client(peer, http)
    hashing = asyncio.create_task(client.hashes_at(2, [0], 4))
    await asyncio.sleep(0.01)
    await client.get_checkpoint()
    root = node_hash(node_hash(tile[0], tile[1]), node_hash(tile[2], tile[3]))
    assert await hashing == [root], "the caller still gets it"
    assert await client.hashes_at(2, [0], 4) == [root]
    assert peer.seen == ["/tile/0/000.p/4", "/checkpoint", "/tile/0/000.p/4"], "computed again from a new read"


async def test_a_failed_tile_read_is_not_kept(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.answer("/tile/0/000.p/5", Canned(body=HASH * 4), Canned(body=HASH * 5))
    client = peer_client(peer, http)
    with pytest.raises(LogProtocolError):
        await client.get_tile(0, 0, 5)
    assert await client.get_tile(0, 0, 5) == [HASH] * 5
    assert peer.seen == ["/tile/0/000.p/5"] * 2


async def test_a_reader_that_gives_up_leaves_the_tile_to_the_others(
    peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    peer.answer("/tile/0/000.p/5", Canned(body=HASH * 5, delay=0.1))
    client = peer_client(peer, http)
    quitter = asyncio.create_task(client.get_tile(0, 0, 5))
    stayer = asyncio.create_task(client.get_tile(0, 0, 5))
    await asyncio.sleep(0.02)
    quitter.cancel()
    assert await stayer == [HASH] * 5
    assert quitter.cancelled() and peer.seen == ["/tile/0/000.p/5"]


async def test_arguments_outside_the_tree_are_refused(http: aiohttp.ClientSession) -> None:
    client = TilesClient("http://127.0.0.1:9", http)
    calls = [
        client.get_entries(5, 3, 10),
        client.get_entries(0, 11, 10),
        client.get_tile(0, 2, 512),
        client.get_entry_bundle(1, 256),
        client.inclusion_proof(10, 10),
        client.consistency_proof(5, 3),
        client.hashes_at(1, [3], 7),
        client.compact_range(8, 7),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            await call
    with pytest.raises(ValueError):
        TilesClient("http://127.0.0.1:9", http, concurrency=0)


# Against the simulator in tiles mode


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path, api="tiles")
    yield running
    await running.stop()


@pytest.fixture
def client(sim: RunningSimulator, http: aiohttp.ClientSession) -> TilesClient:
    return TilesClient(sim.url, http, retry=FAST_RETRY)


def log_name(sim: RunningSimulator) -> str:
    return sim.url.removeprefix("http://")


def trusted_verifier(sim: RunningSimulator) -> NoteVerifier:
    """The log key as the daemon finds it: in the written trusted_root.json, named after the URL."""
    (tlog,) = json.loads(sim.trust_files.trusted_root.read_text())["tlogs"]
    assert tlog["baseUrl"] == sim.url
    return verifier_for_key(log_name(sim), b64d(tlog["publicKey"]["rawBytes"]))


async def verified_checkpoint(client: TilesClient, sim: RunningSimulator) -> Checkpoint:
    return open_checkpoint(await client.get_checkpoint(), [trusted_verifier(sim)], origin=log_name(sim))


def grow(sim: RunningSimulator, size: int) -> None:
    sim.log.append_many(small_bodies(sim.log.size, size - sim.log.size))


async def test_the_simulator_speaks_only_v1_and_tiles(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown API"):
        await start_simulator(directory=tmp_path, api="v2")


async def test_trust_files_describe_an_ed25519_tiles_log(sim: RunningSimulator) -> None:
    (tlog,) = json.loads(sim.trust_files.trusted_root.read_text())["tlogs"]
    assert tlog["publicKey"]["keyDetails"] == "PKIX_ED25519"
    public_key = serialization.load_der_public_key(b64d(tlog["publicKey"]["rawBytes"]))
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = b64d(tlog["logId"]["keyId"])
    assert key_id == hashlib.sha256(log_name(sim).encode() + b"\n\x01" + raw).digest()
    assert trusted_verifier(sim).key_id == key_id[:4]
    (service,) = json.loads(sim.trust_files.signing_config.read_text())["rekorTlogUrls"]
    assert (service["url"], service["majorApiVersion"]) == (sim.url, 2)


async def test_the_checkpoint_is_a_v2_note(sim: RunningSimulator, client: TilesClient) -> None:
    empty = await verified_checkpoint(client, sim)
    assert (empty.origin, empty.size, empty.root_hash, empty.extensions) == (log_name(sim), 0, EMPTY_ROOT, ())
    grow(sim, 300)
    checkpoint = await verified_checkpoint(client, sim)
    assert (checkpoint.size, checkpoint.root_hash) == (300, sim.log.active.root())
    assert checkpoint.note.startswith(f"{log_name(sim)}\n300\n")
    assert await client.get_entries(0, 0, 0) == []


async def test_the_simulator_serves_only_what_the_tree_holds(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    grow(sim, 300)
    served = {
        "/tile/0/000": 256 * 32,
        "/tile/0/001.p/44": 44 * 32,
        "/tile/0/001.p/3": 3 * 32,
        "/tile/1/000.p/1": 32,
        "/tile/entries/001.p/44": len(frame(sim.log.active.bodies[256:300])),
    }
    missing = [
        "/tile/0/001",
        "/tile/0/001.p/45",
        "/tile/1/000",
        "/tile/2/000.p/1",
        "/tile/entries/001.p/45",
        "/tile/0/1",
        "/tile/0/x000/000",
        "/tile/01/000",
        "/tile/64/000",
        "/tile/0/000.p/256",
        "/api/v1/log",
    ]
    for path, length in served.items():
        async with http.get(sim.url + path) as response:
            assert (response.status, len(await response.read())) == (200, length), path
            assert response.content_type == "application/octet-stream"
    for path in missing:
        async with http.get(sim.url + path) as response:
            assert response.status == 404, path


async def test_entries_across_bundles_and_partial_edges(sim: RunningSimulator, client: TilesClient) -> None:
    grow(sim, 700)
    bodies = sim.log.active.bodies
    rng = random.Random(1)
    sizes = [*range(0, 601, 23), 255, 256, 257, 511, 512, 513, 700]
    for size in sizes:
        spans = [(0, size), (size // 3, size), (size, size)]
        spans += [sorted((rng.randrange(size + 1), rng.randrange(size + 1))) for _ in range(3)]
        for first, end in spans:
            assert await client.get_entries(first, end, size) == bodies[first:end], (first, end, size)


async def test_a_deleted_partial_tile_is_read_from_the_full_one(sim: RunningSimulator, client: TilesClient) -> None:
    grow(sim, 300)
    old = await verified_checkpoint(client, sim)
    grow(sim, 600)
    sim.simulator.tiled.drop_partials(2)
    assert await client.get_tile(0, 1, old.size) == sim.log.active.levels[0][256:300]
    assert await client.get_entry_bundle(1, old.size) == sim.log.active.bodies[256:300]
    assert sim.simulator.tiled.partials_to_drop == 0
    sim.simulator.tiled.drop_partials(1)
    with pytest.raises(LogProtocolError):
        await client.get_tile(0, 2, 600)  # no full tile 2 yet to fall back to


async def test_tiles_hold_the_tree_levels(sim: RunningSimulator, client: TilesClient) -> None:
    grow(sim, 70_000)
    levels = sim.log.active.levels
    assert await client.get_tile(1, 1, 70_000) == levels[8][256:273]
    assert await client.get_tile(2, 0, 70_000) == levels[16][:1]
    for level in (0, 3, 8, 9, 16):
        indexes = [0, len(levels[level]) // 2, len(levels[level]) - 1]
        assert await client.hashes_at(level, indexes, 70_000) == [levels[level][index] for index in indexes]
    compact = await client.compact_range(65_541, 70_000)
    assert compact.size == 65_541 and compact.root() == sim.log.active.root(65_541)


async def test_proofs_from_tiles_verify_against_signed_checkpoints(sim: RunningSimulator, client: TilesClient) -> None:
    sizes = [1, 2, 3, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513, 4096, 65_535, 65_536, 65_537, 65_541]
    checkpoints: dict[int, Checkpoint] = {}
    for size in sizes:
        grow(sim, size)
        checkpoints[size] = await verified_checkpoint(client, sim)
    rng = random.Random(6962)
    for size, checkpoint in checkpoints.items():
        indexes = {0, size - 1, size // 2, min(255, size - 1), min(256, size - 1), rng.randrange(size)}
        entries = await client.get_entries(0, size, size) if size <= 600 else None
        for index in indexes:
            body = entries[index] if entries is not None else (await client.get_entries(index, index + 1, size))[0]
            proof = await client.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(body), index, size, proof, checkpoint.root_hash)
    for size1 in sizes:
        for size2 in (size for size in sizes if size >= size1):
            proof = await client.consistency_proof(size1, size2)
            old, new = checkpoints[size1], checkpoints[size2]
            verify_consistency(size1, size2, proof, old.root_hash, new.root_hash)


async def test_a_tampered_tile_fails_verification(
    sim: RunningSimulator, client: TilesClient, http: aiohttp.ClientSession
) -> None:
    grow(sim, 300)
    old = await verified_checkpoint(client, sim)
    grow(sim, 1000)
    new = await verified_checkpoint(client, sim)
    body_300 = (await client.get_entries(300, 301, new.size))[0]
    async with http.post(f"{sim.url}/sim/tamper_tile", json={"level": 0, "index": 1}) as response:
        assert response.status == 200
    await client.get_checkpoint()  # a new cycle: the tiles read in the last one are read again
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(body_300), 300, new.size, await client.inclusion_proof(300, new.size), new.root_hash)
    with pytest.raises(ProofError):
        verify_consistency(
            old.size, new.size, await client.consistency_proof(old.size, new.size), old.root_hash, new.root_hash
        )
    # Leaf 0's proof needs nothing of tile 0/1 (only a level-8 hash of tile 1/0): it still verifies.
    verify_inclusion(leaf_hash(b"entry 0"), 0, new.size, await client.inclusion_proof(0, new.size), new.root_hash)
    sim.simulator.tiled.tamper_tile(1, 0)
    await client.get_checkpoint()
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"entry 0"), 0, new.size, await client.inclusion_proof(0, new.size), new.root_hash)
    assert (await client.compact_range(new.size, new.size)).root() != new.root_hash
    sim.simulator.tiled.tamper_tile(0, 1, enabled=False)
    sim.simulator.tiled.tamper_tile(1, 0, enabled=False)
    await client.get_checkpoint()
    verify_inclusion(leaf_hash(body_300), 300, new.size, await client.inclusion_proof(300, new.size), new.root_hash)


async def test_bursts_of_429_and_5xx_are_ridden_out(sim: RunningSimulator, client: TilesClient) -> None:
    grow(sim, 1000)
    sim.faults.inject(count=4, status=429, retry_after=0)
    checkpoint = await verified_checkpoint(client, sim)
    sim.faults.inject(count=5, status=503)
    assert await client.get_entries(0, 1000, checkpoint.size) == sim.log.active.bodies
    sim.faults.inject(count=3, status=500)
    proof = await client.inclusion_proof(999, 1000)
    verify_inclusion(leaf_hash(b"entry 999"), 999, 1000, proof, checkpoint.root_hash)
    sim.faults.inject(count=100, status=500)
    with pytest.raises(LogUnavailableError):
        await client.get_checkpoint()


async def post(http: aiohttp.ClientSession, sim: RunningSimulator, path: str, payload: Any) -> tuple[int, Any]:
    async with http.post(f"{sim.url}/sim/{path}", json=payload) as response:
        return response.status, await response.json()


async def test_control_endpoints_in_tiles_mode(
    sim: RunningSimulator, client: TilesClient, http: aiohttp.ClientSession
) -> None:
    identity = {**FULCIO_TEST_CODEFRESH, "workflow_id": "65e6ebe0bfbfa1782876165e"}
    status, appended = await post(http, sim, "append", {"codefresh": [identity], "unwatched": 20})
    assert (status, appended["codefresh"], appended["unwatched"]) == (200, [0], list(range(1, 21)))
    status, forged = await post(http, sim, "forged", identity)
    assert (status, forged) == (200, {"logIndex": 21})
    before = await verified_checkpoint(client, sim)
    real, *unwatched, fake = [json.loads(body) for body in await client.get_entries(0, 22, before.size)]
    for entry in (real, *unwatched, fake):
        assert (entry["kind"], entry["apiVersion"]) == ("hashedrekord", "0.0.2")
    real_cert, fake_cert = (x509.load_der_x509_certificate(b64d(certificate_of(entry))) for entry in (real, fake))
    real_cert.verify_directly_issued_by(sim.ca.intermediate_cert)
    assert fake_cert.issuer != real_cert.issuer
    assert (await post(http, sim, "rotate", {}))[0] == 400
    for path, payload in (
        ("tamper_tile", {"level": 0}),
        ("tamper_tile", {"index": 1, "enabled": "no"}),
        ("drop_partials", {"count": -1}),
    ):
        assert (await post(http, sim, path, payload))[0] == 400, (path, payload)
    assert await post(http, sim, "drop_partials", {"count": 2}) == (200, {"remaining": 2})
    assert sim.simulator.tiled.partials_to_drop == 2
    assert await post(http, sim, "drop_partials", {"count": 0}) == (200, {"remaining": 0})

    assert (await post(http, sim, "fork", {"at": 5}))[0] == 200
    after = await verified_checkpoint(client, sim)
    assert after.size == before.size and after.root_hash != before.root_hash
    grow(sim, 30)
    later = await verified_checkpoint(client, sim)
    with pytest.raises(ProofError):
        verify_consistency(
            before.size,
            later.size,
            await client.consistency_proof(before.size, later.size),
            before.root_hash,
            later.root_hash,
        )
    assert (await post(http, sim, "wrong_key", {"enabled": True}))[0] == 200
    with pytest.raises(NoteError):
        await verified_checkpoint(client, sim)


def certificate_of(entry: dict[str, Any]) -> str:
    return entry["spec"]["hashedRekordV002"]["signature"]["verifier"]["x509Certificate"]["rawBytes"]


def test_v2_bodies_carry_real_signatures_over_their_digest() -> None:
    ca = LocalCA.generate()
    factory = EntryFactory(ca, random.Random(3), rekor_v2=True)
    verifiers = set()
    for body in [*factory.unwatched_many(60), factory.codefresh(**FULCIO_TEST_CODEFRESH)]:
        spec = json.loads(body)["spec"]["hashedRekordV002"]
        verifier = spec["signature"]["verifier"]
        assert verifier["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
        if "publicKey" in verifier:
            key = serialization.load_der_public_key(b64d(verifier["publicKey"]["rawBytes"]))
        else:
            key = x509.load_der_x509_certificate(b64d(verifier["x509Certificate"]["rawBytes"])).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        prehashed = ec.ECDSA(Prehashed(hashes.SHA256()))
        key.verify(b64d(spec["signature"]["content"]), b64d(spec["data"]["digest"]), prehashed)
        verifiers.update(verifier.keys() - {"keyDetails"})
    assert verifiers == {"publicKey", "x509Certificate"}


def test_populate_makes_v2_bodies_for_a_tiles_log() -> None:
    log = SimLog.tiles_log("sim.test")
    populate(log, LocalCA.generate(), 30, seed=2, rekor_v2=True)
    assert {json.loads(body)["apiVersion"] for body in log.active.bodies} == {"0.0.2"}
    assert log.origin(log.active) == "sim.test"
    with pytest.raises(ValueError):
        log.rotate_shard()


def test_the_staging_v2_checkpoint_verifies_with_the_staging_trust_root() -> None:
    bundle = json.loads((SIGSTORE / "staging-rekor-v2.txt.sigstore.json").read_text())
    (entry,) = bundle["verificationMaterial"]["tlogEntries"]
    root = json.loads((SIGSTORE / "trusted_root.staging.json").read_text())
    (tlog,) = [item for item in root["tlogs"] if b64d(item["logId"]["keyId"]) == b64d(entry["logId"]["keyId"])]
    name = tlog["baseUrl"].removeprefix("https://")
    spki = b64d(tlog["publicKey"]["rawBytes"])
    public_key = serialization.load_der_public_key(spki)
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(name.encode() + b"\n\x01" + raw).digest() == b64d(tlog["logId"]["keyId"])
    # The key's validFor ended in 2025: this checks the note, not whether the key is still valid.
    proof = entry["inclusionProof"]
    checkpoint = open_checkpoint(proof["checkpoint"]["envelope"], [verifier_for_key(name, spki)], origin=name)
    assert checkpoint.size == int(proof["treeSize"]) == 646
    index = int(entry["logIndex"])
    hashes_ = [b64d(item) for item in proof["hashes"]]
    verify_inclusion(leaf_hash(b64d(entry["canonicalizedBody"])), index, checkpoint.size, hashes_, checkpoint.root_hash)


def test_a_tiles_chunk_gives_the_entries_its_analysis_kept() -> None:
    bodies = [b"a", b"bb", b"ccc"]
    bundle = EntryBundle(3, 0, 3, b"".join(len(body).to_bytes(2, "big") + body for body in bodies))
    chunk = FetchedBundles(512, ["http://log/tile/entries/002.p/3"], [bundle], b"log")
    kept = chunk.kept({1: b"bb", 2: b"ccc"}, b"".join(leaf_hash(body) for body in bodies))
    assert len(kept) == 3 and kept.body_bytes == 5
    assert kept[-1] == TileEntry(514, b"ccc", leaf_hash(b"ccc"), b"log")
    assert [entry.uuid for entry in kept[1:]] == [leaf_hash(b"bb").hex(), leaf_hash(b"ccc").hex()]
    with pytest.raises(LookupError, match="not kept"):
        kept[0]
    with pytest.raises(IndexError):
        kept[3]


def test_bundles_are_split_as_the_client_splits_them() -> None:
    """The decode process splits a tiles chunk's bundles with the client's parser: the wanted entries
    of each, in order, from bytes or from a view of a larger buffer; a malformed one is named."""
    bodies = [bytes([n % 256]) * (n % 7) for n in range(300)]
    full, partial = frame(bodies[:256]), frame(bodies[256:])
    view = memoryview(b"x" + partial)[1:]
    assert bundled_entries([EntryBundle(256, 100, 256, full), EntryBundle(44, 0, 10, view)]) == bodies[100:266]
    with pytest.raises(BundleRefused) as refused:
        bundled_entries([EntryBundle(256, 0, 1, full), EntryBundle(45, 0, 10, partial)])
    assert refused.value.position == 1 and "ends after 44 of 45" in refused.value.problem
