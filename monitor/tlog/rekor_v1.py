"""Async client for the Rekor v1 REST API, built to face a hostile or flaky log.

Every answer is parsed once (codec.loads_json) and every field is type-checked by hand (tlog/answers.py:
cheap enough for thousands of entries per second); anything malformed is a `LogProtocolError` naming the
field. Nothing here is trusted yet: checkpoints, proofs and entries are verified by the caller.

The tail's retrieve answers (no inclusion proofs wanted: most of a v1 catch-up's parsing) first try a
typed shortcut (msgspec, at the end of this module). It only ever says yes: an answer it does not take
goes the general way, which decides, so an entry is read alike either way.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, NamedTuple

import aiohttp
import msgspec

from monitor.tlog.answers import (
    MAX_INT64,
    MalformedError,
    describe,
    json_base64,
    json_int,
    json_list,
    json_object,
    json_str,
    parse_answer,
)
from monitor.tlog.errors import LogProtocolError, UnexpectedStatusError
from monitor.tlog.http import HttpFetcher, Observer, RetryPolicy, gather_or_cancel
from monitor.tlog.merkle import leaf_hash

LOG_PATH = "/api/v1/log"
PROOF_PATH = "/api/v1/log/proof"
ENTRIES_PATH = "/api/v1/log/entries"
RETRIEVE_PATH = "/api/v1/log/entries/retrieve"

MAX_BATCH_SIZE = 10  # Rekor's maxSearchQueries: a larger retrieve request gets 422
BATCH_TOO_LARGE_STATUSES = frozenset({413, 422})
MAX_PROOF_HASHES = 128  # more than any tree of 2^63 leaves needs
HASH_SIZE = 32
HASH_HEX_LENGTH = 2 * HASH_SIZE

DEFAULT_RETRY = RetryPolicy()

_TREE_ID = re.compile(r"[0-9]{1,19}")
_UUID_LENGTHS = (HASH_HEX_LENGTH, HASH_HEX_LENGTH + 16)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One tree of the log, as `/api/v1/log` describes it (sizes are per shard)."""

    tree_id: str
    tree_size: int
    root_hash: bytes
    signed_tree_head: str


@dataclass(frozen=True, slots=True)
class LogInfo:
    active: ShardInfo
    inactive: tuple[ShardInfo, ...]  # oldest first

    @property
    def global_size(self) -> int:
        return self.active.tree_size + sum(shard.tree_size for shard in self.inactive)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int  # the leaf index within its shard
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]  # leaf to root
    checkpoint: str | None


class RekorEntry(NamedTuple):
    """An entry as a retrieve answer gives it (a named tuple: one is made for every entry a tail
    reads, in half the time of a frozen dataclass)."""

    uuid: str
    body: bytes  # the canonical entry JSON, base64-decoded
    leaf_hash: bytes
    """The RFC 6962 leaf hash of `body`, checked against the uuid, when read with its inclusion proof.
    Read without (`proofs=False`: the tail), the hash the uuid names, unchecked: the tail hashes every
    body anyway, in its analysis, and refuses a chunk where the two differ (`pipeline.check_named_leaves`)."""
    integrated_time: int | None
    log_id: bytes
    log_index: int  # the global index
    inclusion_proof: InclusionProof | None
    signed_entry_timestamp: bytes | None


