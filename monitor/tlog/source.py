"""One interface over the two log APIs, so the tail, store, metrics and API treat both alike.

A source only fetches; it verifies nothing. What it returns (checkpoints, proofs, entries) is
checked by the tail against the trust root: a v1 log's proofs come from its server, a tiles log's
are computed from its tiles, and either way a lie fails verification.

Shards: a Rekor v1 log lists its retired trees (`inactiveShards`); global index = the sizes of the
earlier shards + the leaf index. A tiles log is one tree (tree id ""); its successors are other
logs (other URLs), found in the trust root.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, overload

from monitor.tlog.entry_bundle import EntryBundle
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.merkle import HASH_SIZE
from monitor.tlog.rekor_v1 import RekorV1Client
from monitor.tlog.rekor_v1_entries import RekorEntry, RetrieveAnswer
from monitor.tlog.tiles import TilesClient

MISSING_ENTRY_RETRIES = 5
MAX_GLOBAL_INDEX = 2**63 - 1


class SourceEntry(Protocol):
    """What the tail and the recorder read of an entry, whichever API served it."""

    @property
    def log_index(self) -> int: ...  # global
    @property
    def body(self) -> bytes: ...
    @property
    def leaf_hash(self) -> bytes: ...
    @property
    def uuid(self) -> str | None: ...
    @property
    def integrated_time(self) -> int | None: ...  # unverified: only a SET proves it
    @property
    def log_id(self) -> bytes: ...
    @property
    def signed_entry_timestamp(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class TileEntry:
    """A tiles-log entry: the bundle bytes only (no integratedTime, no SET in Rekor v2)."""

    log_index: int
    body: bytes
    leaf_hash: bytes
    log_id: bytes = b""
    integrated_time: int | None = None
    signed_entry_timestamp: bytes | None = None

    @property
    def uuid(self) -> str:
        return self.leaf_hash.hex()


@dataclass(frozen=True)
class FetchedBundles:
    """A chunk of a tiles log as its entry bundles came, unsplit (a tiles log is one tree: an entry's
    index in it is its global index). The decode process splits them where it analyses the entries
    (entry_bundle.bundled_entries); the bodies of the entries with outcomes come back (`kept`)."""

    first: int
    urls: list[str]
    bundles: list[EntryBundle]
    log_id: bytes

    def kept(self, bodies: dict[int, bytes], leaf_hashes: bytes) -> KeptEntries:
        """The chunk's entries with these bodies (by position), given every entry's leaf hash."""

        entries = {
            position: TileEntry(
                self.first + position, body, leaf_hashes[position * HASH_SIZE : (position + 1) * HASH_SIZE], self.log_id
            )
            for position, body in bodies.items()
        }
        return KeptEntries(len(leaf_hashes) // HASH_SIZE, entries)


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk of a Rekor v1 log as its retrieve answers came, unparsed. The decode process reads
    them where it analyses the entries (rekor_v1_entries.chunk_entries); a decode process empties
    `answers` once they are sent (a chunk's answers weigh 2.4 times its bodies: the base64, the
    proofs), so they are never held twice while they wait for their turn there. When the answers
    lack entries, `read_again()` asks the log for the chunk again and reads it here."""

    wanted: range  # global indexes
    answers: list[RetrieveAnswer]
    url: str  # where they came from, for a LogProtocolError
    read_again: Callable[[], Awaitable[list[RekorEntry]]]


class KeptEntries(Sequence[SourceEntry]):
    """A chunk read and analysed in the decode process (a Rekor v1 chunk's answers, a tiles chunk's
    bundles). Only the entries its analysis kept (those with findings or errors) came back; the
    others were read, hashed (for a v1 entry: checked against its uuid) and judged there, and are
    not read again. A CT chunk, analysed, keeps only these too (its leaves folded into subtrees)."""

    def __init__(self, size: int, kept: dict[int, SourceEntry]):
        self.size = size
        self.kept = kept

    @property
    def body_bytes(self) -> int:
        return sum(len(entry.body) for entry in self.kept.values())

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, position: int) -> SourceEntry: ...
    @overload
    def __getitem__(self, position: slice) -> list[SourceEntry]: ...
    def __getitem__(self, position: int | slice) -> SourceEntry | list[SourceEntry]:
        if isinstance(position, slice):
            return [self[item] for item in range(*position.indices(len(self)))]
        if not -self.size <= position < self.size:
            raise IndexError(f"no entry {position} in a chunk of {self.size}")
        try:
            return self.kept[position % self.size]
        except KeyError:
            raise LookupError(f"entry {position} of the chunk was not kept by its analysis") from None


@dataclass(frozen=True)
class ShardHead:
    """A shard as the log announces it now (nothing verified yet)."""

    tree_id: str
    signed_note: str
    claimed_size: int | None
    """The size a v1 log states beside its checkpoint, unsigned: it must equal the signed one, and is
    used for nothing else (None for logs that state only the checkpoint)."""
    offset: int  # global index of the shard's leaf 0
    active: bool


@dataclass(frozen=True)
class BootstrapProof:
    """The inclusion proof of one leaf, to rebuild the compact range of [0, index+1) from it.

    `tree_size` may exceed the verified checkpoint's (a v1 server proves against its newest tree):
    then `checkpoint` is the signed note of that tree, to verify before use.
    """

    leaf_hash: bytes
    index: int  # within the shard
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: str | None


