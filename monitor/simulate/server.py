"""The simulator's HTTP server: the Rekor v1 REST API or tlog-tiles over a `SimLog`, plus control endpoints.

Rekor API (FORMATS.md §1): GET /api/v1/log, /api/v1/log/proof, /api/v1/log/publicKey,
/api/v1/log/entries?logIndex=N, /api/v1/log/entries/{uuid}; POST /api/v1/log/entries/retrieve.
tlog-tiles (FORMATS.md §4, `api="tiles"`): GET /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>].

Codefresh builds API (FORMATS.md §9, `builds.SimBuildsApi`): GET /api/builds/<workflow id>, on
either API; the log's injected faults never touch it: it has its own controls, POST
/sim/builds/outage, /sim/builds/forget, /sim/builds/move, and GET /sim/builds/requests.

Witnesses (simulate/witnesses.py) cosign the checkpoint served as current (tiles /checkpoint, the v1
signedTreeHead of the active shard); a transparency-dev distributor (simulate/distributor.py) serves
the honest checkpoints under /distributor/v0/. With `split_view`, a second port serves a fork of the
log (simulate/split.py).

Beside the log, its CA's CT log (simulate/ct.py): RFC 6962 under /ct/2022, or static-ct-api under
/ctstatic (`ct_api="static"`). Every certificate the CA issues is logged there first.

Control endpoints (POST, JSON body) drive the same `Simulator` object tests use in-process:
/sim/faults, /sim/append, /sim/forged, /sim/rotate (v1 only), /sim/fork, /sim/wrong_key,
/sim/hostile (simulate/hostile.py), /sim/witnesses, /sim/split (with `split_view`, on either port),
for tiles /sim/tamper_tile and /sim/drop_partials, and for CT /sim/ct/issue_only (a certificate
that never reaches the Rekor log), /sim/ct/fork and /sim/ct/max_entries.

`Simulator.latency` (`--latency-ms`) delays every answer of the log's API, never of /sim/ nor the
builds API, by that many seconds: a log across a WAN, for benchmarks. Delayed requests wait
concurrently, as they would on the wire.
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

from monitor.simulate.builds import BuildFate, SimBuildsApi
from monitor.simulate.ca import IssuedCert, LocalCA, codefresh_identity
from monitor.simulate.ct import CT_APIS, SimCtLog, ct_app, new_ct_log
from monitor.simulate.distributor import Distributor, add_distributor_routes
from monitor.simulate.hostile import Hostility, endless_answer, endless_now, serve_hostile
from monitor.simulate.log import LeafLocation, Shard, SimLog
from monitor.simulate.split import SplitView
from monitor.simulate.synthetic import EntryFactory, PopulateReport, object_id, populate, populate_ct
from monitor.simulate.tiles import TiledLog, add_tiles_routes
from monitor.simulate.trustroot import TrustFiles, write_trust_files
from monitor.simulate.witnesses import WitnessPanel
from monitor.tlog.merkle import leaf_hash

MAX_SEARCH_QUERIES = 10
APIS = ("v1", "tiles")
RATE_TICK_SECONDS = 0.1
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX80 = re.compile(r"[0-9a-f]{80}")
BUILDS_PATH = "/api/builds/"
CODEFRESH_API_KEY_FILE = "codefresh_api_key"

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


@dataclass(frozen=True)
class CtIssued:
    """A certificate the CA issued, and the index of its precertificate in the CT log."""

    ct_index: int
    issued: IssuedCert


@dataclass
class Simulator:
    """The log, its CA and the CA's CT log, its witnesses and the misbehaviour switches: what both the
    tests and /sim/ drive."""

    log: SimLog
    ca: LocalCA
    faults: Faults = field(default_factory=Faults)
    hostility: Hostility = field(default_factory=Hostility)
    latency: float = 0.0  # seconds added to every answer of the log's API
    rogue_ca: LocalCA = field(default_factory=lambda: LocalCA.generate("rogue-fulcio"))
    builds: SimBuildsApi = field(default_factory=SimBuildsApi)
    witnesses: WitnessPanel = field(default_factory=WitnessPanel)
    ct_api: str = "rfc6962"
    factory: EntryFactory = field(init=False)
    tiled: TiledLog = field(init=False)
    ct: SimCtLog = field(init=False)

    def __post_init__(self) -> None:
        self.ct = new_ct_log(self.log.name, self.ca.chain_der(), self.ct_api)
        self.factory = EntryFactory(self.ca, rekor_v2=self.log.tiles, ct=self.ct)
        self.tiled = TiledLog(self.log, self.witnesses)

    def show(self, log: SimLog, witnesses: WitnessPanel) -> None:
        """Serve another log (a split view's fork), cosigned by `witnesses`, through the same routes."""
        self.log = self.tiled.log = log
        self.witnesses = self.tiled.witnesses = witnesses

    def append_codefresh(self, *, build: str = BuildFate.REGISTERED, **identity: Any) -> int:
        """A Codefresh signing with a fresh certificate (codefresh_identity's arguments, workflow_id
        optional); the builds API then knows its build as `build` (a `BuildFate`) says."""
        fate = BuildFate(build)
        identity.setdefault("workflow_id", object_id(self.factory.rng))
        index = self.log.append(self.factory.codefresh(**identity))
        self.builds.record_signing(identity, fate)
        return index

    def append_github(self, **identity: Any) -> int:
        return self.log.append(self.factory.github(**identity))

    def append_forged(self, **identity: Any) -> int:
        """A Codefresh signing whose certificate comes from a CA that is not in the trusted root."""
        return self.log.append(self.factory.codefresh(ca=self.rogue_ca, **identity))

    async def append_unwatched(self, count: int) -> range:
        """Random signings of other identities, generated off the event loop."""
        bodies = await asyncio.to_thread(self.factory.unwatched_many, count)
        return self.log.append_many(bodies)

    def issue_only(self, **identity: Any) -> CtIssued:
        """A Codefresh certificate (codefresh_identity's arguments, workflow_id optional) that is
        logged in CT but signs nothing in the Rekor log: what a stolen token used quietly leaves."""
        identity.setdefault("workflow_id", object_id(self.factory.rng))
        issued = self.factory.issue(codefresh_identity(**identity))
        assert issued.precertificate is not None, "the factory logs its CA's certificates in CT"
        return CtIssued(self.ct.index_of(issued.precertificate), issued)


SIMULATOR = web.AppKey("simulator", Simulator)
SPLIT_VIEW = web.AppKey("split_view", SplitView)


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
    simulator = request.app[SIMULATOR]
    log = simulator.log
    info = shard_json(log, log.active)
    info["signedTreeHead"] = simulator.witnesses.cosigned(info["signedTreeHead"])
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
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"bad identity: {exc}") from None


