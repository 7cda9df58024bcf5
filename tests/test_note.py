"""Signed notes and checkpoints: real Rekor v1/v2 checkpoints against the trust roots, tampering,
hostile input, and the signing side's round trip."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.tlog.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteError,
    NoteVerifier,
    format_checkpoint_body,
    open_checkpoint,
    parse_checkpoint_body,
    sign_note,
    split_note,
    verifier_for_key,
)
from tests.paths import SIGSTORE

ROOT_B64 = base64.b64encode(bytes(range(32))).decode()


def _spki(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _trust_root_logs(file_name: str) -> dict[str, dict]:
    """The tlogs of a trusted_root.json by scheme-less base URL (which is also the note key name)."""
    trusted_root = json.loads((SIGSTORE / file_name).read_text())
    return {log["baseUrl"].removeprefix("https://"): log for log in trusted_root["tlogs"]}


TRUST_ROOTS = {name: _trust_root_logs(name) for name in ("trusted_root.json", "trusted_root.staging.json")}


def _log_verifier(trust_root: str, key_name: str) -> NoteVerifier:
    log = TRUST_ROOTS[trust_root][key_name]
    return verifier_for_key(key_name, base64.b64decode(log["publicKey"]["rawBytes"]))


ALL_VERIFIERS = [_log_verifier(root, name) for root, logs in TRUST_ROOTS.items() for name in logs]


@dataclass(frozen=True)
class RealCheckpoint:
    fixture: str
    trust_root: str
    key_name: str
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...]
    note: str
    unknown_signers: int = 0

    @property
    def verifier(self) -> NoteVerifier:
        return _log_verifier(self.trust_root, self.key_name)


def _from_bundle(
    fixture: str, trust_root: str, key_name: str, origin: str, *, unknown_signers: int = 0
) -> RealCheckpoint:
    entry = json.loads((SIGSTORE / fixture).read_text())["verificationMaterial"]["tlogEntries"][0]
    proof = entry["inclusionProof"]
    return RealCheckpoint(
        fixture,
        trust_root,
        key_name,
        origin,
        int(proof["treeSize"]),
        base64.b64decode(proof["rootHash"]),
        (),
        proof["checkpoint"]["envelope"],
        unknown_signers,
    )


def _from_rest_entry(fixture: str, trust_root: str, key_name: str, origin: str) -> RealCheckpoint:
    proof = json.loads((SIGSTORE / fixture).read_text())["verification"]["inclusionProof"]
    return RealCheckpoint(
        fixture,
        trust_root,
        key_name,
        origin,
        proof["treeSize"],
        bytes.fromhex(proof["rootHash"]),
        ("Timestamp: 1703705040158839214",),
        proof["checkpoint"],
    )


REAL_CHECKPOINTS = {
    "v1-hashedrekord": _from_bundle(
        "bundle_v3_github.whl.sigstore",
        "trusted_root.json",
        "rekor.sigstore.dev",
        "rekor.sigstore.dev - 2605736670972794746",
    ),
    "v1-dsse-shard3": _from_bundle(
        "happy-path-intoto-in-dsse-v3.bundle.sigstore.json",
        "trusted_root.json",
        "rekor.sigstore.dev",
        "rekor.sigstore.dev - 1193050959916656506",
    ),
    "v1-rest-entry-2023": _from_rest_entry(
        "docker-attest.tlog.mock.go.TestEntry.json",
        "trusted_root.json",
        "rekor.sigstore.dev",
        "rekor.sigstore.dev - 2605736670972794746",
    ),
    "v2-staging-ed25519": _from_bundle(
        "staging-rekor-v2.txt.sigstore.json",
        "trusted_root.staging.json",
        "log2025-alpha1.rekor.sigstage.dev",
        "log2025-alpha1.rekor.sigstage.dev",
    ),
    # Also signed under the same key name with an unknown key id, and cosigned by a witness.
    "v2-cosigned": _from_bundle(
        "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json",
        "trusted_root.staging.json",
        "log2025-alpha1.rekor.sigstage.dev",
        "log2025-alpha1.rekor.sigstage.dev",
        unknown_signers=2,
    ),
}
REAL = pytest.mark.parametrize("real", REAL_CHECKPOINTS.values(), ids=REAL_CHECKPOINTS.keys())


# --- key ids ---


@pytest.mark.parametrize(
    ("trust_root", "key_name"),
    [(root, name) for root, logs in TRUST_ROOTS.items() for name in logs],
)
def test_key_id_is_the_prefix_of_the_trust_root_log_id(trust_root: str, key_name: str) -> None:
    """v1 log ids are SHA256(SPKI); v2 (Ed25519) ones are the full hash the note key id truncates."""
    log_id = base64.b64decode(TRUST_ROOTS[trust_root][key_name]["logId"]["keyId"])
    assert _log_verifier(trust_root, key_name).key_id == log_id[:4]


def test_rsa_key_id_and_signature() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = "rsa.example"
    body = format_checkpoint_body("rsa.example", 3, bytes(32))
    key_id = hashlib.sha256(name.encode() + b"\n\xffPKIX-RSA-PKCS#1v1.5" + _spki(key)).digest()[:4]
    signature = key.sign(body.encode(), padding.PKCS1v15(), hashes.SHA256())
    note = f"{body}\n— {name} {base64.b64encode(key_id + signature).decode()}\n"
    verifier = verifier_for_key(name, _spki(key))
    assert verifier.key_id == key_id
    assert open_checkpoint(note, [verifier]).size == 3


def test_verifier_for_key_rejects_bad_keys() -> None:
    with pytest.raises(NoteError):
        verifier_for_key("log.example", b"not a key")
    with pytest.raises(NoteError):
        verifier_for_key("log.example", _spki(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(NoteError):
        verifier_for_key("log.example", _spki(ed448.Ed448PrivateKey.generate()))  # type: ignore[arg-type]
    for bad_name in ("", "has space", "has+plus"):
        with pytest.raises(NoteError):
            verifier_for_key(bad_name, _spki(ed25519.Ed25519PrivateKey.generate()))


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ecdsa", "ed25519", "rsa"],
)
@pytest.mark.parametrize("signature", [b"", b"\x00", b"\x30" * 71, bytes(64), bytes(256)])
def test_verify_returns_false_on_garbage(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, signature: bytes
) -> None:
    assert verifier_for_key("log.example", _spki(key)).verify(b"message\n", signature) is False


# --- real checkpoints ---


@REAL
def test_real_checkpoint_verifies(real: RealCheckpoint) -> None:
    for verifiers in ([real.verifier], ALL_VERIFIERS):
        checkpoint = open_checkpoint(real.note, verifiers, origin=real.origin)
        assert checkpoint == Checkpoint(real.origin, real.size, real.root_hash, real.extensions, real.note)


@REAL
def test_real_checkpoint_wrong_origin(real: RealCheckpoint) -> None:
    for wrong in (real.origin + " ", real.origin[:-1], "rekor.sigstore.dev - 1"):
        with pytest.raises(NoteError, match="origin"):
            open_checkpoint(real.note, [real.verifier], origin=wrong)


@REAL
def test_real_checkpoint_without_its_key_is_rejected(real: RealCheckpoint) -> None:
    others = [verifier for verifier in ALL_VERIFIERS if verifier.key_id != real.verifier.key_id]
    for verifiers in ([], others):
        with pytest.raises(NoteError, match="no signature by a known"):
            open_checkpoint(real.note, verifiers)


def _unknown_line_spans(real: RealCheckpoint) -> list[range]:
    """Byte ranges of the signature lines (without their newline) of signers we do not know."""
    body, signatures = split_note(real.note)
    lines = real.note[len(body) + 1 : -1].split("\n")
    spans, offset = [], len(body.encode()) + 1
    for line, signature in zip(lines, signatures, strict=True):
        length = len(line.encode())
        if (signature.name, signature.key_id) != (real.verifier.name, real.verifier.key_id):
            spans.append(range(offset, offset + length))
        offset += length + 1
    return spans


@REAL
def test_real_checkpoint_every_bit_flip_is_rejected(real: RealCheckpoint) -> None:
    """Each single-bit change outside unknown signers' lines must be rejected.

    Flipping a bit of the base64 character just before the padding can leave the decoded bytes
    unchanged, when only the bits the padding discards move ('g' -> 'o' in v1-hashedrekord,
    'E' -> 'G' in v2-staging-ed25519, '8' -> '9' in v2-cosigned). open_checkpoint accepts only
    canonical base64, so those flips are rejected too and no position is exempted for them.
    """
    original = real.note.encode()
    spans = _unknown_line_spans(real)
    assert len(spans) == real.unknown_signers
    skipped = {position for span in spans for position in span}
    checked = 0
    verifier = real.verifier
    for position in range(len(original)):
        if position in skipped:
            continue
        for bit in range(8):
            tampered = bytearray(original)
            tampered[position] ^= 1 << bit
            note = tampered.decode("utf-8", errors="surrogateescape")
            with pytest.raises(NoteError):
                open_checkpoint(note, [verifier])
            checked += 1
    assert checked == 8 * (len(original) - len(skipped))


def test_non_canonical_base64_signature_is_rejected() -> None:
    real = REAL_CHECKPOINTS["v1-hashedrekord"]
    encoded = real.note.rsplit(" ", 1)[1].rstrip("\n")
    assert encoded.endswith("8g==")
    # 'h' differs from 'g' only in the four bits the padding discards.
    respelled = encoded[:-3] + "h=="
    assert base64.b64decode(respelled) == base64.b64decode(encoded)
    with pytest.raises(NoteError, match="canonical"):
        open_checkpoint(real.note.replace(encoded, respelled), [real.verifier])


def test_unknown_signature_lines_are_ignored() -> None:
    real = REAL_CHECKPOINTS["v1-hashedrekord"]
    witness = ed25519.Ed25519PrivateKey.generate()
    body, _ = split_note(real.note)
    witness_line = sign_note(body, "witness.example", witness).split("\n\n", 1)[1]
    same_name_other_key = "— rekor.sigstore.dev " + base64.b64encode(b"\x01\x02\x03\x04" + bytes(64)).decode()
    note = real.note + witness_line + same_name_other_key + "\n"
    assert open_checkpoint(note, [real.verifier]).root_hash == real.root_hash


@pytest.mark.parametrize("bad_first", [True, False], ids=["bad-line-first", "bad-line-last"])
def test_bad_known_signature_rejects_the_note_even_with_a_valid_one(bad_first: bool) -> None:
    real = REAL_CHECKPOINTS["v2-cosigned"]
    body, signatures = split_note(real.note)
    known = signatures[0]
    corrupted = known.signature[:-1] + bytes([known.signature[-1] ^ 1])
    bad_line = f"— {known.name} {base64.b64encode(known.key_id + corrupted).decode()}\n"
    good_lines = real.note[len(body) + 1 :]
    note = body + "\n" + (bad_line + good_lines if bad_first else good_lines + bad_line)
    with pytest.raises(NoteError, match="invalid signature by log2025-alpha1"):
        open_checkpoint(note, [real.verifier])


def test_bad_signature_from_a_second_known_key_rejects() -> None:
    log_key, other_key = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    body = format_checkpoint_body("log.example", 10, bytes(32))
    good = sign_note(body, "log.example", log_key)
    forged = sign_note(body.replace("10", "11"), "other.example", other_key).split("\n\n", 1)[1]
    verifiers = [verifier_for_key("log.example", _spki(log_key)), verifier_for_key("other.example", _spki(other_key))]
    assert open_checkpoint(good, verifiers).size == 10
    with pytest.raises(NoteError, match=r"invalid signature by other\.example"):
        open_checkpoint(good + forged, verifiers)


# --- signing side ---


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["ecdsa-p256", "ed25519"],
)
def test_sign_and_open_round_trip(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    root_hash = hashlib.sha256(b"root").digest()
    body = format_checkpoint_body("log.example - 42", 2**64 - 1, root_hash, ("Timestamp: 1", "x"))
    note = sign_note(body, "log.example", key)
    checkpoint = open_checkpoint(note, [verifier_for_key("log.example", _spki(key))], origin="log.example - 42")
    assert checkpoint == Checkpoint("log.example - 42", 2**64 - 1, root_hash, ("Timestamp: 1", "x"), note)


def test_sign_note_and_format_reject_bad_input() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ValueError):
        sign_note("no final newline", "log.example", key)
    with pytest.raises(ValueError):
        sign_note("body\n", "log.example", ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    with pytest.raises(NoteError):
        sign_note("body\n", "bad name", key)
    bad_bodies = [
        ("", 1, bytes(32), ()),
        ("a\nb", 1, bytes(32), ()),
        ("o", -1, bytes(32), ()),
        ("o", 2**64, bytes(32), ()),
        ("o", 1, bytes(31), ()),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("two\nlines",)),
    ]
    for origin, size, root_hash, extensions in bad_bodies:
        with pytest.raises(ValueError):
            format_checkpoint_body(origin, size, root_hash, extensions)


# --- strict parsing ---


@pytest.mark.parametrize(
    "body",
    [
        f"origin\n01\n{ROOT_B64}\n",
        f"origin\n+1\n{ROOT_B64}\n",
        f"origin\n-1\n{ROOT_B64}\n",
        f"origin\n 1\n{ROOT_B64}\n",
        f"origin\n1 \n{ROOT_B64}\n",
        f"origin\n\n{ROOT_B64}\n",
        f"origin\n١\n{ROOT_B64}\n",
        f"origin\n{2**64}\n{ROOT_B64}\n",
        f"origin\n{'9' * 5000}\n{ROOT_B64}\n",
        f"origin\n1\n{ROOT_B64}",
        f"\n1\n{ROOT_B64}\n",
        f"origin\n1\n{ROOT_B64}\n\nextension after an empty line\n",
        "origin\n1\n",
        f"origin\n1\n{base64.b64encode(bytes(31)).decode()}\n",
        f"origin\n1\n{base64.b64encode(bytes(33)).decode()}\n",
        f"origin\n1\n{ROOT_B64.rstrip('=')}\n",
        f"origin\n1\n{ROOT_B64[:-2]}9=\n",
        f"origin\n1\n {ROOT_B64}\n",
    ],
)
def test_parse_checkpoint_body_is_strict(body: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint_body(body)


def test_parse_checkpoint_body_accepts_the_extremes() -> None:
    assert parse_checkpoint_body(f"o\n0\n{ROOT_B64}\n") == ("o", 0, bytes(range(32)), ())
    assert parse_checkpoint_body(f"o\n{2**64 - 1}\n{ROOT_B64}\nA\nB\n")[1:] == (2**64 - 1, bytes(range(32)), ("A", "B"))


VALID_LINE = "— log.example " + base64.b64encode(b"\x01\x02\x03\x04\x05").decode()


@pytest.mark.parametrize(
    "note",
    [
        "",
        "body\n",
        f"body\n{VALID_LINE}\n",
        f"body\n\n{VALID_LINE}",
        f"body\n\n{VALID_LINE}\n\n",
        f"body\n\n{VALID_LINE.replace('—', '-')}\n",
        f"body\n\n{VALID_LINE.replace('— ', '—')}\n",
        f"body\n\n{VALID_LINE.replace('log.example', 'log example')}\n",
        f"body\n\n{VALID_LINE.replace('log.example', 'log+example')}\n",
        "body\n\n" + VALID_LINE.replace("log.example", "log\u00a0example") + "\n",
        f"body\n\n{VALID_LINE.replace('log.example ', '')}\n",
        f"body\n\n{VALID_LINE.replace('log.example', '')}\n",
        f"body\n\n{VALID_LINE} \n",
        "body\n\n— log.example AQIDBA==\n",
        "body\n\n— log.example \n",
        f"body\n\n{VALID_LINE}\nnot a signature\n",
        f"bo\tdy\n\n{VALID_LINE}\n",
        f"bo\rdy\n\n{VALID_LINE}\n",
        f"bo\udc80dy\n\n{VALID_LINE}\n",
        "body\n\n" + f"{VALID_LINE}\n" * 101,
        "x" * MAX_NOTE_BYTES + f"\n\n{VALID_LINE}\n",
        "é" * (MAX_NOTE_BYTES // 2) + f"\n\n{VALID_LINE}\n",
    ],
)
def test_split_note_rejects_malformed_notes(note: str) -> None:
    with pytest.raises(NoteError):
        split_note(note)


def test_split_note_splits_at_the_last_blank_line() -> None:
    body, signatures = split_note(f"a\n\nb\n\n{VALID_LINE}\n{VALID_LINE}\n")
    assert body == "a\n\nb\n"
    assert [(s.name, s.key_id, s.signature) for s in signatures] == [("log.example", b"\x01\x02\x03\x04", b"\x05")] * 2


# --- hostile input ---

HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_note_errors(note: str) -> None:
    for parse in (split_note, parse_checkpoint_body):
        with contextlib.suppress(NoteError):
            parse(note)
    with pytest.raises(NoteError):
        open_checkpoint(note, ALL_VERIFIERS)


@HOSTILE
@given(st.text())
def test_garbage_text_raises_only_note_error(note: str) -> None:
    _only_note_errors(note)


@HOSTILE
@given(st.binary().map(lambda raw: raw.decode("utf-8", errors="surrogateescape")))
def test_garbage_bytes_raise_only_note_error(note: str) -> None:
    _only_note_errors(note)


@HOSTILE
@given(st.lists(st.text(alphabet="—\n =+/AZaz09.-\t", max_size=30), max_size=8).map("\n".join))
def test_note_shaped_garbage_raises_only_note_error(note: str) -> None:
    _only_note_errors(note)


@HOSTILE
@given(st.data())
def test_spliced_real_checkpoint_is_rejected_or_unchanged(data: st.DataObject) -> None:
    real = data.draw(st.sampled_from(list(REAL_CHECKPOINTS.values())))
    original = real.note.encode()
    position = data.draw(st.integers(0, len(original)))
    removed = data.draw(st.integers(0, 8))
    inserted = data.draw(st.binary(max_size=16))
    spliced = original[:position] + inserted + original[position + removed :]
    note = spliced.decode("utf-8", errors="surrogateescape")
    try:
        checkpoint = open_checkpoint(note, [real.verifier])
    except NoteError:
        return
    # Only an edit confined to unknown signers' lines can leave the note valid.
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (real.origin, real.size, real.root_hash)
    assert split_note(note)[0] == split_note(real.note)[0]
