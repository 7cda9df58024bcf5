"""The Rekor v1 client over real HTTP: against a hostile peer serving canned answers (below) and the simulator."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.tlog.errors import LogProtocolError, LogUnavailableError
from monitor.tlog.http import MAX_RETRY_AFTER, AdaptiveLimit, HttpFetcher, RetryPolicy, parse_retry_after
from monitor.tlog.merkle import leaf_hash, verify_consistency, verify_inclusion
from monitor.tlog.rekor_v1 import RekorV1Client
from tests.harness import CLIENT_RETRY

LOG_ID = bytes(range(32))
TREE_ID = 0x1234_5678_9ABC_DEF0
ROOT = bytes(32)


# --- a hostile peer: an aiohttp server answering whatever a test tells it to ---------------------------


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    payload: Any


Responder = Callable[[Seen], Canned]


@dataclass
class HostilePeer:
    url: str = ""
    respond: Responder = lambda seen: Canned(404)
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json() if request.can_read_body else None
        seen = Seen(request.method, request.path, dict(request.query), payload)
        self.seen.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            canned = self.respond(seen)
            await asyncio.sleep(canned.delay)
            if not canned.chunked:
                return web.Response(status=canned.status, body=canned.body, headers=canned.headers)
            response = web.StreamResponse(status=canned.status, headers=canned.headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(canned.body)
            await response.write_eof()
            return response
        finally:
            self.in_flight -= 1


@pytest.fixture
async def peer() -> AsyncIterator[HostilePeer]:
    hostile = HostilePeer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hostile.handle)
    async with TestServer(app) as server:
        hostile.url = str(server.make_url(""))
        yield hostile


def client_for(peer: HostilePeer, http: aiohttp.ClientSession, **options: Any) -> RekorV1Client:
    return RekorV1Client(peer.url, http, retry=options.pop("retry", CLIENT_RETRY), **options)


def as_json(document: Any) -> Canned:
    return Canned(body=json.dumps(document).encode(), headers={"Content-Type": "application/json"})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body_of(index: int) -> bytes:
    return json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "n": index}).encode()


def anonymous_entry(index: int) -> dict[str, Any]:
    return {
        "body": b64(body_of(index)),
        "integratedTime": 1_700_000_000 + index,
        "logID": LOG_ID.hex(),
        "logIndex": index,
        "verification": {
            "inclusionProof": {
                "logIndex": index,
                "treeSize": 1_000_000,
                "rootHash": ROOT.hex(),
                "hashes": [(bytes([n]) * 32).hex() for n in range(3)],
                "checkpoint": "rekor.example - 1\n1000000\nAAAA\n\n— rekor.example AAAA\n",
            },
            "signedEntryTimestamp": b64(b"a signature"),
        },
    }


def log_entry(index: int, anonymous: dict[str, Any] | None = None) -> dict[str, Any]:
    uuid = f"{TREE_ID:016x}{leaf_hash(body_of(index)).hex()}"
    return {uuid: anonymous if anonymous is not None else anonymous_entry(index)}


def log_info(tree_size: int = 10, inactive: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "rootHash": ROOT.hex(),
        "treeSize": tree_size,
        "signedTreeHead": "a checkpoint",
        "treeID": str(TREE_ID),
    }
    if inactive is not None:
        info["inactiveShards"] = inactive
    return info


def retrieve_responder(answer: Callable[[list[int]], list[Any]]) -> Responder:
    def respond(seen: Seen) -> Canned:
        return as_json(answer(seen.payload["logIndexes"]))

    return respond


# --- retry policy ---------------------------------------------------------------------------------------


def test_delay_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (50, 5.0), (100_000, 5.0)]:
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # full jitter spreads over the whole range


def test_delay_honours_retry_after_up_to_a_cap() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.1)
    assert policy.delay(1, 7.0) >= 7.0
    assert policy.delay(1, 86_400.0) == MAX_RETRY_AFTER


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(factor=0.5)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (parse_retry_after(future) or 0) <= 60
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# --- transient failures: retried, then LogUnavailableError ---------------------------------------------


async def test_5xx_and_429_bursts_are_ridden_out(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    failures = iter([Canned(503), Canned(429), Canned(500), Canned(502)])
    peer.respond = lambda seen: next(failures, None) or as_json(log_info(tree_size=42))
    client = client_for(peer, http, retry=RetryPolicy(max_attempts=5, base_delay=0.001))
    info = await client.get_log_info()
    assert info.active.tree_size == 42
    assert len(peer.seen) == 5


async def test_retry_after_is_honoured(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    failures = iter([Canned(429, headers={"Retry-After": "1"})])
    peer.respond = lambda seen: next(failures, None) or as_json(log_info())
    started = time.monotonic()
    await client_for(peer, http).get_log_info()
    assert time.monotonic() - started >= 1.0
    assert len(peer.seen) == 2


async def test_permanent_failure_gives_up_after_max_attempts(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.respond = lambda seen: Canned(500)
    with pytest.raises(LogUnavailableError) as caught:
        await client_for(peer, http).get_log_info()
    assert len(peer.seen) == CLIENT_RETRY.max_attempts
    assert peer.url in str(caught.value) and "HTTP 500" in str(caught.value)


async def test_timeouts_are_retried_then_give_up(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.respond = lambda seen: Canned(delay=1.0, body=b"{}")
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    with pytest.raises(LogUnavailableError, match="Timeout"):
        await client_for(peer, http, retry=retry, timeout=0.1).get_log_info()
    assert len(peer.seen) == 2


async def test_closed_port_is_unavailable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RekorV1Client(f"http://127.0.0.1:{port}", http, retry=RetryPolicy(max_attempts=2, base_delay=0))
    with pytest.raises(LogUnavailableError, match=f"127.0.0.1:{port}"):
        await client.get_log_info()


async def test_every_attempt_is_observed(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    failures = iter([Canned(500)])
    peer.respond = lambda seen: next(failures, None) or as_json(log_entry(3))
    observed: list[tuple[str, float]] = []
    client = client_for(peer, http, observe=lambda endpoint, seconds, _failure: observed.append((endpoint, seconds)))
    await client.get_entry(3)
    assert [endpoint for endpoint, _ in observed] == ["entry", "entry"]
    assert all(seconds >= 0 for _, seconds in observed)


async def test_credentials_in_the_url_are_refused(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="credentials"):
        HttpFetcher(http, "https://user:secret@rekor.example", retry=CLIENT_RETRY)


# --- nonsense answers: LogProtocolError, never retried --------------------------------------------------


REMOVE = object()


def edit(dotted: str, value: Any = REMOVE) -> Callable[[dict[str, Any]], None]:
    """Set, or remove, one field of an anonymous entry, addressed like f"{PROOF}.hashes"."""
    *parents, leaf = dotted.split(".")

    def change(anonymous: dict[str, Any]) -> None:
        target = anonymous
        for parent in parents:
            target = target[parent]
        if value is REMOVE:
            del target[leaf]
        else:
            target[leaf] = value

    return change


PROOF = "verification.inclusionProof"
BROKEN_ENTRIES = {
    "body not base64": (edit("body", "not base64!"), "body"),
    "body a number": (edit("body", 12), "body"),
    "body missing": (edit("body"), "body"),
    "logIndex a string": (edit("logIndex", "7"), "logIndex"),
    "logIndex a boolean": (edit("logIndex", True), "logIndex"),
    "logIndex negative": (edit("logIndex", -1), "logIndex"),
    "logIndex beyond int64": (edit("logIndex", 2**63), "logIndex"),
    "logID short": (edit("logID", "ab" * 31), "logID"),
    "logID not hex": (edit("logID", "zz" * 32), "logID"),
    "integratedTime a float": (edit("integratedTime", 1.5), "integratedTime"),
    "verification a list": (edit("verification", []), "verification"),
    "proof index past the tree": (
        edit(f"{PROOF}.treeSize", 7),
        f"{PROOF}.logIndex",
    ),
    "proof treeSize zero": (edit(f"{PROOF}.treeSize", 0), "inclusionProof.treeSize"),
    "proof hashes not a list": (edit(f"{PROOF}.hashes", "ab"), "inclusionProof.hashes"),
    "proof hash too short": (edit(f"{PROOF}.hashes", ["ab"]), "inclusionProof.hashes"),
    "proof hash not hex": (edit(f"{PROOF}.hashes", ["zz" * 32]), "inclusionProof.hashes"),
    "proof hash a number": (edit(f"{PROOF}.hashes", [5]), "inclusionProof.hashes"),
    "proof hashes absurdly many": (
        edit(f"{PROOF}.hashes", ["ab" * 32] * 500),
        "inclusionProof.hashes",
    ),
    "proof rootHash missing": (edit(f"{PROOF}.rootHash"), "inclusionProof.rootHash"),
    "checkpoint a number": (edit(f"{PROOF}.checkpoint", 5), "inclusionProof.checkpoint"),
    "SET not base64": (edit("verification.signedEntryTimestamp", "***"), "signedEntryTimestamp"),
}


async def test_optional_fields_may_be_absent(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    anonymous = anonymous_entry(7)
    del anonymous["integratedTime"], anonymous["verification"]
    peer.respond = lambda seen: as_json(log_entry(7, anonymous))
    entry = await client_for(peer, http).get_entry(7)
    assert entry is not None
    assert (entry.integrated_time, entry.inclusion_proof, entry.signed_entry_timestamp) == (None, None, None)
    assert (entry.log_index, entry.body, entry.log_id) == (7, body_of(7), LOG_ID)


@pytest.mark.parametrize("case", BROKEN_ENTRIES, ids=list(BROKEN_ENTRIES))
async def test_broken_entry_fields_are_named(case: str, peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    change, field_name = BROKEN_ENTRIES[case]
    anonymous = anonymous_entry(7)
    change(anonymous)
    peer.respond = lambda seen: as_json(log_entry(7, anonymous))
    with pytest.raises(LogProtocolError, match=re.escape(field_name)) as caught:
        await client_for(peer, http).get_entry(7)
    assert peer.url in str(caught.value)
    assert len(peer.seen) == 1


BROKEN_DOCUMENTS = {
    "not JSON": b"<html>502 Bad Gateway</html>",
    "not UTF-8": b'{"\xff": 1}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "a list": b"[]",
    "two uuids": json.dumps({**log_entry(7), **log_entry(8)}).encode(),
    "uuid not hex": json.dumps({"x" * 64: anonymous_entry(7)}).encode(),
    "uuid of 79 digits": json.dumps({"0" * 15 + leaf_hash(body_of(7)).hex(): anonymous_entry(7)}).encode(),
    "uuid with a fullwidth 0": json.dumps({"\uff10" + leaf_hash(body_of(7)).hex()[1:]: anonymous_entry(7)}).encode(),
    "uuid of another body": json.dumps({leaf_hash(b"other").hex(): anonymous_entry(7)}).encode(),
    "entry a string": json.dumps({leaf_hash(body_of(7)).hex(): "entry"}).encode(),
    "another index": json.dumps(log_entry(8)).encode(),
}


@pytest.mark.parametrize("case", BROKEN_DOCUMENTS, ids=list(BROKEN_DOCUMENTS))
async def test_nonsense_entry_answers_are_protocol_errors(
    case: str, peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    peer.respond = lambda seen: Canned(body=BROKEN_DOCUMENTS[case])
    with pytest.raises(LogProtocolError):
        await client_for(peer, http).get_entry(7)
    assert len(peer.seen) == 1


BROKEN_LOG_INFOS = {
    "rootHash of 63 digits": ({**log_info(), "rootHash": "a" * 63}, "rootHash"),
    "treeSize negative": ({**log_info(), "treeSize": -1}, "treeSize"),
    "treeSize a string": ({**log_info(), "treeSize": "10"}, "treeSize"),
    "treeID a number": ({**log_info(), "treeID": TREE_ID}, "treeID"),
    "treeID not decimal": ({**log_info(), "treeID": "0x12"}, "treeID"),
    "signedTreeHead missing": ({k: v for k, v in log_info().items() if k != "signedTreeHead"}, "signedTreeHead"),
    "inactiveShards an object": ({**log_info(), "inactiveShards": {}}, "inactiveShards"),
    "inactive shard incomplete": (log_info(inactive=[{"treeID": "5"}]), "inactiveShards[0]"),
    "tree ids repeat": (log_info(inactive=[log_info()]), "repeat"),
}


@pytest.mark.parametrize("case", BROKEN_LOG_INFOS, ids=list(BROKEN_LOG_INFOS))
async def test_broken_log_info_is_a_protocol_error(case: str, peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    document, field_name = BROKEN_LOG_INFOS[case]
    peer.respond = lambda seen: as_json(document)
    with pytest.raises(LogProtocolError, match=re.escape(field_name)):
        await client_for(peer, http).get_log_info()
    assert len(peer.seen) == 1


@pytest.mark.parametrize("status", [400, 403, 301, 418])
async def test_unexpected_statuses_are_not_retried(status: int, peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.respond = lambda seen: Canned(status, headers={"Location": "http://169.254.169.254/"})
    with pytest.raises(LogProtocolError, match=str(status)):
        await client_for(peer, http).get_consistency_proof(3, 5)
    assert len(peer.seen) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_answers_are_refused(chunked: bool, peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.respond = lambda seen: Canned(body=b" " * 5000, chunked=chunked)
    fetcher = HttpFetcher(http, peer.url, retry=CLIENT_RETRY, max_response_bytes=1000)
    with pytest.raises(LogProtocolError, match="cap"):
        await fetcher.get("/api/v1/log", endpoint="log")
    assert len(peer.seen) == 1


async def test_consistency_proof_parsing_ignores_the_untrusted_root(
    peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    hashes = [bytes([n]) * 32 for n in range(4)]
    peer.respond = lambda seen: as_json({"rootHash": "not even hex", "hashes": [h.hex() for h in hashes]})
    client = client_for(peer, http)
    assert await client.get_consistency_proof(3, 9, tree_id="77") == hashes
    assert peer.seen[0].query == {"firstSize": "3", "lastSize": "9", "treeID": "77"}
    assert await client.get_consistency_proof(9, 9) == []
    assert await client.get_consistency_proof(0, 9) == []
    assert len(peer.seen) == 1
    peer.respond = lambda seen: as_json({"hashes": ["ab" * 31]})
    with pytest.raises(LogProtocolError, match="hashes"):
        await client.get_consistency_proof(3, 9)


# --- retrieve: batches, matching by logIndex, fallbacks -------------------------------------------------


async def test_answers_are_matched_by_log_index_not_position(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    absent = {3, 14}
    peer.respond = retrieve_responder(
        lambda asked: [log_entry(index) for index in reversed(asked) if index not in absent]
    )
    entries = await client_for(peer, http).get_entries(range(20))
    assert set(entries) == set(range(20)) - absent
    assert all(entry.log_index == index and entry.body == body_of(index) for index, entry in entries.items())
    assert [len(seen.payload["logIndexes"]) for seen in peer.seen] == [10, 10]


async def test_unrequested_and_repeated_entries_are_protocol_errors(
    peer: HostilePeer, http: aiohttp.ClientSession
) -> None:
    client = client_for(peer, http)
    peer.respond = retrieve_responder(lambda asked: [log_entry(index + 100) for index in asked])
    with pytest.raises(LogProtocolError, match="not requested"):
        await client.get_entries([1, 2])
    peer.respond = retrieve_responder(lambda asked: [log_entry(asked[0]), log_entry(asked[0])])
    with pytest.raises(LogProtocolError, match="twice"):
        await client.get_entries([1, 2])
    peer.respond = lambda seen: as_json({"entries": []})
    with pytest.raises(LogProtocolError, match="not a list"):
        await client.get_entries([1, 2])


@pytest.mark.parametrize("status", [413, 422])
async def test_rejected_batches_are_halved(status: int, peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    def respond(seen: Seen) -> Canned:
        asked = seen.payload["logIndexes"]
        return Canned(status) if len(asked) > 3 else as_json([log_entry(index) for index in asked])

    peer.respond = respond
    entries = await client_for(peer, http, concurrency=2).get_entries(list(range(25)))
    assert set(entries) == set(range(25))
    assert peer.max_in_flight <= 2


async def test_a_batch_of_one_rejected_is_a_protocol_error(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    peer.respond = lambda seen: Canned(422)
    with pytest.raises(LogProtocolError, match="422"):
        await client_for(peer, http).get_entries([1, 2, 3])


async def test_one_failing_batch_cancels_the_others(peer: HostilePeer, http: aiohttp.ClientSession) -> None:
    def respond(seen: Seen) -> Canned:
        asked = seen.payload["logIndexes"]
        if asked[0] == 0:
            return Canned(body=b"garbage")
        return Canned(delay=5.0, body=json.dumps([log_entry(index) for index in asked]).encode())

    peer.respond = respond
    started = time.monotonic()
    with pytest.raises(LogProtocolError):
        await client_for(peer, http, batch_size=2).get_entries(range(6))
    assert time.monotonic() - started < 2.0


async def test_client_options_are_checked(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        RekorV1Client("http://log", http, batch_size=11)
    with pytest.raises(ValueError):
        RekorV1Client("http://log", http, concurrency=0)


# --- against the simulator --------------------------------------------------------------------------------


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path)
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class TrafficMeter:
    """Client-side view of the retrieve requests: how many were in flight at once, and their batches."""

    in_flight: int = 0
    max_in_flight: int = 0
    batches: list[list[int]] = field(default_factory=list)

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self.started)
        config.on_request_end.append(self.ended)
        config.on_request_exception.append(self.ended)
        config.on_request_chunk_sent.append(self.chunk_sent)
        return config

    async def started(self, http: Any, context: Any, params: Any) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def ended(self, http: Any, context: Any, params: Any) -> None:
        self.in_flight -= 1

    async def chunk_sent(self, http: Any, context: Any, params: aiohttp.TraceRequestChunkSentParams) -> None:
        self.batches.append(json.loads(params.chunk)["logIndexes"])


async def test_log_info_of_a_single_shard(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await sim.simulator.append_unwatched(5)
    info = await RekorV1Client(sim.url, http).get_log_info()
    assert info.active.tree_id == str(sim.log.active.tree_id)
    assert (info.active.tree_size, info.active.root_hash) == (5, sim.log.active.root())
    assert info.active.signed_tree_head.startswith(sim.log.origin(sim.log.active))
    assert info.inactive == ()
    assert info.global_size == 5


async def test_log_info_lists_inactive_shards_oldest_first(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    for count in (3, 4):
        await sim.simulator.append_unwatched(count)
        sim.log.rotate_shard()
    await sim.simulator.append_unwatched(2)
    info = await RekorV1Client(sim.url, http).get_log_info()
    expected = [(str(shard.tree_id), shard.size, shard.root()) for shard in sim.log.inactive]
    assert [(shard.tree_id, shard.tree_size, shard.root_hash) for shard in info.inactive] == expected
    assert [shard.tree_size for shard in info.inactive] == [3, 4]
    assert info.active.tree_size == 2
    assert info.global_size == sim.log.size == 9


async def test_consistency_proofs_verify(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await sim.simulator.append_unwatched(21)
    sim.log.rotate_shard()
    old = sim.log.inactive[0]
    await sim.simulator.append_unwatched(13)
    client = RekorV1Client(sim.url, http)
    for first, last in [(1, 13), (3, 7), (4, 8), (7, 13), (8, 13), (12, 13)]:
        proof = await client.get_consistency_proof(first, last)
        verify_consistency(first, last, proof, sim.log.active.root(first), sim.log.active.root(last))
    proof = await client.get_consistency_proof(5, 21, tree_id=str(old.tree_id))
    verify_consistency(5, 21, proof, old.root(5), old.root(21))


async def test_entries_carry_global_and_shard_indexes(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await sim.simulator.append_unwatched(6)
    sim.log.rotate_shard()
    await sim.simulator.append_unwatched(5)
    client = RekorV1Client(sim.url, http)
    entry = await client.get_entry(8)
    assert entry is not None and entry.inclusion_proof is not None
    proof = entry.inclusion_proof
    assert (entry.log_index, proof.log_index, proof.tree_size) == (8, 2, 5)
    assert entry.body == sim.log.active.bodies[2]
    assert entry.log_id == sim.log.log_id
    assert entry.signed_entry_timestamp
    assert proof.root_hash == sim.log.active.root()
    verify_inclusion(leaf_hash(entry.body), proof.log_index, proof.tree_size, proof.hashes, proof.root_hash)
    assert await client.get_entry(11) is None


async def test_95_entries_in_bounded_batches(sim: RunningSimulator, tmp_path: Path) -> None:
    await sim.simulator.append_unwatched(40)
    sim.log.rotate_shard()
    await sim.simulator.append_unwatched(60)
    sim.faults.inject(count=1000, delay=0.02)  # slow answers, so that batches pile up against the bound
    meter = TrafficMeter()
    async with aiohttp.ClientSession(trace_configs=[meter.trace_config()]) as traced:
        client = RekorV1Client(sim.url, traced, concurrency=3)
        wanted = list(range(5, 100))
        entries = await client.get_entries(wanted)
    assert sorted(entries) == wanted
    for index, entry in entries.items():
        location = sim.log.locate(index)
        assert location is not None
        assert entry.log_index == index and entry.body == location.shard.bodies[location.index]
    assert sorted(index for batch in meter.batches for index in batch) == wanted
    assert max(len(batch) for batch in meter.batches) == 10
    assert meter.max_in_flight == 3


async def test_missing_indexes_are_absent(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await sim.simulator.append_unwatched(12)
    client = RekorV1Client(sim.url, http)
    assert sorted(await client.get_entries([0, 11, 12, 40, 10**12])) == [0, 11]
    assert await client.get_entries([]) == {}


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_bursts_of_failures_are_ridden_out(
    status: int, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await sim.simulator.append_unwatched(30)
    sim.faults.inject(count=6, status=status, retry_after=0)
    client = RekorV1Client(sim.url, http, retry=RetryPolicy(max_attempts=8, base_delay=0.001), concurrency=2)
    assert sorted(await client.get_entries(range(30))) == list(range(30))
    assert sim.faults.remaining == 0


async def test_slow_answers_time_out_and_are_retried(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await sim.simulator.append_unwatched(1)
    sim.faults.inject(count=2, delay=0.5)
    client = RekorV1Client(sim.url, http, retry=CLIENT_RETRY, timeout=0.1)
    assert (await client.get_log_info()).active.tree_size == 1


async def test_a_failing_simulator_is_unavailable(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.faults.inject(count=100, status=503, retry_after=0)
    with pytest.raises(LogUnavailableError, match="HTTP 503"):
        await RekorV1Client(sim.url, http, retry=CLIENT_RETRY).get_log_info()
    assert sim.faults.remaining == 100 - CLIENT_RETRY.max_attempts


async def test_429s_halve_the_requests_in_flight_and_successes_grow_them_back(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """Issue 9: on 429 the client halves its in-flight requests (AIMD), so a public log is never hammered."""
    await sim.simulator.append_unwatched(400)
    meter = TrafficMeter()
    async with aiohttp.ClientSession(trace_configs=[meter.trace_config()]) as traced:
        client = RekorV1Client(sim.url, traced, retry=RetryPolicy(max_attempts=20, base_delay=0.01), concurrency=16)
        sim.faults.inject(count=1000, delay=0.01)
        await client.get_entries(range(160))
        assert meter.max_in_flight == 16, "a log that answers gets the configured concurrency"
        sim.faults.inject(count=16, status=429, retry_after=0)
        await client.get_entries(range(160, 320))  # 16 requests at once, each answered 429 once
        limit = client._http.limit.limit
        assert limit <= 9, "a burst of 429s halves the limit (once: they came together)"
        sim.faults.inject(count=1000, delay=0.01)
        meter.max_in_flight = 0
        await client.get_entries(range(320, 400))
        assert meter.max_in_flight <= limit + 1, "the next batches respect the halved limit"
        await client.get_entries(range(0, 400))
        assert client._http.limit.limit > limit, "successes grow it back"


async def test_the_adaptive_limit_never_goes_below_one_nor_above_its_ceiling() -> None:
    limit = AdaptiveLimit(4, cooldown=0)
    for _ in range(10):
        limit.throttled()
    assert limit.limit == 1
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 4


async def test_freed_slots_go_to_waiters_in_order_and_a_waiter_that_gives_up_keeps_none() -> None:
    limit = AdaptiveLimit(2)
    order: list[int] = []
    release = asyncio.Event()

    async def request(number: int) -> None:
        async with limit:
            order.append(number)
            await release.wait()

    holders = [asyncio.create_task(request(n)) for n in range(2)]
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(request(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    assert (limit.in_flight, order) == (2, [0, 1])
    waiters[0].cancel()  # gives up while waiting
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*holders, *waiters[1:])
    assert order == [0, 1, 3, 4, 5] and limit.in_flight == 0


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    limit = AdaptiveLimit(1)
    await limit.__aenter__()
    first = asyncio.create_task(limit.__aenter__())
    second = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    await limit.__aexit__()  # the slot is handed to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, timeout=1)
    assert limit.in_flight == 1, "the slot went on to the next waiter"
    await limit.__aexit__()
    assert limit.in_flight == 0


async def test_a_grown_limit_lets_a_waiter_in_at_once() -> None:
    limit = AdaptiveLimit(2, cooldown=0)
    limit.throttled()
    await limit.__aenter__()
    waiter = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    assert not waiter.done()
    limit.succeeded()  # one success at limit 1 grows it to 2
    await asyncio.wait_for(waiter, timeout=1)
    assert limit.in_flight == 2