async def control_ct_issue_only(request: web.Request) -> web.Response:
    """{codefresh_identity kwargs} -> a certificate logged in CT only: its CT index, serial and PEM."""
    kwargs = await json_object(request)
    try:
        ct_issued = request.app[SIMULATOR].issue_only(**kwargs)
    except TypeError as exc:
        raise ApiError(400, f"bad identity: {exc}") from None
    certificate = ct_issued.issued.certificate
    return web.json_response(
        {
            "ct_index": ct_issued.ct_index,
            "serial": f"{certificate.serial_number:x}",
            "certificate": ct_issued.issued.pem.decode(),
        }
    )


async def control_ct_fork(request: web.Request) -> web.Response:
    """{"at": leaf index}: rewrite that CT leaf, so later tree heads contradict earlier ones."""
    at = int_field(await json_object(request), "at")
    if at is None:
        raise ApiError(400, "at is required")
    try:
        request.app[SIMULATOR].ct.fork(at)
    except ValueError as exc:
        raise ApiError(400, f"cannot fork: {exc}") from None
    return web.json_response({"forked": at})


async def control_ct_max_entries(request: web.Request) -> web.Response:
    """{"count": N >= 1}: get-entries answers at most N entries, whatever was asked."""
    count = count_field(await json_object(request), "count", 1)
    if count < 1:
        raise ApiError(400, "count must be at least 1")
    request.app[SIMULATOR].ct.max_get_entries = count
    return web.json_response({"count": count})


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


async def get_build(request: web.Request) -> web.Response:
    builds = request.app[SIMULATOR].builds
    reply = builds.answer(request.match_info["workflow_id"], request.headers.get("Authorization"))
    return web.Response(body=reply.body, status=reply.status, headers=reply.headers, content_type="application/json")


