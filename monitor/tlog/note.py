"""C2SP signed notes and tlog checkpoints: parse, verify, and (for the simulator) sign.

A note is `body` ‖ "\\n" ‖ signature lines, each `— <name> base64(key id[4] ‖ signature)\\n`.
The signed message is the body, final newline included. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
KEY_ID_SIZE = 4
ROOT_HASH_SIZE = 32

_SIGNATURE_PREFIX = "— "
_SIGNATURE_SPLIT = "\n\n"
# Like Go's note package: no ASCII control characters other than newline.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x09\x0b-\x1f]")
# 2**64 - 1 has 20 digits; the bound also keeps hostile input away from int()'s digit limit.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_TREE_SIZE = (1 << 64) - 1

ED25519_KEY_TYPE = 0x01
_RSA_KEY_TYPE = b"\xff" + b"PKIX-RSA-PKCS#1v1.5"

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class NoteError(Exception):
    """A signed note or checkpoint is malformed, unsigned, or signed wrongly."""


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class NoteVerifier:
    """A log key as a signed-note verifier, identified in notes by (name, key_id), or by key_id alone
    when `any_name` (Rekor v1 signs under a server flag, not a name clients can know)."""

    name: str
    key_id: bytes
    public_key: PublicKey = field(repr=False, hash=False)
    any_name: bool = False

    def verify(self, message: bytes, signature: bytes) -> bool:
        key = self.public_key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def decode_base64(text: str, what: str) -> bytes:
    """Strict, canonical base64: one encoding per byte string, so a note has one valid spelling."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def is_valid_key_name(name: str) -> bool:
    """A signed-note key name: non-empty, no '+', no whitespace."""
    return bool(name) and "+" not in name and not any(char.isspace() for char in name)


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise NoteError("a signature line must start with an em dash and a space")
    name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise NoteError(f"invalid key name {name!r}")
    blob = decode_base64(encoded, f"the signature by {name}")
    if len(blob) <= KEY_ID_SIZE:
        raise NoteError(f"the signature by {name} is too short")
    return NoteSignature(name, blob[:KEY_ID_SIZE], blob[KEY_ID_SIZE:])


def _check_note_text(note: str) -> None:
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError("note too large")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise NoteError("note is not valid UTF-8") from exc
    if size > MAX_NOTE_BYTES:
        raise NoteError("note too large")
    if _CONTROL_CHARACTER.search(note):
        raise NoteError("note contains a control character")


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its body (with its final newline) and its parsed signature lines."""
    _check_note_text(note)
    split = note.rfind(_SIGNATURE_SPLIT)
    if split < 0:
        raise NoteError("note has no signature block")
    body, signature_block = note[: split + 1], note[split + 2 :]
    if not signature_block.endswith("\n"):
        raise NoteError("note must end with a newline")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    return body, [_parse_signature_line(line) for line in lines]


def _parse_tree_size(text: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise NoteError(f"tree size {text!r} is not a canonical decimal")
    size = int(text)
    if size > _MAX_TREE_SIZE:
        raise NoteError("tree size does not fit in 64 bits")
    return size


def parse_checkpoint_body(body: str) -> tuple[str, int, bytes, tuple[str, ...]]:
    """(origin, tree size, root hash, extension lines) of a checkpoint body."""
    if not body.endswith("\n"):
        raise NoteError("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint body needs an origin, a size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("empty checkpoint origin")
    size = _parse_tree_size(size_text)
    root_hash = decode_base64(root_text, "root hash")
    if len(root_hash) != ROOT_HASH_SIZE:
        raise NoteError(f"root hash is {len(root_hash)} bytes, not {ROOT_HASH_SIZE}")
    if not all(extensions):
        raise NoteError("empty checkpoint extension line")
    return origin, size, root_hash, tuple(extensions)


def origin_log_id(origin: str) -> str:
    """The id witnesses and distributors give the log of a checkpoint origin: hex SHA-256("o:" ‖ origin)."""
    return hashlib.sha256(b"o:" + origin.encode("utf-8")).hexdigest()


def key_id(name: str, key_type: int, key: bytes) -> bytes:
    """The signed-note key id: SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + key).digest()[:KEY_ID_SIZE]


