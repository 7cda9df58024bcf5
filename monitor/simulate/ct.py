"""The simulator's Certificate Transparency log: what Fulcio's CT log is to Fulcio, RFC 6962 or static-ct-api.

The CA submits every precertificate it signs (`log_precertificate`): the log appends the precert
leaf at once and answers the SCT, signed over that same MerkleTreeLeaf, which the CA embeds in the
certificate. A static-ct-api log puts the leaf index in the leaf's (and so the SCT's) extensions.

Served under the simulator's port (FORMATS.md §8): RFC 6962 at `CT_PATH` (`/ct/2022/ct/v1/get-sth`,
`get-sth-consistency`, `get-entries`, `get-proof-by-hash`), static-ct-api at `STATIC_CT_PATH`
(`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/data/<N>[.p/<W>]`, `/issuer/<sha256 hex>`). Tree
heads are signed once per tree (size, root). Misbehaviour on demand: `max_get_entries` truncates
get-entries answers (as real logs do), `fork` rewrites a leaf so later tree heads contradict earlier
ones. The CA may log from a worker thread (`Simulator.append_unwatched`): every method takes the
log's lock, so an answer never sees a half-appended leaf.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.simulate.ca import Precertificate, new_p256_key
from monitor.simulate.log import Shard, spki_der
from monitor.simulate.tiles import TILE_WIDTH, TileAddress, octets, parse_tile_address, shard_hash_tile
from monitor.tlog.ct import (
    PRECERT_ENTRY,
    ExtraData,
    TimestampedEntry,
    encode_extra_data,
    encode_tile_leaf,
    leaf_index_extensions,
    merkle_tree_leaf,
)
from monitor.tlog.ct_head import ct_note, sign_digitally, tree_head_signed_data

CT_PATH = "/ct/2022"
STATIC_CT_PATH = "/ctstatic"
CT_APIS = ("rfc6962", "static")
MAX_GET_ENTRIES = 1000
SCT_VERSION = 0

CtLeaf = tuple[bytes, bytes]  # (MerkleTreeLeaf, precertificate DER)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def serialize_sct(log_id: bytes, timestamp: int, extensions: bytes, signature: bytes) -> bytes:
    """An RFC 6962 SignedCertificateTimestamp: version ‖ log id ‖ timestamp ‖ extensions<u16> ‖ DigitallySigned."""
    head = bytes([SCT_VERSION]) + log_id + timestamp.to_bytes(8, "big") + len(extensions).to_bytes(2, "big")
    return head + extensions + signature


def precert_entry(precertificate: Precertificate, issuer_key_hash: bytes, index: int | None) -> TimestampedEntry:
    """The entry of a precertificate logged now, at `index` for a static-ct-api log (else None)."""
    extensions = b"" if index is None else leaf_index_extensions(index)
    return TimestampedEntry(now_ms(), PRECERT_ENTRY, precertificate.leaf_tbs, issuer_key_hash, extensions)


def stamp_precertificate(
    key: ec.EllipticCurvePrivateKey, log_id: bytes, index: int | None, precertificate: Precertificate, issuer: bytes
) -> tuple[bytes, bytes]:
    """(MerkleTreeLeaf, SCT) of a precertificate logged now: the SCT signs the leaf's bytes."""
    entry = precert_entry(precertificate, issuer, index)
    leaf = merkle_tree_leaf(entry)
    return leaf, serialize_sct(log_id, entry.timestamp, entry.extensions, sign_digitally(key, leaf))


@dataclass
class CtStamper:
    """Logs precertificates away from the log (in populate's workers): signs their SCTs with the log's
    key, numbering them from `next_index` (static-ct-api), and keeps the leaves for the log to append."""

    key: ec.EllipticCurvePrivateKey
    static: bool
    next_index: int
    leaves: list[CtLeaf] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_id = hashlib.sha256(spki_der(self.key)).digest()

    def log_precertificate(self, precertificate: Precertificate, issuer_key_hash: bytes) -> bytes:
        index = self.next_index if self.static else None
        leaf, sct = stamp_precertificate(self.key, self.log_id, index, precertificate, issuer_key_hash)
        self.leaves.append((leaf, precertificate.der))
        self.next_index += 1
        return sct


@dataclass(frozen=True)
class SignedCtHead:
    size: int
    timestamp: int
    root: bytes
    signature: bytes  # TLS DigitallySigned