async def control_builds_outage(request: web.Request) -> web.Response:
    """{"count": N, "retry_after": s|null}: the next N build requests answer 503."""
    spec = await json_object(request)
    builds = request.app[SIMULATOR].builds
    builds.start_outage(count_field(spec, "count", 1), int_field(spec, "retry_after"))
    return web.json_response({"remaining": builds.outage_remaining})


def workflow_id_field(spec: dict[str, Any]) -> str:
    workflow_id = spec.get("workflow_id")
    if not isinstance(workflow_id, str):
        raise ApiError(400, "workflow_id (a string) is required")
    return workflow_id


async def control_builds_forget(request: web.Request) -> web.Response:
    """{"workflow_id": id}: that build is unknown from now on."""
    workflow_id = workflow_id_field(await json_object(request))
    request.app[SIMULATOR].builds.forget(workflow_id)
    return web.json_response({"forgotten": workflow_id})


async def control_builds_move(request: web.Request) -> web.Response:
    """{"workflow_id": id}: that build belongs to another pipeline from now on."""
    workflow_id = workflow_id_field(await json_object(request))
    try:
        request.app[SIMULATOR].builds.move_to_pipeline(workflow_id)
    except KeyError:
        raise ApiError(404, "no such build") from None
    return web.json_response({"moved": workflow_id})


async def control_builds_requests(request: web.Request) -> web.Response:
    """How many build requests arrived, and each one's workflow id and answer status."""
    requests = request.app[SIMULATOR].builds.requests
    listed = [{"workflow_id": item.workflow_id, "status": item.status} for item in requests]
    return web.json_response({"count": len(requests), "requests": listed})