class RekorV1Client:
    """Reads one Rekor v1 log: log info, consistency proofs and entries by global index."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30,
        concurrency: int = 8,
        batch_size: int = MAX_BATCH_SIZE,
        observe: Observer | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        self._http = HttpFetcher(
            session, base_url, retry=retry, timeout=timeout, observe=observe, concurrency=concurrency
        )
        self._batch_size = batch_size

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def retry(self) -> RetryPolicy:
        return self._http.retry

    async def get_log_info(self) -> LogInfo:
        raw = await self._http.get(LOG_PATH, endpoint="log")
        url = self._http.url_for(LOG_PATH)
        if raw is None:
            raise LogProtocolError(url, "the log info endpoint answered 404")
        return parse_answer(raw, url, "log info", parse_log_info)

    async def get_consistency_proof(self, first_size: int, last_size: int, tree_id: str | None = None) -> list[bytes]:
        """The proof that the shard's tree of `last_size` extends the one of `first_size` (per-shard sizes).

        The answer's rootHash is ignored: it is the root of the server's current tree, unverified.
        """
        if not 0 <= first_size <= last_size:
            raise ValueError(f"no consistency proof from size {first_size} to {last_size}")
        if first_size in (0, last_size):
            return []
        params: dict[str, str | int] = {"firstSize": first_size, "lastSize": last_size}
        if tree_id is not None:
            params["treeID"] = tree_id
        raw = await self._http.get(PROOF_PATH, params, endpoint="proof")
        url = self._http.url_for(PROOF_PATH, params)
        if raw is None:
            raise LogProtocolError(url, "the consistency proof endpoint answered 404")
        return parse_answer(raw, url, "consistency proof", parse_consistency_proof)

    async def get_entry(self, global_index: int) -> RekorEntry | None:
        """The entry at a global index, or None if the log has none there."""
        if global_index < 0:
            raise ValueError(f"negative log index {global_index}")
        params = {"logIndex": global_index}
        raw = await self._http.get(ENTRIES_PATH, params, endpoint="entry")
        if raw is None:
            return None
        url = self._http.url_for(ENTRIES_PATH, params)
        entry = parse_answer(raw, url, "log entry", parse_log_entry)
        if entry.log_index != global_index:
            raise LogProtocolError(url, f"asked for entry {global_index}, got entry {entry.log_index}")
        return entry

    async def get_entries(self, global_indexes: Sequence[int], *, proofs: bool = True) -> dict[int, RekorEntry]:
        """The entries the log has at these global indexes; the ones it does not have are absent.

        Batches of at most `batch_size` indexes, at most `concurrency` of them in flight. Answers are
        matched to requests by their logIndex, never by position. `proofs=False` skips reading the
        inclusion proofs (a tail that folds leaves into a compact range does not need them) and
        hashing the bodies: each entry's leaf hash is then the one its uuid names, for the caller to
        check against the hash of its body (`RekorEntry.leaf_hash`).
        """
        wanted = list(dict.fromkeys(global_indexes))
        if wanted and min(wanted) < 0:
            raise ValueError("negative log index")
        size = self._batch_size
        batches = [wanted[start : start + size] for start in range(0, len(wanted), size)]
        found: dict[int, RekorEntry] = {}
        for entries in await gather_or_cancel(self._retrieve(batch, proofs) for batch in batches):
            found.update(entries)
        return found

    async def _retrieve(self, batch: list[int], proofs: bool) -> dict[int, RekorEntry]:
        try:
            raw = await self._http.post_json(RETRIEVE_PATH, {"logIndexes": batch}, endpoint="retrieve")
        except UnexpectedStatusError as exc:
            if exc.status not in BATCH_TOO_LARGE_STATUSES or len(batch) == 1:
                raise
            half = len(batch) // 2
            first, second = await gather_or_cancel(
                [self._retrieve(batch[:half], proofs), self._retrieve(batch[half:], proofs)]
            )
            return first | second
        requested = frozenset(batch)
        typed = None if proofs else match_entries_typed(raw, requested)
        if typed is not None:
            return typed
        parse = partial(match_entries, requested=requested, proofs=proofs)
        return parse_answer(raw, self._http.url_for(RETRIEVE_PATH), "retrieve answer", parse)


def parse_log_info(document: Any) -> LogInfo:
    """`/api/v1/log`: the active shard's fields at the top level, plus `inactiveShards`."""
    active = _shard(document, "log info")
    listed = document.get("inactiveShards")
    shards = [] if listed is None else json_list(listed, "inactiveShards")
    inactive = tuple(_shard(item, f"inactiveShards[{position}]") for position, item in enumerate(shards))
    tree_ids = [shard.tree_id for shard in (*inactive, active)]
    if len(set(tree_ids)) != len(tree_ids):
        raise MalformedError("inactiveShards", f"tree ids repeat: {tree_ids}")
    return LogInfo(active=active, inactive=inactive)


def parse_consistency_proof(document: Any) -> list[bytes]:
    return list(_hashes(json_object(document, "consistency proof").get("hashes"), "hashes"))


def parse_log_entry(document: Any, *, proof: bool = True) -> RekorEntry:
    """A `LogEntry`: `{uuid: LogEntryAnon}` with exactly one key."""
    wrapper = json_object(document, "log entry")
    if len(wrapper) != 1:
        raise MalformedError("log entry", f"has {len(wrapper)} keys, expected one {{uuid: entry}}")
    ((uuid, anonymous),) = wrapper.items()
    return _entry(uuid, json_object(anonymous, "entry"), proof)


