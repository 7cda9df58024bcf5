"""An in-memory, sharded RFC 6962 log that builds its own proofs and signs its own checkpoints.

A `Shard` stores every complete perfect subtree hash, level by level, as leaves arrive, so the root
at any size, inclusion proofs and consistency proofs cost O(log n) stored hashes plus at most
O(log² n) node hashes. `SimLog` is Rekor v1's view: a chain of shards addressed by global index, a
P-256 log key, signed checkpoints and signed entry timestamps. `SimLog.tiles_log` is Rekor v2's: one
tree, an Ed25519 key, the bare name as origin (its tiles are served by simulate/tiles.py).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from monitor.simulate.entries import canonical
from monitor.tlog.merkle import leaf_hash, node_hash
from monitor.tlog.note import SigningKey, format_checkpoint_body, sign_note

ED25519_NOTE_KEY_TYPE = b"\x01"
MAX_PARTIAL_HASHES = 1 << 14  # memoised imperfect-subtree hashes per shard; the memo is dropped when full


def largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): RFC 6962's split point."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass
class Shard:
    """One Merkle tree (a Trillian tree in Rekor terms).

    `levels[k][i]` is the hash of the perfect subtree over leaves [i·2^k, (i+1)·2^k); only complete
    subtrees are stored, so level k holds size >> k hashes.

    Two caches ride along (`replace` drops what it invalidates): `partial_hashes`, the hashes of
    imperfect ranges already computed (appending never changes them), and `entry_timestamps`, the
    signed entry timestamps `SimLog` made for these leaves, by index.
    """

    tree_id: int
    levels: list[list[bytes]] = field(default_factory=lambda: [[]])
    bodies: list[bytes] = field(default_factory=list)
    integrated_times: list[int] = field(default_factory=list)
    index_by_leaf_hash: dict[bytes, int] = field(default_factory=dict)
    partial_hashes: dict[tuple[int, int], bytes] = field(default_factory=dict, repr=False, compare=False)
    entry_timestamps: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.bodies)

    def append(self, body: bytes, integrated_time: int) -> int:
        """Add a leaf; returns its index in this shard."""
        index = self.size
        hashed = leaf_hash(body)
        self.bodies.append(body)
        self.integrated_times.append(integrated_time)
        self.index_by_leaf_hash.setdefault(hashed, index)
        self.levels[0].append(hashed)
        self.complete_subtrees_ending_at(index)
        return index

    def complete_subtrees_ending_at(self, index: int) -> None:
        """After leaf `index` arrives, store each perfect subtree it completes, bottom up."""
        level = 0
        while index % 2 == 1:
            if len(self.levels) == level + 1:
                self.levels.append([])
            below = self.levels[level]
            self.levels[level + 1].append(node_hash(below[index - 1], below[index]))
            level, index = level + 1, index // 2

    def replace(self, index: int, body: bytes) -> None:
        """Rewrite history: put another body at `index` and recompute the stored hashes above it."""
        old = self.levels[0][index]
        if self.index_by_leaf_hash.get(old) == index:
            del self.index_by_leaf_hash[old]
        self.bodies[index] = body
        self.levels[0][index] = leaf_hash(body)
        self.index_by_leaf_hash.setdefault(self.levels[0][index], index)
        self.partial_hashes.clear()
        self.entry_timestamps.pop(index, None)
        for level in range(1, len(self.levels)):
            node = index >> level
            if node >= len(self.levels[level]):
                break
            below = self.levels[level - 1]
            self.levels[level][node] = node_hash(below[2 * node], below[2 * node + 1])

    def copy(self) -> Shard:
        """An independent copy of the tree (its caches are not copied)."""
        return Shard(
            self.tree_id,
            levels=[list(level) for level in self.levels],
            bodies=list(self.bodies),
            integrated_times=list(self.integrated_times),
            index_by_leaf_hash=dict(self.index_by_leaf_hash),
        )

    def leaf_hash_at(self, index: int) -> bytes:
        return self.levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """The RFC 6962 root of the first `size` leaves (default: all)."""
        size = self.size if size is None else size
        self.check_size(size)
        if size == 0:
            return hashlib.sha256(b"").digest()
        return self.range_hash(0, size)

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), where start is a multiple of a power of two >= end - start.

        A perfect range is a stored hash; an imperfect one is computed once, then memoised.
        """
        width = end - start
        if width & (width - 1) == 0:
            level = width.bit_length() - 1
            return self.levels[level][start >> level]
        cached = self.partial_hashes.get((start, end))
        if cached is None:
            split = start + largest_power_of_two_below(width)
            cached = node_hash(self.range_hash(start, split), self.range_hash(split, end))
            if len(self.partial_hashes) >= MAX_PARTIAL_HASHES:
                self.partial_hashes.clear()
            self.partial_hashes[(start, end)] = cached
        return cached

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf to root.

        Computed bottom up, as transparency-dev/merkle does: below level `inner` (where the paths to
        `index` and to the last leaf meet) every sibling is a complete subtree, a stored hash, except
        the topmost, which holds the last leaf and may be partial (memoised by `range_hash`); above
        it the path runs along the right border, whose nodes that are right children have a
        complete left sibling.
        """
        self.check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        levels = self.levels
        inner = (index ^ (size - 1)).bit_length()
        proof = [levels[level][(index >> level) ^ 1] for level in range(inner - 1)]
        if inner:
            top = inner - 1
            proof.append(self.range_hash(((index >> top) | 1) << top, size))
        node, level = index >> inner, inner
        while node:
            if node & 1:
                proof.append(levels[level][node - 1])
            node, level = node >> 1, level + 1
        return proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]); empty when the sizes are equal."""
        self.check_size(size2)
        if not 0 < size1 <= size2:
            raise ValueError(f"no consistency proof from size {size1} to {size2}")
        return self.subproof(size1, 0, size2, complete=True)

    def subproof(self, size1: int, start: int, end: int, *, complete: bool) -> list[bytes]:
        """SUBPROOF(size1, D[start:end], complete): `complete` means [start, start+size1) is a known root."""
        if start + size1 == end:
            return [] if complete else [self.range_hash(start, end)]
        split = start + largest_power_of_two_below(end - start)
        if start + size1 <= split:
            return [*self.subproof(size1, start, split, complete=complete), self.range_hash(split, end)]
        tail = self.subproof(size1 - (split - start), split, end, complete=False)
        return [*tail, self.range_hash(start, split)]

    def check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree {self.tree_id} has {self.size} leaves, not {size}")