@dataclass
class SimCtLog:
    """One CT log: a Merkle tree of precert leaves (their precertificates beside), signed by a P-256 key.

    `name` is the scheme-less base URL (the checkpoint origin), `path` where it is served, `chain` the
    CA certificates every precertificate was submitted with (intermediate first).
    """

    name: str
    path: str
    chain: tuple[bytes, ...]
    static: bool = False
    key: ec.EllipticCurvePrivateKey = field(default_factory=new_p256_key)
    tree: Shard = field(default_factory=lambda: Shard(0))
    pre_certificates: list[bytes] = field(default_factory=list)
    max_get_entries: int = MAX_GET_ENTRIES
    _head: SignedCtHead | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.spki_der = spki_der(self.key)
        self.log_id = hashlib.sha256(self.spki_der).digest()
        self.fingerprints = tuple(hashlib.sha256(der).digest() for der in self.chain)

    @property
    def size(self) -> int:
        return self.tree.size

    def log_precertificate(self, precertificate: Precertificate, issuer_key_hash: bytes) -> bytes:
        """Append the precertificate's leaf now; the SCT for the certificate."""
        with self._lock:
            index = self.tree.size if self.static else None
            leaf, sct = stamp_precertificate(self.key, self.log_id, index, precertificate, issuer_key_hash)
            self._append(leaf, precertificate.der)
            return sct

    def append_leaves(self, first: int, leaves: Sequence[CtLeaf]) -> range:
        """Append leaves made by a stamper from index `first`, which must be where the log ends now."""
        with self._lock:
            if self.static and leaves and first != self.tree.size:
                raise ValueError(f"leaves stamped from index {first} cannot go at {self.tree.size}")
            start = self.tree.size
            for leaf, precertificate in leaves:
                self._append(leaf, precertificate)
            return range(start, self.tree.size)

    def _append(self, leaf: bytes, precertificate: bytes) -> None:
        self.tree.append(leaf, 0)
        self.pre_certificates.append(precertificate)

    def index_of(self, precertificate: bytes) -> int:
        """Where a precertificate was logged (searched from the newest leaf)."""
        with self._lock:
            for index in range(self.tree.size - 1, -1, -1):
                if self.pre_certificates[index] == precertificate:
                    return index
        raise ValueError("this precertificate is not in the log")

    def fork(self, at: int) -> None:
        """Rewrite leaf `at` (its timestamp + 1 ms): every tree head from now on contradicts the earlier ones."""
        with self._lock:
            if not 0 <= at < self.tree.size:
                raise ValueError(f"no leaf {at} in a tree of {self.tree.size}")
            leaf = self.tree.bodies[at]
            timestamp = int.from_bytes(leaf[2:10], "big") + 1
            self.tree.replace(at, leaf[:2] + timestamp.to_bytes(8, "big") + leaf[10:])

    def tamper_extra_data(self, at: int, like: int) -> None:
        """Serve leaf `at` with the precertificate of leaf `like` in its extra data: extra data that
        does not match the leaf (the tree itself is untouched: extra data is not in it)."""
        with self._lock:
            self.pre_certificates[at] = self.pre_certificates[like]

    def signed_head(self) -> SignedCtHead:
        """The current tree head, signed once per (size, root)."""
        with self._lock:
            size = self.tree.size
            root = self.tree.root(size)
            head = self._head
            if head is None or (head.size, head.root) != (size, root):
                timestamp = now_ms()
                signature = sign_digitally(self.key, tree_head_signed_data(timestamp, size, root))
                head = self._head = SignedCtHead(size, timestamp, root, signature)
            return head

    def sth(self) -> dict[str, object]:
        head = self.signed_head()
        return {
            "tree_size": head.size,
            "timestamp": head.timestamp,
            "sha256_root_hash": base64.b64encode(head.root).decode(),
            "tree_head_signature": base64.b64encode(head.signature).decode(),
        }

    def checkpoint(self) -> str:
        head = self.signed_head()
        return ct_note(self.name, self.log_id, head.size, head.timestamp, head.root, head.signature)

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self._lock:
            return self.tree.consistency_proof(first, second)

    def proof_by_hash(self, leaf_hash: bytes, tree_size: int) -> tuple[int, list[bytes]] | None:
        with self._lock:
            index = self.tree.index_by_leaf_hash.get(leaf_hash)
            if index is None or index >= tree_size:
                return None
            return index, self.tree.inclusion_proof(index, tree_size)

    def get_entries(self, start: int, end: int) -> str:
        """get-entries [start, end] (inclusive) as JSON text: at most `max_get_entries` of them."""
        with self._lock:
            stop = min(end + 1, self.tree.size, start + self.max_get_entries)
            items = [
                f'{{"leaf_input": "{_b64(self.tree.bodies[index])}", "extra_data": "{_b64(self.extra_data(index))}"}}'
                for index in range(start, stop)
            ]
        return f'{{"entries": [{", ".join(items)}]}}'

    def extra_data(self, index: int) -> bytes:
        """get-entries' extra_data of leaf `index`: its precertificate and the CA chain."""
        return encode_extra_data(ExtraData(self.pre_certificates[index], self.chain))

    def hash_tile(self, level: int, address: TileAddress) -> bytes | None:
        with self._lock:
            return shard_hash_tile(self.tree, level, address)

    def data_tile(self, address: TileAddress) -> bytes | None:
        """The TileLeafs of level-0 tile `address.index`, if the tree holds `address.width` of them."""
        indexes = range(address.index * TILE_WIDTH, address.index * TILE_WIDTH + address.width)
        with self._lock:
            if indexes.stop > self.tree.size:
                return None
            return b"".join(
                encode_tile_leaf(self.tree.bodies[index], ExtraData(self.pre_certificates[index], self.fingerprints))
                for index in indexes
            )

    def issuer(self, fingerprint_hex: str) -> bytes | None:
        for der, fingerprint in zip(self.chain, self.fingerprints, strict=True):
            if fingerprint.hex() == fingerprint_hex:
                return der
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- HTTP ------------------------------------------------------------------------------------------

