"""CT tree heads: the RFC 6962 signed tree head (STH), its TLS signature, and the same head as a checkpoint.

    DigitallySigned     = u8 hash (4 = SHA-256) ‖ u8 signature (3 = ECDSA, 1 = RSA) ‖ signature<u16>
    TreeHeadSignature   = u8 version 0 ‖ u8 signature_type 1 (tree_hash) ‖ u64 timestamp (ms) ‖ u64 tree_size ‖ root[32]
    RFC6962NoteSignature = u64 timestamp ‖ DigitallySigned            (static-ct-api, note signature type 0x05)

A static-ct-api log serves its STH as a C2SP checkpoint: origin = the log's scheme-less URL, no
extension lines, signed by the line `— <origin> base64(key id ‖ RFC6962NoteSignature)`, key id =
SHA256(origin ‖ 0x0A ‖ 0x05 ‖ log ID)[:4]. A get-sth answer converts to that checkpoint without the
log's key (`sth_note`), so both APIs hand the tail one kind of checkpoint and `open_ct_checkpoint`
verifies both: the signature must verify with a trust-root key of that log valid at the head's
timestamp, the hash must be SHA-256, and the signature algorithm the key's own (RSA only for an RSA
key). Errors are `CtHeadError`, a `NoteError`, so a bad tree head is handled as a bad checkpoint.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from monitor.tlog.answers import MalformedError, json_base64, json_int, json_object
from monitor.tlog.merkle import HASH_SIZE
from monitor.tlog.note import (
    Checkpoint,
    NoteError,
    format_checkpoint_body,
    key_id,
    parse_checkpoint_body,
    signature_line,
    split_note,
)
from monitor.trust import LogKey

SHA256_HASH = 4
RSA_SIGNATURE = 1
ECDSA_SIGNATURE = 3
TREE_HASH_SIGNATURE_TYPE = 1
CT_NOTE_SIGNATURE_TYPE = 0x05
MAX_SIGNATURE_BYTES = 1024  # an RSA-8192 signature; ECDSA P-256 needs 72
MAX_TIMESTAMP = (1 << 63) - 1

_DIGITALLY_SIGNED_HEAD = struct.Struct(">BBH")
_TREE_HEAD = struct.Struct(">BBQQ")
_NOTE_TIMESTAMP = struct.Struct(">Q")


class CtHeadError(NoteError):
    """A CT tree head that is malformed, or not signed by a key of its log valid at its time."""


# -- DigitallySigned -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigitallySigned:
    hash_algorithm: int
    signature_algorithm: int
    signature: bytes

    def to_bytes(self) -> bytes:
        head = _DIGITALLY_SIGNED_HEAD.pack(self.hash_algorithm, self.signature_algorithm, len(self.signature))
        return head + self.signature


def parse_digitally_signed(data: bytes) -> DigitallySigned:
    """A TLS DigitallySigned that is exactly `data`."""
    if len(data) < _DIGITALLY_SIGNED_HEAD.size:
        raise CtHeadError(f"a DigitallySigned of {len(data)} bytes")
    hash_algorithm, signature_algorithm, length = _DIGITALLY_SIGNED_HEAD.unpack_from(data)
    signature = data[_DIGITALLY_SIGNED_HEAD.size :]
    if length != len(signature) or not 0 < length <= MAX_SIGNATURE_BYTES:
        raise CtHeadError(f"a signature of {len(signature)} bytes announced as {length}")
    return DigitallySigned(hash_algorithm, signature_algorithm, signature)


def sign_digitally(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """`message` signed as a CT log signs (ECDSA, SHA-256), as DigitallySigned bytes."""
    return DigitallySigned(SHA256_HASH, ECDSA_SIGNATURE, key.sign(message, ec.ECDSA(hashes.SHA256()))).to_bytes()


def verify_digitally_signed(key: LogKey, signed: DigitallySigned, message: bytes) -> bool:
    """Whether `signed` is `key`'s SHA-256 signature of `message` with the key's own algorithm."""
    public_key = key.public_key
    if signed.hash_algorithm != SHA256_HASH:
        return False
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and signed.signature_algorithm == ECDSA_SIGNATURE:
            public_key.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey) and signed.signature_algorithm == RSA_SIGNATURE:
            public_key.verify(signed.signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


# -- the signed tree head --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A get-sth answer; `signature` is the TLS DigitallySigned over `tree_head_signed_data`."""

    tree_size: int
    timestamp: int  # milliseconds since the epoch
    root_hash: bytes
    signature: bytes


