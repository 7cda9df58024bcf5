"""CT logs behind the tail's `LogSource` interface (tlog/source.py), RFC 6962 or static-ct-api.

A CT log is one tree (tree id "", offset 0). Its tree head is the shard's checkpoint: a static-ct-api
log serves one, and an RFC 6962 STH is converted to the same note (tlog/ct_head.py), so the tail
stores and compares one kind of checkpoint. The tail verifies it with `open_checkpoint` in place of
the Rekor note verifier: the trust root's key for this log (`ctlogs`), valid at the head's
timestamp. Entries are `CtLogEntry`s: their leaf hashes fold into the compact range like Rekor
entries; `tlog.ct.decode_ct_entry` decodes them. As for every source, nothing is verified here.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.tlog.ct import CtLogEntry
from monitor.tlog.ct_client import Rfc6962Client, StaticCtClient
from monitor.tlog.ct_head import CtCheckpoint, log_id_of, open_ct_checkpoint, sth_note
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.source import BootstrapProof, OneTreeOrigin, ShardHead, TilesSource, log_name
from monitor.trust import LogKey

RFC6962_API = "rfc6962"
STATIC_API = "static"


class CtKeyed(OneTreeOrigin):
    """A CT log's tree heads are checked against its trust-root key, valid at their time."""

    key: LogKey

    def open_checkpoint(self, note: str) -> CtCheckpoint:
        """The verified tree head (NoteError if it is not the log's, validly signed at its time)."""
        return open_ct_checkpoint(note, [self.key], origin=self.origin(""))


class Rfc6962Source(CtKeyed):
    """An RFC 6962 log: get-sth as the checkpoint, its consistency proofs, get-entries, get-proof-by-hash."""

    api = RFC6962_API

    def __init__(self, url: str, client: Rfc6962Client, key: LogKey, origin: str | None = None):
        self.url = url
        self.client = client
        self.key = key
        self.log_id = log_id_of(key)
        self.own_origin = origin or log_name(url)

    async def heads(self) -> list[ShardHead]:
        sth = await self.client.get_sth()
        note = sth_note(sth, self.origin(""), self.log_id)
        return [ShardHead("", note, None, 0, active=True)]

    async def consistency_proof(self, first: int, last: int, tree_id: str) -> list[bytes]:
        return await self.client.get_sth_consistency(first, last)

    async def entries(self, first: int, end: int, head: ShardHead, tree_size: int) -> Sequence[CtLogEntry]:
        return await self.client.get_entries(first, end)

    async def bootstrap_proof(self, index: int, head: ShardHead, tree_size: int) -> BootstrapProof:
        [entry] = await self.client.get_entries(index, index + 1)
        proof = await self.client.get_proof_by_hash(entry.leaf_hash, tree_size)
        if proof.leaf_index != index:
            problem = f"proves the leaf hash of entry {index} at index {proof.leaf_index}"
            raise LogProtocolError(self.url, problem)
        return BootstrapProof(entry.leaf_hash, index, tree_size, proof.audit_path, None)


class StaticCtSource(CtKeyed, TilesSource):
    """A static-ct-api log: a tiles log whose leaves come from data tiles, with a CT checkpoint."""

    api = STATIC_API

    def __init__(self, url: str, client: StaticCtClient, key: LogKey, origin: str | None = None):
        super().__init__(url, client.tiles, log_id_of(key), origin)
        self.ct_client = client
        self.key = key

    async def entries(self, first: int, end: int, head: ShardHead, tree_size: int) -> Sequence[CtLogEntry]:
        return await self.ct_client.get_entries(first, end, tree_size)