def match_entries(document: Any, requested: frozenset[int], *, proofs: bool = True) -> dict[int, RekorEntry]:
    """A retrieve answer, `[LogEntry, ...]`, keyed by each entry's global logIndex."""
    return _keyed_by_index(
        (_entry_at(position, item, proofs) for position, item in enumerate(json_list(document, "answer"))), requested
    )


def _entry_at(position: int, item: Any, proofs: bool) -> RekorEntry:
    try:
        return parse_log_entry(item, proof=proofs)
    except MalformedError as exc:
        raise exc.within(f"[{position}]") from None


def _keyed_by_index(entries: Iterable[RekorEntry], requested: frozenset[int]) -> dict[int, RekorEntry]:
    """The entries by their global logIndex: each one requested, none twice."""
    found: dict[int, RekorEntry] = {}
    for position, entry in enumerate(entries):
        if entry.log_index not in requested:
            raise MalformedError(f"[{position}].logIndex", f"{entry.log_index} was not requested")
        if entry.log_index in found:
            raise MalformedError(f"[{position}].logIndex", f"{entry.log_index} appears twice")
        found[entry.log_index] = entry
    return found


def _named_leaf_hash(uuid: str) -> bytes:
    """The leaf hash a uuid names: its last 64 hex digits (a uuid is 64 hex digits, or 80 with the
    tree id's 16 first). Not checked against the body here."""
    if len(uuid) not in _UUID_LENGTHS:
        raise MalformedError("uuid", "is not 64 or 80 hex digits")
    try:
        return binascii.a2b_hex(uuid)[-HASH_SIZE:]  # hex digits only, as a regular expression would check
    except ValueError:
        raise MalformedError("uuid", "is not 64 or 80 hex digits") from None


def _check_named(named: bytes, body: bytes) -> bytes:
    """The body's leaf hash, which must be the one its uuid names."""
    hashed = leaf_hash(body)
    if hashed != named:
        raise MalformedError("uuid", "does not end with the leaf hash of the body")
    return hashed


def _entry(uuid: str, entry: dict[str, Any], with_proof: bool) -> RekorEntry:
    named = _named_leaf_hash(uuid)
    body = json_base64(entry.get("body"), "body")
    hashed = _check_named(named, body) if with_proof else named
    log_index = json_int(entry.get("logIndex"), "logIndex")
    integrated_time = entry.get("integratedTime")
    verification = entry.get("verification")
    proof, timestamp = (None, None) if verification is None else _verification(verification, log_index, with_proof)
    return RekorEntry(
        uuid=uuid,
        body=body,
        leaf_hash=hashed,
        integrated_time=None if integrated_time is None else json_int(integrated_time, "integratedTime"),
        log_id=_hash(entry.get("logID"), "logID"),
        log_index=log_index,
        inclusion_proof=proof,
        signed_entry_timestamp=timestamp,
    )


def _verification(value: Any, global_index: int, with_proof: bool) -> tuple[InclusionProof | None, bytes | None]:
    verification = json_object(value, "verification")
    proof = verification.get("inclusionProof") if with_proof else None
    timestamp = verification.get("signedEntryTimestamp")
    return (
        None if proof is None else _inclusion_proof(proof, global_index),
        None if timestamp is None else json_base64(timestamp, "verification.signedEntryTimestamp"),
    )


def _inclusion_proof(value: Any, global_index: int) -> InclusionProof:
    where = "verification.inclusionProof"
    proof = json_object(value, where)
    log_index = json_int(proof.get("logIndex"), f"{where}.logIndex")
    tree_size = json_int(proof.get("treeSize"), f"{where}.treeSize", minimum=1)
    if log_index >= tree_size:
        raise MalformedError(f"{where}.logIndex", f"{log_index} is not below treeSize {tree_size}")
    # A shard's leaf index is the global index minus the sizes of the shards before it.
    if log_index > global_index:
        raise MalformedError(f"{where}.logIndex", f"{log_index} exceeds the global logIndex {global_index}")
    checkpoint = proof.get("checkpoint")
    return InclusionProof(
        log_index=log_index,
        tree_size=tree_size,
        root_hash=_hash(proof.get("rootHash"), f"{where}.rootHash"),
        hashes=_hashes(proof.get("hashes"), f"{where}.hashes"),
        checkpoint=None if checkpoint is None else json_str(checkpoint, f"{where}.checkpoint"),
    )