async def control_witnesses(request: web.Request) -> web.Response:
    """{"cosign": [names], "bad": [names]} (policy or key names; an absent key leaves its switch) -> the switches.

    On the split view's port after a split, these are the switches of the witnesses of the fork.
    """
    spec = await json_object(request)
    witnesses = request.app[SIMULATOR].witnesses
    try:
        witnesses.configure(cosign=optional_string_list(spec, "cosign"), bad=optional_string_list(spec, "bad"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(witnesses.state())


def optional_string_list(spec: dict[str, Any], name: str) -> list[str] | None:
    return None if spec.get(name) is None else string_list(spec, name)


async def control_split(request: web.Request) -> web.Response:
    """{"at": global index, "witnessed": bool (default false)}: the second port forks from `at` on."""
    spec = await json_object(request)
    at, witnessed = int_field(spec, "at"), spec.get("witnessed", False)
    if at is None or type(witnessed) is not bool:
        raise ApiError(400, "at (an integer) is required; witnessed must be true or false")
    try:
        request.app[SPLIT_VIEW].split(at, witnessed=witnessed)
    except ValueError as exc:
        raise ApiError(400, f"cannot split: {exc}") from None
    return web.json_response({"at": at, "witnessed": witnessed})


@web.middleware
async def mirror_honest_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the split view's port: bring the fork up to date with the honest log first."""
    request.app[SPLIT_VIEW].catch_up()
    return await handler(request)


@web.middleware
async def rekor_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response({"code": error.status, "message": error.message}, status=error.status)


def is_log_api(request: web.Request) -> bool:
    """The log's own API (and its CT log's), not the simulator's controls nor the Codefresh API."""
    return not request.path.startswith(("/sim/", BUILDS_PATH))


@web.middleware
async def added_latency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the log's API waits `Simulator.latency` first, as a distant log's would."""
    latency = request.app[SIMULATOR].latency
    if latency > 0 and is_log_api(request):
        await asyncio.sleep(latency)
    return await handler(request)


@web.middleware
async def injected_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Slow answers and error statuses for the log's API (never for /sim/ nor the builds API), while any
    are armed."""
    fault = request.app[SIMULATOR].faults.take() if is_log_api(request) else None
    if fault is None:
        return await handler(request)
    await asyncio.sleep(fault.delay)
    if fault.status is None:
        return await handler(request)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    message = {"code": fault.status, "message": "injected by the simulator"}
    return web.json_response(message, status=fault.status, headers=headers)


@web.middleware
async def hostile_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a hostile log sends instead of its answers, while any switch is on (never for /sim/)."""
    if request.path.startswith(("/sim/", BUILDS_PATH, request.app[SIMULATOR].ct.path)):
        return await handler(request)
    simulator = request.app[SIMULATOR]
    if endless_now(request, simulator.hostility):
        return await endless_answer(request)
    return await serve_hostile(request, simulator.hostility, simulator.log, await handler(request))


async def control_hostile(request: web.Request) -> web.Response:
    """See simulate/hostile.py; `{}` turns every switch off."""
    try:
        request.app[SIMULATOR].hostility.configure(await json_object(request))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"bad hostility: {exc}") from None
    return web.json_response({"ok": True})


def create_app(simulator: Simulator, split: SplitView | None = None) -> web.Application:
    """The app of the honest log, or, when `simulator` is `split.served`, of the split view's port."""
    serves_fork = split is not None and split.served is simulator
    middlewares = [
        *([mirror_honest_log] if serves_fork else []),
        rekor_errors,
        added_latency,
        injected_faults,
        hostile_answers,
    ]
    app = web.Application(middlewares=middlewares)
    app[SIMULATOR] = simulator
    if split is not None:
        app[SPLIT_VIEW] = split
        app.router.add_post("/sim/split", control_split)
    if not serves_fork:
        add_distributor_routes(app, Distributor(simulator.log, simulator.witnesses))
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
    app.router.add_get(BUILDS_PATH + "{workflow_id}", get_build)
    app.router.add_post("/sim/builds/outage", control_builds_outage)
    app.router.add_post("/sim/builds/forget", control_builds_forget)
    app.router.add_post("/sim/builds/move", control_builds_move)
    app.router.add_get("/sim/builds/requests", control_builds_requests)
    app.add_subapp(simulator.ct.path, ct_app(simulator.ct))
    app.router.add_post("/sim/ct/issue_only", control_ct_issue_only)
    app.router.add_post("/sim/ct/fork", control_ct_fork)
    app.router.add_post("/sim/ct/max_entries", control_ct_max_entries)
    app.router.add_post("/sim/faults", control_faults)
    app.router.add_post("/sim/append", control_append)
    app.router.add_post("/sim/forged", control_forged)
    app.router.add_post("/sim/rotate", control_rotate)
    app.router.add_post("/sim/fork", control_fork)
    app.router.add_post("/sim/wrong_key", control_wrong_key)
    app.router.add_post("/sim/hostile", control_hostile)
    app.router.add_post("/sim/witnesses", control_witnesses)
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
    codefresh_api_key_file: Path
    runner: web.AppRunner
    witness_policy: Path
    prefill: PopulateReport | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    split: SplitView | None = None
    split_url: str | None = None
    """The split view's port: the same log, forked on demand (`split.split(at)` or POST /sim/split)."""
    split_runner: web.AppRunner | None = None

    @property
    def log(self) -> SimLog:
        return self.simulator.log

    @property
    def ca(self) -> LocalCA:
        return self.simulator.ca

    @property
    def ct(self) -> SimCtLog:
        return self.simulator.ct

    @property
    def ct_url(self) -> str:
        return f"{self.url}{self.simulator.ct.path}"

    @property
    def faults(self) -> Faults:
        return self.simulator.faults

    @property
    def witnesses(self) -> WitnessPanel:
        return self.simulator.witnesses

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.split_runner is not None:
            await self.split_runner.cleanup()
        await self.runner.cleanup()


def prefill_log(simulator: Simulator, count: int) -> PopulateReport:
    """Generate `count` entries on every CPU before the log is served (the watched ones logged in CT)."""
    return populate(
        simulator.log,
        simulator.ca,
        count,
        workers=os.cpu_count() or 1,
        rekor_v2=simulator.log.tiles,
        ct=simulator.ct,
    )


def prefill_ct_log(simulator: Simulator, count: int) -> PopulateReport:
    """Log `count` precertificates in the CT log (and nothing in Rekor) on every CPU before serving."""
    return populate_ct(simulator.ct, simulator.ca, count, workers=os.cpu_count() or 1)


def authority_of(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(app: web.Application, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


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
    hostname: str | None = None,
    split_view: bool = False,
    ct_api: str = "rfc6962",
    ct_prefill: int = 0,
    latency_ms: float = 0.0,
) -> RunningSimulator:
    """Serve a fresh simulated log, Rekor v1 (`api="v1"`) or tlog-tiles (`api="tiles"`), with its CA's
    CT log (`ct_api` "rfc6962" or "static"); `ct_prefill` precertificates are logged in CT only. Its
    API answers each wait `latency_ms` first.

    Writes directory/trusted_root.json, signing_config.json and witness_policy.txt. `hostname`: a v1
    log's checkpoint key name and origin prefix, as a private deployment's `--rekor_server.hostname`
    (default: its address). With `split_view`, also serves the same log on a second (free) port of
    `host`: `split_url`, forked on demand.
    """
    if api not in APIS:
        raise ValueError(f"unknown API {api!r}; the simulator speaks {', '.join(APIS)}")
    if ct_api not in CT_APIS:
        raise ValueError(f"unknown CT API {ct_api!r}; the simulator speaks {', '.join(CT_APIS)}")
    if latency_ms < 0:
        raise ValueError(f"latency_ms must not be negative, not {latency_ms}")
    sock = bound_socket(host, port)
    authority = authority_of(host, sock.getsockname()[1])
    log = SimLog.tiles_log(authority) if api == "tiles" else SimLog(authority, hostname=hostname)
    simulator = Simulator(log, LocalCA.generate(), ct_api=ct_api, latency=latency_ms / 1000)
    if ct_prefill:
        await asyncio.to_thread(prefill_ct_log, simulator, ct_prefill)
    report = await asyncio.to_thread(prefill_log, simulator, prefill) if prefill else None
    url = f"http://{authority}"
    trust_files = write_trust_files(directory, url, simulator.log, simulator.ca, simulator.ct)
    key_file = write_codefresh_api_key(directory, simulator.builds.api_key)
    witness_policy = simulator.witnesses.write_policy(directory)
    split = None
    if split_view:
        served = Simulator(log, simulator.ca, rogue_ca=simulator.rogue_ca, witnesses=simulator.witnesses, ct_api=ct_api)
        split = SplitView(simulator, served)
    runner = await serve(create_app(simulator, split), sock)
    running = RunningSimulator(
        url=url,
        simulator=simulator,
        trust_files=trust_files,
        codefresh_api_key_file=key_file,
        runner=runner,
        witness_policy=witness_policy,
        prefill=report,
        split=split,
    )
    if split is not None:
        split_sock = bound_socket(host, 0)
        running.split_url = f"http://{authority_of(host, split_sock.getsockname()[1])}"
        running.split_runner = await serve(create_app(split.served, split), split_sock)
    if rate > 0:
        running.background.append(asyncio.create_task(append_at_rate(simulator, rate)))
    return running


def write_codefresh_api_key(directory: Path, key: str) -> Path:
    """DIR/codefresh_api_key, readable by its owner only: the key the builds API accepts."""
    path = directory / CODEFRESH_API_KEY_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key)
    return path


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
    split_view: bool = False,
    ct_api: str = "rfc6962",
    ct_prefill: int = 0,
    latency_ms: float = 0.0,
) -> None:
    """Serve until SIGINT or SIGTERM, announcing where the log, its trust root and its witnesses are."""
    running = await start_simulator(
        host=host,
        port=port,
        directory=directory,
        api=api,
        rate=rate,
        prefill=prefill,
        split_view=split_view,
        ct_api=ct_api,
        ct_prefill=ct_prefill,
        latency_ms=latency_ms,
    )
    if running.prefill is not None:
        announce(f"prefilled {running.prefill.count} entries in {running.prefill.seconds:.1f}s")
    announce(f"{'tlog-tiles (rekor v2)' if api == 'tiles' else 'rekor v1'} simulator at {running.url}")
    announce(f"{ct_api} CT log at {running.ct_url} ({running.ct.size} entries)")
    announce(f"trusted root: {running.trust_files.trusted_root}")
    announce(f"signing config: {running.trust_files.signing_config}")
    announce(f"codefresh builds API: {running.url}{BUILDS_PATH}<workflow id>")
    announce(f"codefresh API key ({running.codefresh_api_key_file}): {running.simulator.builds.api_key}")
    for witness in running.witnesses.witnesses:
        announce(f"witness {witness.name}: {witness.vkey}")
    announce(f"witness policy: {running.witness_policy}")
    announce(f"distributor: {running.url}/distributor/v0/logs")
    if running.split_url is not None:
        announce(f'split view (POST /sim/split {{"at": N}} to fork it): {running.split_url}')
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
