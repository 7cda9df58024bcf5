"""Witness cosignatures (C2SP tlog-cosignature) and witness policies (C2SP tlog-policy): parse, verify, evaluate.

A witness cosigns a checkpoint by adding a note signature line (FORMATS.md §6):
`— <key name> base64(key id[4] ‖ u64 BE timestamp ‖ signature)`. Invariants:

- A line counts for a policy witness only when its (key name, key id) is the witness's, the key id computed
  for the cosignature type: 0x04 (Ed25519) or 0x06 (ML-DSA-44). A vkey published as a plain Ed25519 note
  key (0x01) is used as 0x04, its key id recomputed. Every other line is ignored.
- A line of a policy witness that does not verify (wrong length, timestamp above 2^63-1, bad signature)
  makes that witness `invalid`: it satisfies nothing on that checkpoint, even beside a valid line.
- A verified line timestamped more than FUTURE_TOLERANCE_SECONDS after `now` does not count (`future`).
- The quorum is evaluated over the policy's tree: a witness is satisfied by one counting line, a group by
  at least k satisfied members, `quorum none` always. Members are defined before the groups naming them,
  so evaluating the groups in definition order is the recursive evaluation, without recursion.
- The log's own signature is not checked here: the tail opens the note with the trust root's key first.
  The policy's `log` lines are exposed (`WitnessPolicy.logs`) for the caller to check against the trust root.
- A policy text is parsed completely or not at all: `PolicyError` carries the 1-based line and the reason.

Nothing here does I/O or reads the clock (`now` is a parameter).
"""

from __future__ import annotations