def _shard(value: Any, where: str) -> ShardInfo:
    shard = json_object(value, where)
    tree_id = shard.get("treeID")
    if type(tree_id) is not str or not _TREE_ID.fullmatch(tree_id):
        raise MalformedError(f"{where}.treeID", "is not a decimal string")
    return ShardInfo(
        tree_id=tree_id,
        tree_size=json_int(shard.get("treeSize"), f"{where}.treeSize"),
        root_hash=_hash(shard.get("rootHash"), f"{where}.rootHash"),
        signed_tree_head=json_str(shard.get("signedTreeHead"), f"{where}.signedTreeHead"),
    )


def _hash(value: Any, where: str) -> bytes:
    if type(value) is not str or len(value) != HASH_HEX_LENGTH:
        raise MalformedError(where, f"is {describe(value)}, not {HASH_HEX_LENGTH} hex digits")
    try:
        return binascii.a2b_hex(value)
    except ValueError:
        raise MalformedError(where, "is not hex") from None


def _hashes(value: Any, where: str) -> tuple[bytes, ...]:
    items = json_list(value, where)
    if len(items) > MAX_PROOF_HASHES:
        raise MalformedError(where, f"has {len(items)} hashes, more than any tree needs")
    try:
        # One C-level pass over the list: proofs are most of an entry's fields.
        hashes = tuple(map(binascii.a2b_hex, items))
    except (TypeError, ValueError):
        hashes = ()
    if len(hashes) != len(items) or any(len(item) != HASH_SIZE for item in hashes):
        raise MalformedError(where, f"is not a list of {HASH_HEX_LENGTH}-hex-digit hashes")
    return hashes


# A retrieve answer without its inclusion proofs, decoded by msgspec straight into typed structs: a
# fifth less CPU than parsing it to dicts and checking them, on answers of a third of the daemon's CPU
# in a v1 catch-up. Each check of `_entry` is made here too, or the answer is left to it: the field
# types and ranges (msgspec refuses a float or a boolean for an int), strict base64, the uuid and its
# leaf hash, the requested and repeated indexes. One difference, on purpose: msgspec checks the UTF-8
# of what it reads, not of the members it skips (the inclusion proofs, unknown members), where the
# general way refuses a whole answer. Checking it would cost more than the shortcut saves (a real
# answer's checkpoints carry a non-ASCII "—"), and nothing is read from those bytes.
# tests/test_v1_typed.py holds the two ways to the same answers.

_Int64 = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]


class _TypedVerification(msgspec.Struct, rename="camel"):
    signed_entry_timestamp: bytes | None = None


class _TypedEntry(msgspec.Struct, rename="camel"):
    body: bytes
    log_id: str = msgspec.field(name="logID")
    log_index: _Int64
    integrated_time: _Int64 | None = None
    verification: _TypedVerification | None = None


_RETRIEVE_ANSWER = msgspec.json.Decoder(list[dict[str, _TypedEntry]])


def match_entries_typed(raw: bytes, requested: frozenset[int]) -> dict[int, RekorEntry] | None:
    """`match_entries` of a retrieve answer without proofs, when the shortcut takes it; None: parse
    it the general way (which also names what is wrong)."""
    try:
        return _keyed_by_index(map(_typed_entry, _RETRIEVE_ANSWER.decode(raw)), requested)
    except (msgspec.DecodeError, RecursionError, MalformedError):
        return None


def _typed_entry(wrapper: dict[str, _TypedEntry]) -> RekorEntry:
    if len(wrapper) != 1:
        raise MalformedError("log entry", "not one {uuid: entry}")
    ((uuid, entry),) = wrapper.items()
    named = _named_leaf_hash(uuid)
    verification = entry.verification
    return RekorEntry(
        uuid=uuid,
        body=entry.body,
        leaf_hash=named,
        integrated_time=entry.integrated_time,
        log_id=_hash(entry.log_id, "logID"),
        log_index=entry.log_index,
        inclusion_proof=None,
        signed_entry_timestamp=None if verification is None else verification.signed_entry_timestamp,
    )