def tree_head_signed_data(timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The TreeHeadSignature struct a log signs for a tree head."""
    return _TREE_HEAD.pack(0, TREE_HASH_SIGNATURE_TYPE, timestamp, tree_size) + root_hash


def parse_sth(document: Any) -> SignedTreeHead:
    """A get-sth answer, every field checked (MalformedError); the signature is not verified here."""
    sth = json_object(document, "get-sth answer")
    root_hash = json_base64(sth.get("sha256_root_hash"), "sha256_root_hash")
    if len(root_hash) != HASH_SIZE:
        raise MalformedError("sha256_root_hash", f"is {len(root_hash)} bytes, not {HASH_SIZE}")
    signature = json_base64(sth.get("tree_head_signature"), "tree_head_signature")
    try:
        parse_digitally_signed(signature)
    except CtHeadError as exc:
        raise MalformedError("tree_head_signature", str(exc)) from None
    return SignedTreeHead(
        tree_size=json_int(sth.get("tree_size"), "tree_size"),
        timestamp=json_int(sth.get("timestamp"), "timestamp"),
        root_hash=root_hash,
        signature=signature,
    )


def log_id_of(key: LogKey) -> bytes:
    """RFC 6962's LogID: SHA-256 of the log key's SubjectPublicKeyInfo."""
    return hashlib.sha256(key.spki_der).digest()


def ct_note_key_id(origin: str, log_id: bytes) -> bytes:
    """The key id of a CT log's checkpoint signature line (static-ct-api)."""
    return key_id(origin, CT_NOTE_SIGNATURE_TYPE, log_id)


def ct_note(origin: str, log_id: bytes, tree_size: int, timestamp: int, root_hash: bytes, signature: bytes) -> str:
    """The checkpoint of a tree head signed with `signature` (DigitallySigned bytes)."""
    body = format_checkpoint_body(origin, tree_size, root_hash)
    line = signature_line(origin, ct_note_key_id(origin, log_id), _NOTE_TIMESTAMP.pack(timestamp) + signature)
    return f"{body}\n{line}"


def sth_note(sth: SignedTreeHead, origin: str, log_id: bytes) -> str:
    """A get-sth answer as the checkpoint a static-ct-api log would serve for it."""
    return ct_note(origin, log_id, sth.tree_size, sth.timestamp, sth.root_hash, sth.signature)


# -- verifying a CT checkpoint ---------------------------------------------------------------------


@dataclass(frozen=True)
class CtCheckpoint(Checkpoint):
    """A verified CT checkpoint, with the tree head's timestamp (milliseconds) and the key that signed it."""

    timestamp: int = 0
    log_key: LogKey | None = None


def _moment(timestamp: int) -> datetime:
    if timestamp > MAX_TIMESTAMP:
        raise CtHeadError(f"timestamp {timestamp} is out of range")
    try:
        return datetime.fromtimestamp(timestamp / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        raise CtHeadError(f"timestamp {timestamp} is out of range") from None


def _signed_time(payload: bytes, key: LogKey, tree_size: int, root_hash: bytes) -> int:
    """When `key` signed the tree head (ms), from a CT signature line's payload (after its key id).

    CtHeadError if the payload is malformed or its signature does not verify.
    """
    if len(payload) < _NOTE_TIMESTAMP.size:
        raise CtHeadError("a CT note signature without its timestamp")
    (timestamp,) = _NOTE_TIMESTAMP.unpack_from(payload)
    signed = parse_digitally_signed(payload[_NOTE_TIMESTAMP.size :])
    if not verify_digitally_signed(key, signed, tree_head_signed_data(timestamp, tree_size, root_hash)):
        raise CtHeadError(f"invalid tree head signature by the key of {key.base_url}")
    return timestamp


def open_ct_checkpoint(note: str, keys: Sequence[LogKey], *, origin: str) -> CtCheckpoint:
    """Verify a CT checkpoint (static-ct-api, or `sth_note` of a get-sth answer) and parse it.

    `keys` are the trust root's keys for this log. A line by one of them (name = origin, CT key id)
    must verify, with that key valid at the signed timestamp; a line by one of them that does not
    verify rejects the whole note, one signed outside its key's validity does not count. Lines of
    other signers (witnesses, other key types) are ignored.
    """
    body, signatures = split_note(note)
    checkpoint_origin, size, root_hash, extensions = parse_checkpoint_body(body)
    if checkpoint_origin != origin:
        raise CtHeadError(f"checkpoint origin {checkpoint_origin[:200]!r} is not {origin!r}")
    if extensions:
        raise CtHeadError("a CT checkpoint has no extension lines")
    known = {ct_note_key_id(origin, log_id_of(key)): key for key in keys}
    verified: tuple[int, LogKey] | None = None
    expired: datetime | None = None
    for signature in signatures:
        key = known.get(signature.key_id) if signature.name == origin else None
        if key is None:
            continue
        timestamp = _signed_time(signature.signature, key, size, root_hash)
        moment = _moment(timestamp)
        if not key.validity.contains(moment):
            expired = moment
        elif verified is None:
            verified = (timestamp, key)
    if verified is None:
        if expired is not None:
            raise CtHeadError(f"the log key was not valid at the tree head's time ({expired:%Y-%m-%dT%H:%M:%SZ})")
        raise CtHeadError("no tree head signature by a key of this log")
    timestamp, key = verified
    return CtCheckpoint(origin, size, root_hash, (), note, timestamp=timestamp, log_key=key)