CT_LOG = web.AppKey("ct_log", SimCtLog)


def _int_query(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text.isdecimal() or len(text) > 19:
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer")
    return int(text)


async def get_sth(request: web.Request) -> web.Response:
    return web.json_response(request.app[CT_LOG].sth())


async def get_sth_consistency(request: web.Request) -> web.Response:
    log = request.app[CT_LOG]
    first, second = _int_query(request, "first"), _int_query(request, "second")
    if not 0 < first <= second <= log.size:
        raise web.HTTPBadRequest(text=f"no consistency proof from {first} to {second} in a tree of {log.size}")
    return web.json_response({"consistency": [_b64(item) for item in log.consistency(first, second)]})


async def get_entries(request: web.Request) -> web.Response:
    log = request.app[CT_LOG]
    start, end = _int_query(request, "start"), _int_query(request, "end")
    if not start <= end or start >= log.size:
        raise web.HTTPBadRequest(text=f"no entries [{start}, {end}] in a tree of {log.size}")
    return web.Response(text=log.get_entries(start, end), content_type="application/json")


async def get_proof_by_hash(request: web.Request) -> web.Response:
    log = request.app[CT_LOG]
    tree_size = _int_query(request, "tree_size")
    try:
        leaf_hash = base64.b64decode(request.query.get("hash", ""), validate=True)
    except ValueError:
        raise web.HTTPBadRequest(text="hash must be base64") from None
    if not 0 < tree_size <= log.size:
        raise web.HTTPBadRequest(text=f"tree_size {tree_size} is not in a tree of {log.size}")
    found = log.proof_by_hash(leaf_hash, tree_size)
    if found is None:
        raise web.HTTPNotFound(text="no leaf with this hash in that tree")
    index, path = found
    return web.json_response({"leaf_index": index, "audit_path": [_b64(item) for item in path]})


async def get_checkpoint(request: web.Request) -> web.Response:
    return web.Response(text=request.app[CT_LOG].checkpoint(), content_type="text/plain", charset="utf-8")


async def get_hash_tile(request: web.Request) -> web.Response:
    address = parse_tile_address(request.match_info["address"])
    level = request.match_info["level"]
    if address is None or not level.isdecimal() or len(level) > 2:
        raise web.HTTPNotFound()
    return octets(request.app[CT_LOG].hash_tile(int(level), address))


async def get_data_tile(request: web.Request) -> web.Response:
    address = parse_tile_address(request.match_info["address"])
    if address is None:
        raise web.HTTPNotFound()
    return octets(request.app[CT_LOG].data_tile(address))


async def get_issuer(request: web.Request) -> web.Response:
    der = request.app[CT_LOG].issuer(request.match_info["fingerprint"])
    if der is None:
        raise web.HTTPNotFound()
    return web.Response(body=der, content_type="application/pkix-cert")


def ct_app(log: SimCtLog) -> web.Application:
    """The log's routes, to mount at `log.path` on the simulator's application."""
    app = web.Application()
    app[CT_LOG] = log
    if log.static:
        app.router.add_get("/checkpoint", get_checkpoint)
        app.router.add_get("/tile/data/{address:.+}", get_data_tile)
        app.router.add_get("/tile/{level:[0-9]+}/{address:.+}", get_hash_tile)
        app.router.add_get("/issuer/{fingerprint:[0-9a-f]{64}}", get_issuer)
    else:
        app.router.add_get("/ct/v1/get-sth", get_sth)
        app.router.add_get("/ct/v1/get-sth-consistency", get_sth_consistency)
        app.router.add_get("/ct/v1/get-entries", get_entries)
        app.router.add_get("/ct/v1/get-proof-by-hash", get_proof_by_hash)
    return app


def new_ct_log(authority: str, chain: Sequence[bytes], api: str) -> SimCtLog:
    """A CT log served at http://<authority><path>, RFC 6962 (`api="rfc6962"`) or static-ct-api."""
    if api not in CT_APIS:
        raise ValueError(f"unknown CT API {api!r}; the simulator speaks {', '.join(CT_APIS)}")
    path = STATIC_CT_PATH if api == "static" else CT_PATH
    return SimCtLog(f"{authority}{path}", path, tuple(chain), static=api == "static")