@dataclass(frozen=True)
class LeafLocation:
    shard: Shard
    index: int
    global_index: int


def rewritten(body: bytes) -> bytes:
    """Another entry in place of `body`: the same with a trailing newline, still decodable, another leaf hash."""
    return body + b"\n"


def new_tree_id() -> int:
    """A positive signed 64-bit id, as Trillian allocates them."""
    return secrets.randbelow(2**63 - 1) + 1


def new_key_like(key: SigningKey) -> SigningKey:
    """A fresh key of the same algorithm."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def spki_der(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def entry_timestamp(
    key: ec.EllipticCurvePrivateKey, log_id: bytes, body: bytes, integrated_time: int, global_index: int
) -> bytes:
    """Rekor v1's signed entry timestamp: ASN.1 ECDSA over the JCS form of
    {body, integratedTime, logID, logIndex (global)}."""
    payload = {
        "body": base64.b64encode(body).decode(),
        "integratedTime": integrated_time,
        "logID": log_id.hex(),
        "logIndex": global_index,
    }
    return key.sign(canonical(payload), ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class SignedHead:
    """A shard's size and root, and a checkpoint for them signed by `signer`."""

    size: int
    root: bytes
    checkpoint: str
    signer: SigningKey = field(repr=False, compare=False)


@dataclass
class SimLog:
    """A Rekor v1 log: inactive shards (oldest first) then the active one, all signed by one key.

    `name` is the scheme-less base URL; it is the checkpoint key name and the origin's prefix,
    unless `hostname` is set: a private Rekor v1 signs under its `--rekor_server.hostname` flag
    (e.g. `rekor-0`), which need not be the address it is reached at.
    With `tiles` set it is a Rekor v2 (tlog-tiles) log instead: one tree, origin = name.
    """

    name: str
    key: SigningKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    inactive: list[Shard] = field(default_factory=list)
    active: Shard = field(default_factory=lambda: Shard(new_tree_id()))
    final_checkpoints: dict[int, str] = field(default_factory=dict)
    checkpoint_key: SigningKey | None = None
    tiles: bool = False
    hostname: str | None = None
    # Caches, each checked against the key it was made with: (key, SPKI DER, log id), the key the
    # shards' entry_timestamps were signed with, and each shard's last signed head for entry answers.
    _key_ids: tuple[SigningKey, bytes, bytes] | None = field(default=None, init=False, repr=False, compare=False)
    _timestamps_key: SigningKey | None = field(default=None, init=False, repr=False, compare=False)
    _entry_heads: dict[int, SignedHead] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def tiles_log(cls, name: str) -> SimLog:
        """A Rekor v2 log, signing its checkpoints with Ed25519 as rekor-tiles does."""
        return cls(name, key=ed25519.Ed25519PrivateKey.generate(), tiles=True)

    @property
    def shards(self) -> list[Shard]:
        return [*self.inactive, self.active]

    @property
    def size(self) -> int:
        """The global size: every leaf of every shard."""
        return sum(shard.size for shard in self.shards)

    @property
    def spki_der(self) -> bytes:
        return self.key_ids()[0]

    @property
    def log_id(self) -> bytes:
        """The trusted root's keyId: the full signed-note key id (FORMATS.md §3).

        For ECDSA that is SHA-256 of the SPKI DER, also Rekor v1's logID; for Ed25519 it is
        SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw public key).
        """
        return self.key_ids()[1]

    def key_ids(self) -> tuple[bytes, bytes]:
        """(SPKI DER, log id) of the log key, computed once per key."""
        cached = self._key_ids
        if cached is None or cached[0] is not self.key:
            spki = spki_der(self.key)
            if isinstance(self.key, ed25519.Ed25519PrivateKey):
                raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                log_id = hashlib.sha256(self.name.encode() + b"\n" + ED25519_NOTE_KEY_TYPE + raw).digest()
            else:
                log_id = hashlib.sha256(spki).digest()
            cached = self._key_ids = (self.key, spki, log_id)
        return cached[1], cached[2]

    def public_key_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def append(self, body: bytes, integrated_time: int | None = None) -> int:
        """Add an entry to the active shard; returns its global index."""
        offset = self.size - self.active.size
        when = int(time.time()) if integrated_time is None else integrated_time
        return offset + self.active.append(body, when)

    def append_many(
        self,
        bodies: Iterable[bytes],
        *,
        integrated_time: int | None = None,
        entry_timestamps: Sequence[bytes] | None = None,
    ) -> range:
        """Add entries in order, all with one time (default: now); returns their global indexes.

        `entry_timestamps`, if given, are the entries' signed entry timestamps made elsewhere (by
        populate's workers) with this log's key, for exactly these global indexes and this time.
        """
        first, start = self.size, self.active.size
        now = int(time.time()) if integrated_time is None else integrated_time
        for body in bodies:
            self.active.append(body, now)
        if entry_timestamps is not None:
            timestamps = self.timestamps_of(self.active)
            for offset, signature in enumerate(entry_timestamps):
                timestamps[start + offset] = signature
        return range(first, self.size)

    def rotate_shard(self) -> Shard:
        """Freeze the active shard (its final checkpoint is cached) and start a new, empty tree."""
        if self.tiles:
            raise ValueError("a tiles log has one tree: new shards are new logs at new URLs")
        frozen = self.active
        self.final_checkpoints[frozen.tree_id] = self.checkpoint(frozen)
        self.inactive.append(frozen)
        taken = {shard.tree_id for shard in self.shards}
        tree_id = new_tree_id()
        while tree_id in taken:
            tree_id = new_tree_id()
        self.active = Shard(tree_id)
        return self.active

    def fork(self, at: int, body: bytes | None = None) -> None:
        """Rewrite the active shard's leaf at global index `at`, so later checkpoints are inconsistent.

        The default replacement is `rewritten(original)`.
        """
        location = self.locate(at)
        if location is None or location.shard is not self.active:
            raise ValueError(f"global index {at} is not in the active shard")
        original = location.shard.bodies[location.index]
        location.shard.replace(location.index, body if body is not None else rewritten(original))

    def copy(self) -> SimLog:
        """Another log with the same name, key, shards and history, which then lives its own life."""
        return SimLog(
            self.name,
            key=self.key,
            inactive=[shard.copy() for shard in self.inactive],
            active=self.active.copy(),
            final_checkpoints=dict(self.final_checkpoints),
            checkpoint_key=self.checkpoint_key,
            tiles=self.tiles,
        )

    def sign_with_wrong_key(self, enabled: bool) -> None:
        """Sign checkpoints (under the same key name) with a key that is not in the trust root."""
        self.checkpoint_key = new_key_like(self.key) if enabled else None

    def shard_by_tree_id(self, tree_id: int) -> Shard | None:
        return next((shard for shard in self.shards if shard.tree_id == tree_id), None)

    def locate(self, global_index: int) -> LeafLocation | None:
        """Rekor's ResolveVirtualIndex: walk the shards oldest first, subtracting their lengths."""
        if global_index < 0:
            return None
        index = global_index
        for shard in self.shards:
            if index < shard.size:
                return LeafLocation(shard, index, global_index)
            index -= shard.size
        return None

    def find_leaf(self, hashed: bytes, tree_id: int | None = None) -> LeafLocation | None:
        """The entry with this leaf hash, in the given tree or in any."""
        offset = 0
        for shard in self.shards:
            index = shard.index_by_leaf_hash.get(hashed)
            if index is not None and tree_id in (None, shard.tree_id):
                return LeafLocation(shard, index, offset + index)
            offset += shard.size
        return None

    @property
    def key_name(self) -> str:
        return self.hostname or self.name

    def origin(self, shard: Shard) -> str:
        return self.name if self.tiles else f"{self.key_name} - {shard.tree_id}"

    def checkpoint(self, shard: Shard, size: int | None = None) -> str:
        """The signed note for `shard` at `size` (default: now). A frozen shard's final one is cached."""
        size = shard.size if size is None else size
        cached = self.final_checkpoints.get(shard.tree_id)
        if cached is not None and size == shard.size:
            return cached
        body = format_checkpoint_body(self.origin(shard), size, shard.root(size))
        return sign_note(body, self.key_name, self.checkpoint_key or self.key)

    def entry_head(self, shard: Shard) -> SignedHead:
        """The shard's current size and root with a checkpoint, for entry answers.

        Unlike `checkpoint` (GET /api/v1/log re-signs on every call, as Rekor does), this one is
        signed once per (size, root, signing key) and reused: a fork changes the root and wrong-key
        mode the key, so neither is ever answered with a checkpoint made before it.
        """
        size = shard.size
        root = shard.root(size)
        signer = self.checkpoint_key or self.key
        head = self._entry_heads.get(shard.tree_id)
        if head is None or head.signer is not signer or head.size != size or head.root != root:
            head = SignedHead(size, root, self.checkpoint(shard, size), signer)
            self._entry_heads[shard.tree_id] = head
        return head

    def timestamps_of(self, shard: Shard) -> dict[int, bytes]:
        """The shard's signed entry timestamps, all dropped first if the log key is not the one they were made with."""
        if self._timestamps_key is not self.key:
            for each in self.shards:
                each.entry_timestamps.clear()
            self._timestamps_key = self.key
        return shard.entry_timestamps

    def signed_entry_timestamp(self, location: LeafLocation) -> bytes:
        """ASN.1 ECDSA over the JCS form of {body, integratedTime, logID, logIndex (global)}, signed once per leaf."""
        if not isinstance(self.key, ec.EllipticCurvePrivateKey):
            raise ValueError("only a Rekor v1 (ECDSA) log signs entry timestamps")
        shard, index = location.shard, location.index
        timestamps = self.timestamps_of(shard)
        signature = timestamps.get(index)
        if signature is None:
            body, integrated_time = shard.bodies[index], shard.integrated_times[index]
            signature = entry_timestamp(self.key, self.log_id, body, integrated_time, location.global_index)
            timestamps[index] = signature
        return signature
