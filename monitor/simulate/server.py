"""The simulator's HTTP server: the Rekor v1 REST API or tlog-tiles over a `SimLog`, plus control endpoints.

Rekor API (FORMATS.md §1): GET /api/v1/log, /api/v1/log/proof, /api/v1/log/publicKey,
/api/v1/log/entries?logIndex=N, /api/v1/log/entries/{uuid}; POST /api/v1/log/entries/retrieve.
tlog-tiles (FORMATS.md §4, `api="tiles"`): GET /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>].

Control endpoints (POST, JSON body) drive the same `Simulator` object tests use in-process:
/sim/faults, /sim/append, /sim/forged, /sim/rotate (v1 only), /sim/fork, /sim/wrong_key,
and for tiles /sim/tamper_tile and /sim/drop_partials.

`Simulator.latency` (`--latency-ms`) delays every answer of the log's API, never of /sim/, by that
many seconds: a log across a WAN, for benchmarks. Delayed requests wait concurrently, as they
would on the wire.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from aiohttp import web

from monitor.simulate.ca import LocalCA
from monitor.simulate.log import LeafLocation, Shard, SimLog
from monitor.simulate.synthetic import EntryFactory, PopulateReport, populate
from monitor.simulate.tiles import TiledLog, add_tiles_routes
from monitor.simulate.trustroot import TrustFiles, write_trust_files
from monitor.tlog.merkle import leaf_hash

MAX_SEARCH_QUERIES = 10
APIS = ("v1", "tiles")
RATE_TICK_SECONDS = 0.1
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX80 = re.compile(r"[0-9a-f]{80}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as Rekor does: `{"code": status, "message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Fault:
    status: int | None
    retry_after: int | None
    delay: float


@dataclass
class Faults:
    """Misbehaviour for the next `remaining` API requests: wait `delay`, then answer `status` if set."""

    armed: Fault | None = None
    remaining: int = 0

    def inject(
        self, *, count: int, status: int | None = None, retry_after: int | None = None, delay: float = 0.0
    ) -> None:
        self.armed = Fault(status, retry_after, delay)
        self.remaining = count

    def take(self) -> Fault | None:
        """The fault for this request, if any are left."""
        if self.armed is None or self.remaining <= 0:
            return None
        self.remaining -= 1
        return self.armed


@dataclass
class Simulator:
    """The log, its CA and the misbehaviour switches: what both the tests and /sim/ drive."""

    log: SimLog
    ca: LocalCA
    faults: Faults = field(default_factory=Faults)
    latency: float = 0.0  # seconds added to every answer of the log's API
    rogue_ca: LocalCA = field(default_factory=lambda: LocalCA.generate("rogue-fulcio"))
    factory: EntryFactory = field(init=False)
    tiled: TiledLog = field(init=False)

    def __post_init__(self) -> None:
        self.factory = EntryFactory(self.ca, rekor_v2=self.log.tiles)
        self.tiled = TiledLog(self.log)

    def append_codefresh(self, **identity: Any) -> int:
        """A Codefresh signing with a fresh certificate (codefresh_identity's arguments)."""
        return self.log.append(self.factory.codefresh(**identity))

    def append_github(self, **identity: Any) -> int:
        return self.log.append(self.factory.github(**identity))

    def append_forged(self, **identity: Any) -> int:
        """A Codefresh signing whose certificate comes from a CA that is not in the trusted root."""
        return self.log.append(self.factory.codefresh(ca=self.rogue_ca, **identity))

    async def append_unwatched(self, count: int) -> range:
        """Random signings of other identities, generated off the event loop."""
        bodies = await asyncio.to_thread(self.factory.unwatched_many, count)
        return self.log.append_many(bodies)


SIMULATOR = web.AppKey("simulator", Simulator)


def find_shard(log: SimLog, tree_id: str | None) -> Shard:
    if tree_id is None:
        return log.active
    shard = log.shard_by_tree_id(int(tree_id)) if tree_id.isdecimal() else None
    if shard is None:
        raise ApiError(400, f"unknown treeID {tree_id}")
    return shard


def int_query(request: web.Request, name: str, default: int | None = None) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None


def entry_uuid(location: LeafLocation) -> str:
    """Rekor's 80-hex EntryID: the tree id as %016x, then the leaf hash."""
    return f"{location.shard.tree_id:016x}{location.shard.leaf_hash_at(location.index).hex()}"


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    checkpoint: str


def tree_head(log: SimLog, shard: Shard) -> TreeHead:
    return TreeHead(shard.size, shard.root(), log.checkpoint(shard))


def b64_text(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def log_entries(log: SimLog, locations: list[LeafLocation]) -> list[str]:
    """Each location's `{uuid: LogEntryAnon}` as JSON text, with an inclusion proof against its shard's
    current tree head (`SimLog.entry_head`: the checkpoint is signed once per tree size).

    The text is exactly what json.dumps would write for the same object: every value is base64, hex or
    an integer, which need no escaping, except the checkpoint, which goes through json.dumps.
    """
    log_id = log.log_id.hex()
    heads: dict[int, tuple[int, str, str]] = {}
    answers = []
    for location in locations:
        shard, index = location.shard, location.index
        head = heads.get(shard.tree_id)
        if head is None:
            signed = log.entry_head(shard)
            proof_start = f'{{"checkpoint": {json.dumps(signed.checkpoint)}, "hashes": ['
            proof_end = f', "rootHash": "{signed.root.hex()}", "treeSize": {signed.size}}}'
            head = heads[shard.tree_id] = (signed.size, proof_start, proof_end)
        size, proof_start, proof_end = head
        hashes = ", ".join([f'"{item.hex()}"' for item in shard.inclusion_proof(index, size)])
        timestamp = b64_text(log.signed_entry_timestamp(location))
        answers.append(
            f'{{"{entry_uuid(location)}": {{"body": "{b64_text(shard.bodies[index])}", '
            f'"integratedTime": {shard.integrated_times[index]}, "logID": "{log_id}", '
            f'"logIndex": {location.global_index}, "verification": {{"inclusionProof": '
            f'{proof_start}{hashes}], "logIndex": {index}{proof_end}, "signedEntryTimestamp": "{timestamp}"}}}}}}'
        )
    return answers


def json_text(text: str) -> web.Response:
    """A response of JSON already encoded, with web.json_response's headers."""
    return web.Response(text=text, content_type="application/json")


def shard_json(log: SimLog, shard: Shard) -> dict[str, Any]:
    head = tree_head(log, shard)
    return {
        "rootHash": head.root.hex(),
        "signedTreeHead": head.checkpoint,
        "treeID": str(shard.tree_id),
        "treeSize": head.size,
    }


def locate_uuid(log: SimLog, uuid: str) -> LeafLocation | None:
    """A 64-hex leaf hash (any shard) or an 80-hex EntryID (tree id + leaf hash)."""
    uuid = uuid.lower()
    if HEX64.fullmatch(uuid):
        return log.find_leaf(bytes.fromhex(uuid))
    if HEX80.fullmatch(uuid):
        return log.find_leaf(bytes.fromhex(uuid[16:]), tree_id=int(uuid[:16], 16))
    raise ApiError(400, f"{uuid!r} is neither a 64-hex UUID nor an 80-hex entry ID")


def string_list(query: dict[str, Any], name: str) -> list[str]:
    items = query.get(name) or []
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ApiError(422, f"{name} must be a list of strings")
    return items


def index_list(query: dict[str, Any]) -> list[int]:
    items = query.get("logIndexes") or []
    if not isinstance(items, list) or not all(type(item) is int and item >= 0 for item in items):
        raise ApiError(422, "logIndexes must be a list of non-negative integers")
    return items


def proposed_entry_list(query: dict[str, Any]) -> list[dict[str, Any]]:
    items = query.get("entries") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ApiError(422, "entries must be a list of proposed entries")
    return items


def retrieval_order(
    log: SimLog, uuids: list[str], entries: list[dict[str, Any]], indexes: list[int]
) -> list[LeafLocation | None]:
    """Rekor's answer order: 80-hex entry IDs, then UUIDs and proposed entries, then log indexes."""
    by_uuid = [locate_uuid(log, uuid) for uuid in sorted(uuids, key=lambda uuid: len(uuid) != 80)]
    by_entry = [log.find_leaf(leaf_hash(rfc8785.dumps(entry))) for entry in entries]
    return [*by_uuid, *by_entry, *(log.locate(index) for index in indexes)]


async def get_log_info(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    info = shard_json(log, log.active)
    info["inactiveShards"] = [shard_json(log, shard) for shard in log.inactive]
    return web.json_response(info)


async def get_consistency_proof(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    shard = find_shard(log, request.query.get("treeID"))
    first = int_query(request, "firstSize", default=1)
    last = int_query(request, "lastSize")
    if first < 1 or last < 1:
        raise ApiError(400, "firstSize and lastSize must be at least 1")
    if first > last:
        raise ApiError(400, f"firstSize {first} is larger than lastSize {last}")
    if last > shard.size:
        raise ApiError(400, f"lastSize {last} is larger than the tree ({shard.size})")
    hashes = shard.consistency_proof(first, last)
    return web.json_response({"hashes": [item.hex() for item in hashes], "rootHash": shard.root().hex()})


async def get_public_key(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    find_shard(log, request.query.get("treeID"))
    return web.Response(body=log.public_key_pem(), content_type="application/x-pem-file")


async def get_entry_by_index(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    index = int_query(request, "logIndex")
    location = log.locate(index)
    if location is None:
        raise ApiError(404, f"no entry at index {index}")
    return json_text(log_entries(log, [location])[0])


async def get_entry_by_uuid(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    uuid = request.match_info["uuid"]
    location = locate_uuid(log, uuid)
    if location is None:
        raise ApiError(404, f"no entry {uuid}")
    return json_text(log_entries(log, [location])[0])


async def retrieve_entries(request: web.Request) -> web.Response:
    log = request.app[SIMULATOR].log
    query = await json_object(request)
    uuids, entries, indexes = string_list(query, "entryUUIDs"), proposed_entry_list(query), index_list(query)
    if len(uuids) + len(entries) + len(indexes) > MAX_SEARCH_QUERIES:
        raise ApiError(422, f"at most {MAX_SEARCH_QUERIES} entries can be retrieved at once")
    found = [location for location in retrieval_order(log, uuids, entries, indexes) if location is not None]
    return json_text(f"[{', '.join(log_entries(log, found))}]")


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        document = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, "the body must be a JSON object")
    return document


def int_field(spec: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = spec.get(name, default)
    if value is not None and type(value) is not int:
        raise ApiError(400, f"{name} must be an integer")
    return value


def count_field(spec: dict[str, Any], name: str, default: int) -> int:
    value = int_field(spec, name, default)
    if value is None or value < 0:
        raise ApiError(400, f"{name} must be a non-negative integer")
    return value


def seconds_field(spec: dict[str, Any], name: str) -> float:
    value = spec.get(name, 0.0)
    if type(value) not in (int, float) or value < 0:
        raise ApiError(400, f"{name} must be a non-negative number of seconds")
    return float(value)


async def control_faults(request: web.Request) -> web.Response:
    """{"status": 429|500|503|null, "count": N, "retry_after": s|null, "delay": s}; count 0 disarms."""
    spec = await json_object(request)
    faults = request.app[SIMULATOR].faults
    faults.inject(
        count=count_field(spec, "count", 1),
        status=int_field(spec, "status"),
        retry_after=int_field(spec, "retry_after"),
        delay=seconds_field(spec, "delay"),
    )
    return web.json_response({"remaining": faults.remaining})


async def control_append(request: web.Request) -> web.Response:
    """{"codefresh": [{codefresh_identity kwargs}], "github": [{...}], "unwatched": N} -> their indexes."""
    spec = await json_object(request)
    simulator = request.app[SIMULATOR]
    appended = {
        "codefresh": [with_identity(simulator.append_codefresh, kwargs) for kwargs in spec.get("codefresh", [])],
        "github": [with_identity(simulator.append_github, kwargs) for kwargs in spec.get("github", [])],
        "unwatched": list(await simulator.append_unwatched(count_field(spec, "unwatched", 0))),
    }
    return web.json_response(appended)


async def control_forged(request: web.Request) -> web.Response:
    """{codefresh_identity kwargs} -> a signing certified by a CA outside the trusted root."""
    simulator = request.app[SIMULATOR]
    return web.json_response({"logIndex": with_identity(simulator.append_forged, await json_object(request))})


def with_identity(append: Callable[..., int], kwargs: Any) -> int:
    """Call an append method with identity arguments from a request; bad arguments are a 400."""
    if not isinstance(kwargs, dict):
        raise ApiError(400, "an identity must be a JSON object")
    try:
        return append(**kwargs)
    except TypeError as exc:
        raise ApiError(400, f"bad identity: {exc}") from None


async def control_rotate(request: web.Request) -> web.Response:
    try:
        shard = request.app[SIMULATOR].log.rotate_shard()
    except ValueError as exc:
        raise ApiError(400, f"cannot rotate: {exc}") from None
    return web.json_response({"treeID": str(shard.tree_id)})


async def control_fork(request: web.Request) -> web.Response:
    """{"at": global index in the active shard}: rewrite that leaf."""
    at = int_field(await json_object(request), "at")
    if at is None:
        raise ApiError(400, "at is required")
    try:
        request.app[SIMULATOR].log.fork(at)
    except ValueError as exc:
        raise ApiError(400, f"cannot fork: {exc}") from None
    return web.json_response({"forked": at})


async def control_wrong_key(request: web.Request) -> web.Response:
    """{"enabled": bool}: sign checkpoints with a key that is not in the trusted root."""
    enabled = (await json_object(request)).get("enabled", True)
    if type(enabled) is not bool:
        raise ApiError(400, "enabled must be true or false")
    request.app[SIMULATOR].log.sign_with_wrong_key(enabled)
    return web.json_response({"enabled": enabled})


async def control_tamper_tile(request: web.Request) -> web.Response:
    """{"level": L, "index": N, "enabled": bool (default true)}: serve that tile with corrupted hashes."""
    spec = await json_object(request)
    level, index = count_field(spec, "level", 0), int_field(spec, "index")
    enabled = spec.get("enabled", True)
    if index is None or index < 0 or type(enabled) is not bool:
        raise ApiError(400, "index (a non-negative integer) is required; enabled must be true or false")
    request.app[SIMULATOR].tiled.tamper_tile(level, index, enabled=enabled)
    return web.json_response({"level": level, "index": index, "enabled": enabled})


async def control_drop_partials(request: web.Request) -> web.Response:
    """{"count": N}: the next N requests for partial tiles or bundles answer 404."""
    count = count_field(await json_object(request), "count", 1)
    request.app[SIMULATOR].tiled.drop_partials(count)
    return web.json_response({"remaining": count})


@web.middleware
async def rekor_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response({"code": error.status, "message": error.message}, status=error.status)


def is_log_api(request: web.Request) -> bool:
    return not request.path.startswith("/sim/")


@web.middleware
async def added_latency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the log's API waits `Simulator.latency` first, as a distant log's would."""
    latency = request.app[SIMULATOR].latency
    if latency > 0 and is_log_api(request):
        await asyncio.sleep(latency)
    return await handler(request)


@web.middleware
async def injected_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Slow answers and error statuses for the log's API (never for /sim/), while any are armed."""
    fault = request.app[SIMULATOR].faults.take() if is_log_api(request) else None
    if fault is None:
        return await handler(request)
    await asyncio.sleep(fault.delay)
    if fault.status is None:
        return await handler(request)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    message = {"code": fault.status, "message": "injected by the simulator"}
    return web.json_response(message, status=fault.status, headers=headers)


def create_app(simulator: Simulator) -> web.Application:
    app = web.Application(middlewares=[rekor_errors, added_latency, injected_faults])
    app[SIMULATOR] = simulator
    if simulator.log.tiles:
        add_tiles_routes(app, simulator.tiled)
        app.router.add_post("/sim/tamper_tile", control_tamper_tile)
        app.router.add_post("/sim/drop_partials", control_drop_partials)
    else:
        app.router.add_get("/api/v1/log", get_log_info)
        app.router.add_get("/api/v1/log/proof", get_consistency_proof)
        app.router.add_get("/api/v1/log/publicKey", get_public_key)
        app.router.add_get("/api/v1/log/entries", get_entry_by_index)
        app.router.add_post("/api/v1/log/entries/retrieve", retrieve_entries)
        app.router.add_get("/api/v1/log/entries/{uuid}", get_entry_by_uuid)
    app.router.add_post("/sim/faults", control_faults)
    app.router.add_post("/sim/append", control_append)
    app.router.add_post("/sim/forged", control_forged)
    app.router.add_post("/sim/rotate", control_rotate)
    app.router.add_post("/sim/fork", control_fork)
    app.router.add_post("/sim/wrong_key", control_wrong_key)
    return app


async def append_at_rate(simulator: Simulator, per_second: float) -> None:
    """Append random unwatched entries forever, `per_second` of them on average."""
    loop = asyncio.get_running_loop()
    started, done = loop.time(), 0
    while True:
        await asyncio.sleep(RATE_TICK_SECONDS)
        due = int((loop.time() - started) * per_second) - done
        if due > 0:
            await simulator.append_unwatched(due)
            done += due


@dataclass
class RunningSimulator:
    url: str
    simulator: Simulator
    trust_files: TrustFiles
    runner: web.AppRunner
    prefill: PopulateReport | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def log(self) -> SimLog:
        return self.simulator.log

    @property
    def ca(self) -> LocalCA:
        return self.simulator.ca

    @property
    def faults(self) -> Faults:
        return self.simulator.faults

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.runner.cleanup()


def prefill_log(simulator: Simulator, count: int) -> PopulateReport:
    """Generate `count` entries on every CPU before the log is served."""
    return populate(simulator.log, simulator.ca, count, workers=os.cpu_count() or 1, rekor_v2=simulator.log.tiles)


def bound_socket(host: str, port: int) -> socket.socket:
    """Bind before anything else: the log's name (checkpoint origin, key name) contains the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    directory: Path,
    api: str = "v1",
    rate: float = 0.0,
    prefill: int = 0,
    latency_ms: float = 0.0,
) -> RunningSimulator:
    """Serve a fresh simulated log, Rekor v1 (`api="v1"`) or tlog-tiles (`api="tiles"`), whose
    API answers each wait `latency_ms` first.

    Writes directory/trusted_root.json and signing_config.json.
    """
    if api not in APIS:
        raise ValueError(f"unknown API {api!r}; the simulator speaks {', '.join(APIS)}")
    if latency_ms < 0:
        raise ValueError(f"latency_ms must not be negative, not {latency_ms}")
    sock = bound_socket(host, port)
    bound_port = sock.getsockname()[1]
    authority = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
    log = SimLog.tiles_log(authority) if api == "tiles" else SimLog(authority)
    simulator = Simulator(log, LocalCA.generate(), latency=latency_ms / 1000)
    report = await asyncio.to_thread(prefill_log, simulator, prefill) if prefill else None
    url = f"http://{authority}"
    trust_files = write_trust_files(directory, url, simulator.log, simulator.ca)
    runner = web.AppRunner(create_app(simulator), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    running = RunningSimulator(url, simulator, trust_files, runner, report)
    if rate > 0:
        running.background.append(asyncio.create_task(append_at_rate(simulator, rate)))
    return running


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) -> (host, port)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not host or not port.isdecimal() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def run_until_signalled(
    *,
    host: str,
    port: int,
    directory: Path,
    rate: float,
    prefill: int,
    announce: Callable[[str], None],
    api: str = "v1",
    latency_ms: float = 0.0,
) -> None:
    """Serve until SIGINT or SIGTERM, announcing where the log and its trust root are."""
    running = await start_simulator(
        host=host, port=port, directory=directory, api=api, rate=rate, prefill=prefill, latency_ms=latency_ms
    )
    if running.prefill is not None:
        announce(f"prefilled {running.prefill.count} entries in {running.prefill.seconds:.1f}s")
    announce(f"{'tlog-tiles (rekor v2)' if api == 'tiles' else 'rekor v1'} simulator at {running.url}")
    announce(f"trusted root: {running.trust_files.trusted_root}")
    announce(f"signing config: {running.trust_files.signing_config}")
    if latency_ms:
        announce(f"every answer of the log's API is delayed by {latency_ms:g} ms")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await running.stop()