class LogSource(Protocol):
    url: str
    api: str

    def origin(self, tree_id: str, configured: str | None = None) -> str:
        """The origin a shard's checkpoints carry (as far as it can be known before one is read)."""
        ...

    def origin_matcher(self, tree_id: str, configured: str | None = None) -> Callable[[str], bool]:
        """Whether a verified checkpoint's origin is this shard's."""
        ...

    async def heads(self) -> list[ShardHead]: ...  # oldest shard first

    async def consistency_proof(self, first: int, last: int, tree_id: str) -> list[bytes]: ...

    async def entries(
        self, first: int, end: int, head: ShardHead, tree_size: int
    ) -> Sequence[SourceEntry] | RetrievedChunk | FetchedBundles: ...

    async def bootstrap_proof(self, index: int, head: ShardHead, tree_size: int) -> BootstrapProof: ...


def log_name(url: str) -> str:
    """The checkpoint key name: the URL without its scheme."""
    return url.split("://", 1)[-1].rstrip("/")


class RekorV1Source:
    """Rekor v1: origins are `<name> - <tree id>`, the name being a server flag (FORMATS.md §3), so
    only the tree id part is checked (a configured `origin` only chooses the trust root's key)."""

    api = "v1"

    def __init__(self, url: str, client: RekorV1Client):
        self.url = url
        self.client = client

    def origin(self, tree_id: str, configured: str | None = None) -> str:
        return f"{configured or log_name(self.url)} - {tree_id}"

    def origin_matcher(self, tree_id: str, configured: str | None = None) -> Callable[[str], bool]:
        def matches(origin: str) -> bool:
            name, separator, tree = origin.rpartition(" - ")
            return bool(separator and name) and tree == tree_id

        return matches

    async def heads(self) -> list[ShardHead]:
        info = await self.client.get_log_info()
        heads, offset = [], 0
        for shard in info.inactive:
            heads.append(ShardHead(shard.tree_id, shard.signed_tree_head, shard.tree_size, offset, active=False))
            offset += shard.tree_size
            if offset > MAX_GLOBAL_INDEX:
                raise LogProtocolError(self.url, "its shards add up to more than 2^63-1 entries")
        active = info.active
        heads.append(ShardHead(active.tree_id, active.signed_tree_head, active.tree_size, offset, active=True))
        return heads

    async def consistency_proof(self, first: int, last: int, tree_id: str) -> list[bytes]:
        return await self.client.get_consistency_proof(first, last, tree_id)

    async def entries(self, first: int, end: int, head: ShardHead, tree_size: int) -> RetrievedChunk:
        """Entries [first, end) (global), as the log answered, unparsed: read where they are analysed."""
        wanted = range(first, end)
        answers = await self.client.get_answers(wanted)
        return RetrievedChunk(wanted, answers, self.client.retrieve_url, partial(self._read, wanted))

    async def _read(self, wanted: range) -> list[RekorEntry]:
        """Entries `wanted`, all of them, in order; a server that omits some is asked again."""
        found: dict[int, RekorEntry] = {}
        for attempt in range(1, MISSING_ENTRY_RETRIES + 1):
            found.update(await self.client.get_entries([i for i in wanted if i not in found], proofs=False))
            if len(found) == len(wanted):
                return [found[i] for i in wanted]
            if attempt < MISSING_ENTRY_RETRIES:
                await asyncio.sleep(self.client.retry.delay(attempt, None))
        missing = [i for i in wanted if i not in found]
        raise LogProtocolError(self.url, f"does not serve entries {missing[:5]} below its verified size")

    async def bootstrap_proof(self, index: int, head: ShardHead, tree_size: int) -> BootstrapProof:
        entry = await self.client.get_entry(head.offset + index)
        if entry is None or entry.inclusion_proof is None:
            raise LogProtocolError(self.url, f"entry {head.offset + index} has no inclusion proof")
        proof = entry.inclusion_proof
        if proof.log_index != index:
            raise LogProtocolError(self.url, f"entry {head.offset + index} is leaf {proof.log_index} of its shard")
        return BootstrapProof(entry.leaf_hash, index, proof.tree_size, proof.hashes, proof.checkpoint)


class OneTreeOrigin:
    """The origin of a log of one tree (tiles, CT): its key name, the URL without its scheme, unless
    given (a log read through a mirror or proxy keeps its own origin)."""

    own_origin: str

    def origin(self, tree_id: str, configured: str | None = None) -> str:
        return configured or self.own_origin

    def origin_matcher(self, tree_id: str, configured: str | None = None) -> Callable[[str], bool]:
        expected = self.origin(tree_id, configured)
        return lambda origin: origin == expected


class TilesSource(OneTreeOrigin):
    """A tiles log: one tree, read from its tiles."""

    api = "tiles"

    def __init__(self, url: str, client: TilesClient, log_id: bytes = b"", origin: str | None = None):
        self.url = url
        self.client = client
        self.log_id = log_id
        self.own_origin = origin or log_name(url)

    async def heads(self) -> list[ShardHead]:
        note = await self.client.get_checkpoint()
        return [ShardHead("", note, None, 0, active=True)]

    async def consistency_proof(self, first: int, last: int, tree_id: str) -> list[bytes]:
        return await self.client.consistency_proof(first, last)

    async def entries(self, first: int, end: int, head: ShardHead, tree_size: int) -> FetchedBundles:
        """Entries [first, end), in their bundles as fetched: split where they are analysed."""
        fetched = await self.client.get_entry_bundles(first, end, tree_size)
        return FetchedBundles(first, [url for url, _ in fetched], [bundle for _, bundle in fetched], self.log_id)

    async def bootstrap_proof(self, index: int, head: ShardHead, tree_size: int) -> BootstrapProof:
        [leaf] = await self.client.hashes_at(0, [index], tree_size)
        hashes = await self.client.inclusion_proof(index, tree_size)
        return BootstrapProof(leaf, index, tree_size, tuple(hashes), None)