import base64
import importlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import cryptography
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from monitor.tlog.note import (
    NoteError,
    NoteVerifier,
    decode_base64,
    is_valid_key_name,
    key_id,
    parse_checkpoint_body,
    signature_line,
    split_note,
    verifier_for_key,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    CosignerPublicKey = ed25519.Ed25519PublicKey | mldsa.MLDSA44PublicKey
    CosignerPrivateKey = ed25519.Ed25519PrivateKey | mldsa.MLDSA44PrivateKey

NOTE_ED25519 = 0x01
NOTE_ECDSA = 0x02
COSIGNATURE_ED25519 = 0x04
COSIGNATURE_MLDSA44 = 0x06

ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
MLDSA44_KEY_SIZE = 1312
MLDSA44_SIGNATURE_SIZE = 2420
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = (1 << 63) - 1
MAX_SUBTREE_NAME_BYTES = 255
FUTURE_TOLERANCE_SECONDS = 300

# Imported when needed: cryptography < 47 has no ML-DSA, and Ed25519 witnesses must work without it.
MLDSA_MODULE = "cryptography.hazmat.primitives.asymmetric.mldsa"

QUORUM_NONE = "none"
MAX_POLICY_CHARACTERS = 256 * 1024
MAX_POLICY_DEFINITIONS = 256  # of each kind: logs, witnesses, groups
SUBTREE_LABEL = b"subtree/v1\n\x00"

_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_THRESHOLD = re.compile(r"[0-9]{1,4}")
_SEPARATORS = re.compile(r"[ \t]+")
# tlog-policy allows tab and newline, and no other control character.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Algorithm = Literal["ed25519", "ml-dsa-44"]


class WitnessError(Exception):
    """The base of this module's errors."""


class VKeyError(WitnessError):
    """A verifier key (vkey) is malformed or of a type that cannot be used here."""


class PolicyError(WitnessError):
    """A witness policy is invalid: `reason` on 1-based `line` (None: the policy as a whole)."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line
        self.reason = reason


# -- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VKey:
    """A vkey `<name>+<8 hex key id>+base64(type ‖ key)` as written: nothing checked beyond its syntax."""

    name: str
    key_id: bytes
    key_type: int
    key: bytes = field(repr=False)

    def check(self, size: int) -> None:
        """The key has `size` bytes and the written key id is the one of its type."""
        if len(self.key) != size:
            raise VKeyError(f"a type 0x{self.key_type:02x} key is {size} bytes, not {len(self.key)}")
        expected = key_id(self.name, self.key_type, self.key)
        if self.key_id != expected:
            raise VKeyError(f"key id {self.key_id.hex()} is not the id of this key ({expected.hex()})")


def parse_vkey(text: str) -> VKey:
    """Split a vkey at its first two '+' (base64 holds '+' too) and decode its key."""
    name, _, rest = text.partition("+")
    written_id, separator, encoded = rest.partition("+")
    if not separator:
        raise VKeyError("a vkey is <name>+<8 hex key id>+<base64 type and key>")
    if not is_valid_key_name(name):
        raise VKeyError(f"invalid key name {name[:80]!r}")
    if not _KEY_ID_HEX.fullmatch(written_id):
        raise VKeyError(f"key id {written_id[:80]!r} is not 8 hex digits")
    try:
        raw = decode_base64(encoded, "the key")
    except NoteError as exc:
        raise VKeyError(str(exc)) from None
    if not raw:
        raise VKeyError("the key is empty")
    return VKey(name, bytes.fromhex(written_id), raw[0], raw[1:])


def _mldsa44_public_key(raw: bytes) -> mldsa.MLDSA44PublicKey:
    try:
        module = importlib.import_module(MLDSA_MODULE)
        return module.MLDSA44PublicKey.from_public_bytes(raw)
    except (ImportError, UnsupportedAlgorithm):
        raise VKeyError(
            f"ML-DSA-44 needs a cryptography package that supports it (installed: {cryptography.__version__})"
        ) from None
    except ValueError as exc:
        raise VKeyError(f"not an ML-DSA-44 public key: {exc}") from None


@dataclass(frozen=True)
class WitnessKey:
    """A witness's cosigning key and the (name, key id) its cosignature lines carry."""

    name: str
    key_id: bytes
    algorithm: Algorithm
    public_key: CosignerPublicKey = field(repr=False, compare=False)

    @property
    def raw_key(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verified_timestamp(self, checkpoint: CheckpointBody, payload: bytes) -> int | None:
        """The timestamp of `payload` (u64 timestamp ‖ signature) if it verifies over `checkpoint`, else None."""
        signature_size = ED25519_SIGNATURE_SIZE if self.algorithm == "ed25519" else MLDSA44_SIGNATURE_SIZE
        if len(payload) != TIMESTAMP_SIZE + signature_size:
            return None
        timestamp = int.from_bytes(payload[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        try:
            self.public_key.verify(payload[TIMESTAMP_SIZE:], self.signed_message(checkpoint, timestamp))
        except (InvalidSignature, ValueError):  # ValueError: an origin too long for the subtree message
            return None
        return timestamp

    def signed_message(self, checkpoint: CheckpointBody, timestamp: int) -> bytes:
        if self.algorithm == "ed25519":
            return cosignature_message(checkpoint.text, timestamp)
        return subtree_message(self.name, timestamp, checkpoint.origin, checkpoint.size, checkpoint.root_hash)


def witness_key(text: str) -> WitnessKey:
    """A witness's vkey: type 0x04 (Ed25519), 0x06 (ML-DSA-44), or 0x01 (an Ed25519 note key, used as 0x04)."""
    vkey = parse_vkey(text)
    if vkey.key_type in (NOTE_ED25519, COSIGNATURE_ED25519):
        vkey.check(ED25519_KEY_SIZE)
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(vkey.key)
        return WitnessKey(vkey.name, key_id(vkey.name, COSIGNATURE_ED25519, vkey.key), "ed25519", public_key)
    if vkey.key_type == COSIGNATURE_MLDSA44:
        vkey.check(MLDSA44_KEY_SIZE)
        if len(vkey.name.encode("utf-8")) > MAX_SUBTREE_NAME_BYTES:
            raise VKeyError(f"an ML-DSA-44 cosigner name is at most {MAX_SUBTREE_NAME_BYTES} bytes")
        return WitnessKey(vkey.name, vkey.key_id, "ml-dsa-44", _mldsa44_public_key(vkey.key))
    raise VKeyError(
        f"key type 0x{vkey.key_type:02x} is not a cosignature key (0x04 Ed25519, 0x06 ML-DSA-44, 0x01 Ed25519)"
    )


def log_verifier(text: str) -> NoteVerifier:
    """A log's vkey, type 0x01 (Ed25519) or 0x02 (ECDSA P-256, SPKI DER), as a checkpoint verifier."""
    vkey = parse_vkey(text)
    if vkey.key_type == NOTE_ED25519:
        vkey.check(ED25519_KEY_SIZE)
        spki = ed25519.Ed25519PublicKey.from_public_bytes(vkey.key).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif vkey.key_type == NOTE_ECDSA:
        spki = vkey.key
    else:
        raise VKeyError(f"key type 0x{vkey.key_type:02x} is not a log key (0x01 Ed25519, 0x02 ECDSA P-256)")
    try:
        verifier = verifier_for_key(vkey.name, spki)
    except NoteError as exc:
        raise VKeyError(str(exc)) from None
    if vkey.key_type == NOTE_ECDSA and not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise VKeyError("a type 0x02 key must be an ECDSA P-256 key")
    if verifier.key_id != vkey.key_id:
        raise VKeyError(f"key id {vkey.key_id.hex()} is not the id of this key ({verifier.key_id.hex()})")
    return verifier


# -- cosignatures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointBody:
    """A checkpoint's signed text and the fields cosignatures cover."""

    text: str
    origin: str
    size: int
    root_hash: bytes

    @classmethod
    def parse(cls, text: str) -> CheckpointBody:
        origin, size, root_hash, _ = parse_checkpoint_body(text)
        return cls(text, origin, size, root_hash)


def cosignature_message(body: str, timestamp: int) -> bytes:
    """What an Ed25519 cosignature/v1 signs: two header lines, then the whole checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def subtree_message(cosigner: str, timestamp: int, origin: str, size: int, root_hash: bytes) -> bytes:
    """What an ML-DSA-44 cosignature signs: the binary subtree/v1 `cosigned_message` for [0, size).

    Extension lines are not covered. Raises ValueError when the name or the origin exceeds 255 bytes.
    """
    name, origin_bytes = cosigner.encode("utf-8"), origin.encode("utf-8")
    if not 0 < len(name) <= MAX_SUBTREE_NAME_BYTES or not 0 < len(origin_bytes) <= MAX_SUBTREE_NAME_BYTES:
        raise ValueError("a subtree/v1 cosigner name and origin are 1 to 255 bytes")
    return b"".join(
        (
            SUBTREE_LABEL,
            bytes([len(name)]),
            name,
            timestamp.to_bytes(8, "big"),
            bytes([len(origin_bytes)]),
            origin_bytes,
            (0).to_bytes(8, "big"),
            size.to_bytes(8, "big"),
            root_hash,
        )
    )


def cosigner_key(name: str, public_key: CosignerPublicKey) -> WitnessKey:
    """The witness key of an Ed25519 or ML-DSA-44 public key cosigning as `name`."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return WitnessKey(name, key_id(name, COSIGNATURE_ED25519, raw), "ed25519", public_key)
    if isinstance(public_key, importlib.import_module(MLDSA_MODULE).MLDSA44PublicKey):
        return WitnessKey(name, key_id(name, COSIGNATURE_MLDSA44, raw), "ml-dsa-44", public_key)
    raise TypeError(f"a cosigner key is Ed25519 or ML-DSA-44, not {type(public_key).__name__}")


def witness_vkey(key: WitnessKey) -> str:
    """The cosignature vkey (type 0x04 or 0x06) of a witness key, as policies write it."""
    key_type = COSIGNATURE_ED25519 if key.algorithm == "ed25519" else COSIGNATURE_MLDSA44
    encoded = base64.b64encode(bytes([key_type]) + key.raw_key).decode("ascii")
    return f"{key.name}+{key.key_id.hex()}+{encoded}"


def cosign(note: str, name: str, private_key: CosignerPrivateKey, timestamp: int) -> str:
    """`note` (a signed checkpoint) with one more line: the cosignature of `name` made at `timestamp`."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {timestamp} is out of range")
    body, _ = split_note(note)
    key = cosigner_key(name, private_key.public_key())
    signature = private_key.sign(key.signed_message(CheckpointBody.parse(body), timestamp))
    return note + signature_line(name, key.key_id, timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature)


# -- policies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLog:
    """A `log <vkey> [<url>]` line: a key the policy accepts checkpoints from."""

    verifier: NoteVerifier
    url: str | None

    @property
    def origin(self) -> str:
        """The key name, which tlog-policy says is the log's origin."""
        return self.verifier.name

    @property
    def spki_der(self) -> bytes:
        return self.verifier.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class PolicyWitness:
    """A `witness <name> <vkey> [<url>]` line; `name` is the policy's own name for it."""

    name: str
    key: WitnessKey
    url: str | None


@dataclass(frozen=True)
class PolicyGroup:
    """A `group <name> <k>|any|all <member>...` line, `any` and `all` resolved to a threshold."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class WitnessPolicy:
    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[PolicyGroup, ...]
    quorum: str | None
    """The witness or group that must be satisfied; None for `quorum none`."""

    def quorum_met(self, satisfied: Collection[str]) -> bool:
        """Whether the quorum holds when exactly the witnesses named in `satisfied` are satisfied."""
        if self.quorum is None:
            return True
        met = {witness.name: witness.name in satisfied for witness in self.witnesses}
        for group in self.groups:
            met[group.name] = sum(met[member] for member in group.members) >= group.threshold
        return met[self.quorum]


def _quoted(name: str) -> str:
    return '"' + (name if len(name) <= 64 else name[:61] + "...") + '"'


@dataclass
class _PolicyReader:
    """The policy as read so far, and what later lines are checked against."""

    logs: list[PolicyLog] = field(default_factory=list)
    witnesses: list[PolicyWitness] = field(default_factory=list)
    groups: list[PolicyGroup] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)
    member_of: dict[str, str] = field(default_factory=dict)
    log_keys: set[bytes] = field(default_factory=set)
    witness_keys: dict[bytes, str] = field(default_factory=dict)
    quorum: str | None = None
    quorum_line: int | None = None

    def read(self, number: int, line: str) -> None:
        if _CONTROL_CHARACTER.search(line):
            raise PolicyError(number, "control characters other than tab are not allowed")
        fields = _SEPARATORS.split(line.strip(" \t"))
        if not fields[0] or fields[0].startswith("#"):
            return
        keyword, *arguments = fields
        statements: dict[str, Callable[[int, list[str]], None]] = {
            "log": self.log,
            "witness": self.witness,
            "group": self.group,
            "quorum": self.read_quorum,
        }
        statement = statements.get(keyword)
        if statement is None:
            raise PolicyError(number, f"unknown keyword {_quoted(keyword)} (log, witness, group or quorum)")
        statement(number, arguments)

    def log(self, number: int, arguments: list[str]) -> None:
        if len(arguments) not in (1, 2):
            raise PolicyError(number, "a log line is: log <vkey> [<url>]")
        try:
            verifier = log_verifier(arguments[0])
        except VKeyError as exc:
            raise PolicyError(number, f"log key: {exc}") from None
        entry = PolicyLog(verifier, arguments[1] if len(arguments) == 2 else None)
        if entry.spki_der in self.log_keys:
            raise PolicyError(number, f"log {verifier.name}: the same key is already a log of this policy")
        self.log_keys.add(entry.spki_der)
        self.logs.append(entry)
        self.check_count(number, self.logs, "logs")

    def witness(self, number: int, arguments: list[str]) -> None:
        if len(arguments) not in (2, 3):
            raise PolicyError(number, "a witness line is: witness <name> <vkey> [<url>]")
        name = arguments[0]
        self.check_new_name(number, name)
        try:
            key = witness_key(arguments[1])
        except VKeyError as exc:
            raise PolicyError(number, f"witness {name}: {exc}") from None
        other = self.witness_keys.get(key.raw_key)
        if other is not None:
            raise PolicyError(number, f"witness {name} has the same key as witness {other}")
        self.witness_keys[key.raw_key] = name
        self.defined.add(name)
        self.witnesses.append(PolicyWitness(name, key, arguments[2] if len(arguments) == 3 else None))
        self.check_count(number, self.witnesses, "witnesses")

    def group(self, number: int, arguments: list[str]) -> None:
        if len(arguments) < 3:
            raise PolicyError(number, "a group line is: group <name> <k>|any|all <member>...")
        name, threshold_text, *members = arguments
        self.check_new_name(number, name)
        threshold = self.threshold(number, name, threshold_text, len(members))
        for member in members:
            if member not in self.defined:
                raise PolicyError(number, f"unknown witness {_quoted(member)} in group {name}")
            if member in self.member_of:
                owner = self.member_of[member]
                raise PolicyError(number, f"{_quoted(member)} is already a member of group {owner}")
            self.member_of[member] = name
        self.defined.add(name)
        self.groups.append(PolicyGroup(name, threshold, tuple(members)))
        self.check_count(number, self.groups, "groups")

    @staticmethod
    def threshold(number: int, group: str, text: str, members: int) -> int:
        if text == "any":
            return 1
        if text == "all":
            return members
        if not _THRESHOLD.fullmatch(text):
            raise PolicyError(number, f"group {group}: threshold {_quoted(text)} is not a number, any or all")
        threshold = int(text)
        if not 1 <= threshold <= members:
            raise PolicyError(number, f"group {group}: threshold {threshold} is not between 1 and {members}")
        return threshold

    def read_quorum(self, number: int, arguments: list[str]) -> None:
        if len(arguments) != 1:
            raise PolicyError(number, "a quorum line is: quorum <name>|none")
        if self.quorum_line is not None:
            raise PolicyError(number, f"a second quorum line (the first is line {self.quorum_line})")
        (name,) = arguments
        if name != QUORUM_NONE and name not in self.defined:
            raise PolicyError(number, f"unknown witness {_quoted(name)} in quorum")
        self.quorum, self.quorum_line = (None if name == QUORUM_NONE else name), number

    def check_new_name(self, number: int, name: str) -> None:
        if name == QUORUM_NONE:
            raise PolicyError(number, f'the name "{QUORUM_NONE}" is reserved')
        if name in self.defined:
            raise PolicyError(number, f"{_quoted(name)} is already defined")

    @staticmethod
    def check_count(number: int, items: list[object], kind: str) -> None:
        if len(items) > MAX_POLICY_DEFINITIONS:
            raise PolicyError(number, f"more than {MAX_POLICY_DEFINITIONS} {kind}")

    def policy(self) -> WitnessPolicy:
        if self.quorum_line is None:
            raise PolicyError(None, "no quorum line (a policy has exactly one: quorum <name>|none)")
        return WitnessPolicy(tuple(self.logs), tuple(self.witnesses), tuple(self.groups), self.quorum)


def parse_policy(text: str) -> WitnessPolicy:
    """A C2SP tlog-policy text (`log`, `witness`, `group`, `quorum` lines, `#` comments) -> its policy."""
    if len(text) > MAX_POLICY_CHARACTERS:
        raise PolicyError(None, f"the policy is longer than {MAX_POLICY_CHARACTERS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PolicyError(None, "the policy is not valid UTF-8") from None
    reader = _PolicyReader()
    for number, line in enumerate(text.split("\n"), start=1):
        reader.read(number, line)
    return reader.policy()


# -- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cosigner:
    name: str
    """The witness's name in the policy."""
    timestamp: int
    """When it cosigned, in Unix seconds (the newest of its lines)."""


@dataclass(frozen=True)
class WitnessVerdict:
    """How one checkpoint fares under a policy; every tuple is in the policy's witness order."""

    satisfied: bool
    cosigners: tuple[Cosigner, ...]
    """The witnesses whose cosignature verified and counts."""
    invalid: tuple[str, ...]
    """The witnesses with a line that does not verify."""
    missing: tuple[str, ...]
    """The witnesses without a line."""
    future: tuple[str, ...]
    """The witnesses whose only valid lines are dated more than FUTURE_TOLERANCE_SECONDS ahead."""


def evaluate(policy: WitnessPolicy, note: str, now: datetime) -> WitnessVerdict:
    """Which policy witnesses cosigned the checkpoint `note`, and whether they meet the quorum.

    The log's signature is not checked (see the module docstring). Raises NoteError if `note` is not a
    signed checkpoint note.
    """
    body, signatures = split_note(note)
    checkpoint = CheckpointBody.parse(body)
    latest = int(now.timestamp()) + FUTURE_TOLERANCE_SECONDS
    by_line = {(witness.key.name, witness.key.key_id): witness for witness in policy.witnesses}
    newest: dict[str, int] = {}
    invalid: set[str] = set()
    future: set[str] = set()
    for signature in signatures:
        witness = by_line.get((signature.name, signature.key_id))
        if witness is None:
            continue
        timestamp = witness.key.verified_timestamp(checkpoint, signature.signature)
        if timestamp is None:
            invalid.add(witness.name)
        elif timestamp > latest:
            future.add(witness.name)
        else:
            newest[witness.name] = max(timestamp, newest.get(witness.name, 0))
    counted = {name: timestamp for name, timestamp in newest.items() if name not in invalid}
    order = [witness.name for witness in policy.witnesses]
    return WitnessVerdict(
        satisfied=policy.quorum_met(counted.keys()),
        cosigners=tuple(Cosigner(name, counted[name]) for name in order if name in counted),
        invalid=tuple(name for name in order if name in invalid),
        missing=tuple(name for name in order if name not in invalid | future | newest.keys()),
        future=tuple(name for name in order if name in future and name not in invalid | counted.keys()),
    )
