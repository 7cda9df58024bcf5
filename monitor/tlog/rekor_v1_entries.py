"""Rekor v1 entries as the log's answers give them, and how those answers are read: the general way
(every field checked by hand, any problem a `MalformedError` naming the field) and, for answers
read without their inclusion proofs, a typed shortcut that only ever says yes.

Lean on purpose (no HTTP client): the decode process reads a v1 catch-up's retrieve answers with it,
where the bytes already are, and the daemon's client (rekor_v1.py) reads every other answer with it,
so the two read an answer alike. Nothing here is trusted: a uuid names a leaf hash the reader must
check against the body's, and a signed entry timestamp is only a claim until verified.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Annotated, Any, NamedTuple

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
    parse_document,
)
from monitor.tlog.merkle import HASH_SIZE, MAX_PROOF_HASHES, leaf_hash

HASH_HEX_LENGTH = 2 * HASH_SIZE

_UUID_LENGTHS = (HASH_HEX_LENGTH, HASH_HEX_LENGTH + 16)


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
    body anyway, in its analysis, and refuses a chunk where the two differ (`first_misnamed`)."""
    integrated_time: int | None
    log_id: bytes
    log_index: int  # the global index
    inclusion_proof: InclusionProof | None
    signed_entry_timestamp: bytes | None


class RetrieveAnswer(NamedTuple):
    """One retrieve request's answer, unparsed, with the global indexes it asked for (`raw` is a view
    of a larger buffer in the decode process)."""

    requested: tuple[int, ...]
    raw: bytes | memoryview


def named_leaf_hash(uuid: str) -> bytes:
    """The leaf hash a uuid names: its last 64 hex digits (a uuid is 64 hex digits, or 80 with the
    tree id's 16 first). Not checked against the body here."""
    if len(uuid) not in _UUID_LENGTHS:
        raise MalformedError("uuid", "is not 64 or 80 hex digits")
    try:
        return binascii.a2b_hex(uuid)[-HASH_SIZE:]  # hex digits only, as a regular expression would check
    except ValueError:
        raise MalformedError("uuid", "is not 64 or 80 hex digits") from None


def hex_hash(value: object, where: str) -> bytes:
    if type(value) is not str or len(value) != HASH_HEX_LENGTH:
        raise MalformedError(where, f"is {describe(value)}, not {HASH_HEX_LENGTH} hex digits")
    try:
        return binascii.a2b_hex(value)
    except ValueError:
        raise MalformedError(where, "is not hex") from None


def first_misnamed(entries: Sequence[RekorEntry], leaf_hashes: bytes) -> int | None:
    """The global index of the first entry whose uuid does not name its body's leaf hash
    (`leaf_hashes`: the bodies', computed, concatenated in order); None when every uuid does."""
    if b"".join(entry.leaf_hash for entry in entries) == leaf_hashes:
        return None
    return next(
        entry.log_index
        for position, entry in enumerate(entries)
        if entry.leaf_hash != leaf_hashes[position * HASH_SIZE : (position + 1) * HASH_SIZE]
    )


def keyed_by_index(entries: Iterable[RekorEntry], requested: frozenset[int]) -> dict[int, RekorEntry]:
    """The entries by their global logIndex: each one requested, none twice."""
    found: dict[int, RekorEntry] = {}
    for position, entry in enumerate(entries):
        if entry.log_index not in requested:
            raise MalformedError(f"[{position}].logIndex", f"{entry.log_index} was not requested")
        if entry.log_index in found:
            raise MalformedError(f"[{position}].logIndex", f"{entry.log_index} appears twice")
        found[entry.log_index] = entry
    return found


# -- the general way: the JSON parsed to dicts, every field checked by hand ------------------------------


def parse_log_entry(document: Any, *, proof: bool = True) -> RekorEntry:
    """A `LogEntry`: `{uuid: LogEntryAnon}` with exactly one key."""
    wrapper = json_object(document, "log entry")
    if len(wrapper) != 1:
        raise MalformedError("log entry", f"has {len(wrapper)} keys, expected one {{uuid: entry}}")
    ((uuid, anonymous),) = wrapper.items()
    return _entry(uuid, json_object(anonymous, "entry"), proof)


def match_entries(document: Any, requested: frozenset[int], *, proofs: bool = True) -> dict[int, RekorEntry]:
    """A retrieve answer, `[LogEntry, ...]`, keyed by each entry's global logIndex."""
    return keyed_by_index(
        (_entry_at(position, item, proofs) for position, item in enumerate(json_list(document, "answer"))), requested
    )