def _canonical_spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verifier_for_key(name: str, spki_der: bytes, *, any_name: bool = False) -> NoteVerifier:
    """A verifier for a log key given as DER SubjectPublicKeyInfo, with the key id logs sign with."""
    if not is_valid_key_name(name):
        raise NoteError(f"invalid key name {name!r}")
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise NoteError(f"cannot load the public key for {name}") from exc
    # Key ids hash the re-encoded SPKI, as Go's x509.MarshalPKIXPublicKey would produce it,
    # so that an equivalent but differently encoded key (e.g. a compressed point) gets the same id.
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        identifier = hashlib.sha256(_canonical_spki(key)).digest()
    elif isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        identifier = key_id(name, ED25519_KEY_TYPE, raw)
    elif isinstance(key, rsa.RSAPublicKey):
        identifier = hashlib.sha256(name.encode() + b"\n" + _RSA_KEY_TYPE + _canonical_spki(key)).digest()
    else:
        raise NoteError(f"unsupported key type for {name}: {type(key).__name__}")
    return NoteVerifier(name, identifier[:KEY_ID_SIZE], key, any_name)


def open_checkpoint(
    note: str, verifiers: Sequence[NoteVerifier], *, origin: str | Callable[[str], bool] | None = None
) -> Checkpoint:
    """Verify a signed checkpoint against known log keys and parse it.

    Every signature by a known (name, key id) must verify and at least one must be present;
    other lines (witness cosignatures, rotated keys) are ignored. `origin` is the origin the
    checkpoint must carry, or a predicate it must satisfy.
    """
    body, signatures = split_note(note)
    known = {(verifier.name, verifier.key_id): verifier for verifier in verifiers if not verifier.any_name}
    by_key_id = {verifier.key_id: verifier for verifier in verifiers if verifier.any_name}
    message = body.encode("utf-8")
    verified = False
    for signature in signatures:
        verifier = known.get((signature.name, signature.key_id)) or by_key_id.get(signature.key_id)
        if verifier is None:
            continue
        if not verifier.verify(message, signature.signature):
            raise NoteError(f"invalid signature by {signature.name} (key id {signature.key_id.hex()})")
        verified = True
    if not verified:
        raise NoteError("no signature by a known log key")
    checkpoint_origin, size, root_hash, extensions = parse_checkpoint_body(body)
    if isinstance(origin, str) and checkpoint_origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint_origin!r} is not {origin!r}")
    if callable(origin) and not origin(checkpoint_origin):
        raise NoteError(f"checkpoint origin {checkpoint_origin[:200]!r} is not this log's")
    return Checkpoint(checkpoint_origin, size, root_hash, extensions, note)


def format_checkpoint_body(origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint body (the text that gets signed) for a tree."""
    if not origin or "\n" in origin:
        raise ValueError(f"invalid origin {origin!r}")
    if not 0 <= size <= _MAX_TREE_SIZE:
        raise ValueError(f"invalid tree size {size}")
    if len(root_hash) != ROOT_HASH_SIZE:
        raise ValueError(f"root hash must be {ROOT_HASH_SIZE} bytes")
    if not all(line and "\n" not in line for line in extensions):
        raise ValueError("extension lines must be non-empty single lines")
    lines = [origin, str(size), base64.b64encode(root_hash).decode("ascii"), *extensions]
    return "".join(line + "\n" for line in lines)


def sign_note(body: str, name: str, private_key: SigningKey) -> str:
    """`body` signed by `private_key` (EC P-256 or Ed25519) under key name `name`, as a note."""
    if not body.endswith("\n"):
        raise ValueError("a note body must end with a newline")
    message = body.encode("utf-8")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(message)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP256R1):
        signature = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError(f"unsupported signing key {type(private_key).__name__}")
    key_id = verifier_for_key(name, _canonical_spki(private_key.public_key())).key_id
    return f"{body}\n{signature_line(name, key_id, signature)}"


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    """One signature line of a note: `— <name> base64(key id ‖ signature)` and its newline."""
    return f"{_SIGNATURE_PREFIX}{name} {base64.b64encode(key_id + signature).decode('ascii')}\n"