def _entry_at(position: int, item: Any, proofs: bool) -> RekorEntry:
    try:
        return parse_log_entry(item, proof=proofs)
    except MalformedError as exc:
        raise exc.within(f"[{position}]") from None


def _check_named(named: bytes, body: bytes) -> bytes:
    """The body's leaf hash, which must be the one its uuid names."""
    hashed = leaf_hash(body)
    if hashed != named:
        raise MalformedError("uuid", "does not end with the leaf hash of the body")
    return hashed


def _entry(uuid: str, entry: dict[str, Any], with_proof: bool) -> RekorEntry:
    named = named_leaf_hash(uuid)
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
        log_id=hex_hash(entry.get("logID"), "logID"),
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
        root_hash=hex_hash(proof.get("rootHash"), f"{where}.rootHash"),
        hashes=proof_hashes(proof.get("hashes"), f"{where}.hashes"),
        checkpoint=None if checkpoint is None else json_str(checkpoint, f"{where}.checkpoint"),
    )


def proof_hashes(value: Any, where: str) -> tuple[bytes, ...]:
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


# -- the typed shortcut ------------------------------------------------------------------------------

# A retrieve answer without its inclusion proofs, decoded by msgspec straight into typed structs: a
# fifth less CPU than parsing it to dicts and checking them (rekor_v1.match_entries). Each check of
# the general way is made here too, or the answer is left to it: the field types and ranges (msgspec
# refuses a float or a boolean for an int), strict base64, the uuid and its leaf hash, the requested
# and repeated indexes. One difference, on purpose: msgspec checks the UTF-8 of what it reads, not of
# the members it skips (the inclusion proofs, unknown members), where the general way refuses a whole
# answer. Checking it would cost more than the shortcut saves (a real answer's checkpoints carry a
# non-ASCII "—"), and nothing is read from those bytes. tests/test_v1_typed.py holds the two ways to
# the same answers.

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


def match_entries_typed(raw: bytes | memoryview, requested: frozenset[int]) -> dict[int, RekorEntry] | None:
    """`match_entries` of a retrieve answer without proofs, when the shortcut takes it; None: parse
    it the general way (which also names what is wrong)."""
    try:
        return keyed_by_index(map(_typed_entry, _RETRIEVE_ANSWER.decode(raw)), requested)
    except (msgspec.DecodeError, RecursionError, MalformedError):
        return None


def _typed_entry(wrapper: dict[str, _TypedEntry]) -> RekorEntry:
    if len(wrapper) != 1:
        raise MalformedError("log entry", "not one {uuid: entry}")
    ((uuid, entry),) = wrapper.items()
    verification = entry.verification
    return RekorEntry(
        uuid=uuid,
        body=entry.body,
        leaf_hash=named_leaf_hash(uuid),
        integrated_time=entry.integrated_time,
        log_id=hex_hash(entry.log_id, "logID"),
        log_index=entry.log_index,
        inclusion_proof=None,
        signed_entry_timestamp=None if verification is None else verification.signed_entry_timestamp,
    )


# -- reading answers --------------------------------------------------------------------------------


RETRIEVE_ANSWER = "retrieve answer"


def entries_of(answer: RetrieveAnswer, *, proofs: bool) -> dict[int, RekorEntry]:
    """A retrieve answer's entries, keyed by global index (matched to the request by their logIndex,
    never by position): by the typed shortcut when proofs are not wanted and it takes the answer,
    else the general way; RefusedAnswer naming the faulty field."""
    requested = frozenset(answer.requested)
    typed = None if proofs else match_entries_typed(answer.raw, requested)
    if typed is not None:
        return typed
    parse = partial(match_entries, requested=requested, proofs=proofs)
    return parse_document(bytes(answer.raw), RETRIEVE_ANSWER, parse)


def chunk_entries(answers: Sequence[RetrieveAnswer]) -> list[RekorEntry] | None:
    """The entries the answers were asked for, without proofs, in the order asked; None if they
    lack some (ask the log again); RefusedAnswer if one is malformed."""
    found: dict[int, RekorEntry] = {}
    for answer in answers:
        found.update(entries_of(answer, proofs=False))
    try:
        return [found[index] for index in chain.from_iterable(answer.requested for answer in answers)]
    except KeyError:
        return None
