"""Witness cosignatures and policies (monitor.tlog.witness): vkeys, cosignature lines, policy text, quorums.

Real crypto throughout: Ed25519 and ML-DSA-44 witnesses generated here, and the real staging checkpoint
of tests/fixtures/sigstore cosigned by three public witnesses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

from monitor.tlog.note import format_checkpoint_body, sign_note, signature_line, split_note
from monitor.tlog.witness import (
    FUTURE_TOLERANCE_SECONDS,
    Cosigner,
    PolicyError,
    VKeyError,
    cosign,
    cosigner_key,
    evaluate,
    log_verifier,
    parse_policy,
    parse_vkey,
    witness_key,
    witness_vkey,
)

SIGSTORE = Path(__file__).parent / "fixtures" / "sigstore"
STAGING_POLICY = """\
witness geomys witness.navigli.sunlight.geomys.org+a3e00fe2+BNy/co4C1Hn1p+INwJrfUlgz7W55dSZReusH/GhUhJ/G
witness mullvad witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv
witness google staging.witness.transparency.goog/ring-any-bells+2e1a8dc9+BG5JTpLc3FJtwzgh1Uv+Qelz9qeOH2bfWjS1s0s+y4rL
group g 2 geomys mullvad google
quorum g
"""
COSIGNED_AT = 1778700214  # the timestamp of the three staging cosignatures
AFTER_COSIGNING = datetime.fromtimestamp(COSIGNED_AT + 3600, UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LOG_KEY = ed25519.Ed25519PrivateKey.generate()


def fixture_checkpoint(name: str) -> str:
    bundle = json.loads((SIGSTORE / name).read_text())
    return bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]


def checkpoint(size: int = 10, extensions: tuple[str, ...] = ()) -> str:
    body = format_checkpoint_body("log.example.com/test", size, hashlib.sha256(b"%d" % size).digest(), extensions)
    return sign_note(body, "log.example.com/test", LOG_KEY)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Witnesses:
    """Ed25519 witnesses w1..w3 (vkeys `w<n>.example+...`) for policy texts."""

    def __init__(self, count: int = 3) -> None:
        self.keys = {f"w{n}": ed25519.Ed25519PrivateKey.generate() for n in range(1, count + 1)}

    def vkey(self, name: str) -> str:
        return witness_vkey(cosigner_key(f"{name}.example", self.keys[name].public_key()))

    def lines(self) -> str:
        return "".join(f"witness {name} {self.vkey(name)}\n" for name in self.keys)

    def cosign(self, note: str, *names: str, timestamp: int | None = None) -> str:
        when = int(NOW.timestamp()) if timestamp is None else timestamp
        for name in names:
            note = cosign(note, f"{name}.example", self.keys[name], when)
        return note


def flip_last_byte_of_line(note: str, index: int) -> str:
    """The note with the last byte of signature line `index` flipped (its signature no longer verifies)."""
    body, signatures = split_note(note)
    lines = [signature_line(s.name, s.key_id, s.signature) for s in signatures]
    target = signatures[index]
    lines[index] = signature_line(target.name, target.key_id, target.signature[:-1] + bytes([target.signature[-1] ^ 1]))
    return f"{body}\n{''.join(lines)}"


def typed(key_type: int, key: bytes) -> str:
    """The base64 part of a vkey: type byte, then key."""
    return b64(bytes([key_type]) + key)


def raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- vkeys -----------------------------------------------------------------------------------------


def test_a_cosignature_vkey_round_trips() -> None:
    key = witness_key("witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv")
    assert (key.name, key.key_id.hex(), key.algorithm) == ("witness.stagemole.eu", "67f7aea0", "ed25519")
    assert witness_vkey(key) == "witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv"


def test_a_plain_ed25519_note_vkey_is_used_as_a_cosignature_key_with_its_id_recomputed() -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    note_id = hashlib.sha256(b"w.example\n\x01" + raw(public)).digest()[:4]
    cosignature_id = hashlib.sha256(b"w.example\n\x04" + raw(public)).digest()[:4]
    key = witness_key(f"w.example+{note_id.hex()}+{typed(1, raw(public))}")
    assert key.key_id == cosignature_id != note_id
    assert witness_vkey(key) == witness_vkey(cosigner_key("w.example", public))


def test_a_vkey_splits_at_its_first_two_plus_signs_only() -> None:
    vkey = parse_vkey("name+0a0b0c0d+Afs+/g==")  # '+' and '/' inside the base64
    assert (vkey.name, vkey.key_id, vkey.key_type, vkey.key) == ("name", bytes.fromhex("0a0b0c0d"), 1, b"\xfb>\xfe")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("witness.example", "a vkey is <name>+<8 hex key id>+<base64 type and key>"),
        ("witness.example+0a0b0c0d", "a vkey is <name>+<8 hex key id>+<base64 type and key>"),
        ("+0a0b0c0d+BA==", "invalid key name ''"),
        ("witness.example+0a0b0c+BA==", "key id '0a0b0c' is not 8 hex digits"),
        ("witness.example+0a0b0c0g+BA==", "key id '0a0b0c0g' is not 8 hex digits"),
        ("witness.example+0a0b0c0d+BA=*", "the key is not valid base64"),
        ("witness.example+0a0b0c0d+BB==", "the key is not canonical base64"),
        ("witness.example+0a0b0c0d+", "the key is empty"),
        (f"witness.example+0a0b0c0d+{typed(4, bytes(31))}", "a type 0x04 key is 32 bytes, not 31"),
        (f"witness.example+0a0b0c0d+{typed(6, bytes(1311))}", "a type 0x06 key is 1312 bytes, not 1311"),
        (f"witness.example+0a0b0c0d+{typed(5, bytes(32))}", "key type 0x05 is not a cosignature key"),
        (f"witness.example+0a0b0c0d+{typed(2, bytes(32))}", "key type 0x02 is not a cosignature key"),
    ],
)
def test_bad_vkeys_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(VKeyError, match="^" + re.escape(message)):
        witness_key(text)


def test_a_vkey_whose_written_id_is_not_its_keys_is_refused() -> None:
    public = raw(ed25519.Ed25519PrivateKey.generate().public_key())
    right = hashlib.sha256(b"w.example\n\x04" + public).digest()[:4].hex()
    with pytest.raises(VKeyError, match=f"key id 00000000 is not the id of this key \\({right}\\)"):
        witness_key(f"w.example+00000000+{typed(4, public)}")


def test_log_vkeys_ed25519_and_ecdsa_give_the_trust_roots_key_ids() -> None:
    root = json.loads((SIGSTORE / "trusted_root.staging.json").read_text())
    by_url = {tlog["baseUrl"]: tlog for tlog in root["tlogs"]}
    alpha3 = by_url["https://log2025-alpha3.rekor.sigstage.dev"]
    spki = base64.b64decode(alpha3["publicKey"]["rawBytes"])
    ed_key = serialization.load_der_public_key(spki)
    assert isinstance(ed_key, ed25519.Ed25519PublicKey)
    name = "log2025-alpha3.rekor.sigstage.dev"
    key_id = base64.b64decode(alpha3["logId"]["keyId"])[:4]
    verifier = log_verifier(f"{name}+{key_id.hex()}+{typed(1, raw(ed_key))}")
    assert (verifier.name, verifier.key_id) == (name, key_id)

    v1 = by_url["https://rekor.sigstage.dev"]
    v1_spki = base64.b64decode(v1["publicKey"]["rawBytes"])
    v1_id = base64.b64decode(v1["logId"]["keyId"])[:4]
    verifier = log_verifier(f"rekor.sigstage.dev+{v1_id.hex()}+{typed(2, v1_spki)}")
    assert isinstance(verifier.public_key, ec.EllipticCurvePublicKey) and verifier.key_id == v1_id
    with pytest.raises(VKeyError, match="key type 0x04 is not a log key"):
        log_verifier(f"{name}+{key_id.hex()}+{typed(4, raw(ed_key))}")
    with pytest.raises(VKeyError, match="a type 0x02 key must be an ECDSA P-256 key"):
        log_verifier(f"{name}+{hashlib.sha256(spki).hexdigest()[:8]}+{typed(2, spki)}")


def test_without_ml_dsa_support_the_error_names_the_witness(monkeypatch: pytest.MonkeyPatch) -> None:
    vkey = witness_vkey(cosigner_key("pq.example", mldsa.MLDSA44PrivateKey.generate().public_key()))
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.mldsa", None)
    with pytest.raises(PolicyError, match=r"^line 1: witness pq: ML-DSA-44 needs a cryptography package"):
        parse_policy(f"witness pq {vkey}\nquorum pq\n")


# -- cosignatures ----------------------------------------------------------------------------------


def test_a_cosignature_verifies_and_its_timestamp_is_reported() -> None:
    witnesses = Witnesses(1)
    policy = parse_policy(witnesses.lines() + "quorum w1\n")
    verdict = evaluate(policy, witnesses.cosign(checkpoint(), "w1", timestamp=1_700_000_000), NOW)
    assert verdict.satisfied and verdict.cosigners == (Cosigner("w1", 1_700_000_000),)
    assert (verdict.invalid, verdict.missing, verdict.future) == ((), (), ())


def test_a_cosignature_over_another_checkpoint_or_with_a_flipped_byte_is_invalid() -> None:
    witnesses = Witnesses(1)
    policy = parse_policy(witnesses.lines() + "quorum w1\n")
    signed = witnesses.cosign(checkpoint(10), "w1")
    flipped = flip_last_byte_of_line(signed, 1)
    moved = checkpoint(11) + signed.splitlines(keepends=True)[-1]  # w1's line under another tree
    for note in (flipped, moved):
        verdict = evaluate(policy, note, NOW)
        assert not verdict.satisfied and verdict.invalid == ("w1",) and verdict.cosigners == ()


def test_malformed_payloads_of_a_known_witness_are_invalid() -> None:
    witnesses = Witnesses(1)
    policy = parse_policy(witnesses.lines() + "quorum w1\n")
    key_id = policy.witnesses[0].key.key_id
    good = split_note(witnesses.cosign(checkpoint(), "w1"))[1][1].signature
    too_short = good[:-1]
    huge_timestamp = (1 << 63).to_bytes(8, "big") + good[8:]
    for payload in (too_short, huge_timestamp):
        verdict = evaluate(policy, checkpoint() + signature_line("w1.example", key_id, payload), NOW)
        assert verdict.invalid == ("w1",) and not verdict.satisfied


def test_one_bad_line_spoils_a_witness_even_beside_a_good_one() -> None:
    witnesses = Witnesses(1)
    policy = parse_policy(witnesses.lines() + "quorum w1\n")
    good = witnesses.cosign(checkpoint(), "w1")
    both = good + flip_last_byte_of_line(good, 1).splitlines(keepends=True)[-1]
    verdict = evaluate(policy, both, NOW)
    assert (verdict.satisfied, verdict.invalid, verdict.cosigners) == (False, ("w1",), ())


def test_lines_of_unknown_names_or_key_ids_are_ignored() -> None:
    witnesses, strangers = Witnesses(1), Witnesses(1)
    policy = parse_policy(witnesses.lines() + "quorum w1\n")
    note = strangers.cosign(checkpoint(), "w1")  # same key name, another key: another key id
    note += signature_line("other.example", b"\x00\x01\x02\x03", bytes(72))
    verdict = evaluate(policy, note, NOW)
    assert (verdict.satisfied, verdict.invalid, verdict.missing) == (False, (), ("w1",))


def test_a_cosignature_more_than_five_minutes_ahead_does_not_count() -> None:
    witnesses = Witnesses(2)
    policy = parse_policy(witnesses.lines() + "group g all w1 w2\nquorum g\n")
    now = int(NOW.timestamp())
    note = witnesses.cosign(checkpoint(), "w1", timestamp=now + FUTURE_TOLERANCE_SECONDS)
    note = witnesses.cosign(note, "w2", timestamp=now + FUTURE_TOLERANCE_SECONDS + 1)
    verdict = evaluate(policy, note, NOW)
    assert verdict.cosigners == (Cosigner("w1", now + FUTURE_TOLERANCE_SECONDS),)
    assert (verdict.satisfied, verdict.future, verdict.missing) == (False, ("w2",), ())
    later = datetime.fromtimestamp(now + 1, UTC)
    assert evaluate(policy, note, later).satisfied


def test_ml_dsa_44_cosignatures_round_trip_and_do_not_cover_extension_lines() -> None:
    private = mldsa.MLDSA44PrivateKey.generate()
    key = cosigner_key("pq.example", private.public_key())
    assert witness_key(witness_vkey(key)).key_id == key.key_id
    policy = parse_policy(f"witness pq {witness_vkey(key)}\nquorum pq\n")
    note = cosign(checkpoint(extensions=("ext one",)), "pq.example", private, 1_700_000_000)
    assert len(split_note(note)[1][1].signature) == 8 + 2420
    assert evaluate(policy, note, NOW).cosigners == (Cosigner("pq", 1_700_000_000),)
    other_extension = checkpoint(extensions=("ext two",)) + note.splitlines(keepends=True)[-1]
    assert evaluate(policy, other_extension, NOW).satisfied  # the subtree/v1 message has no extensions
    assert evaluate(policy, flip_last_byte_of_line(note, 1), NOW).invalid == ("pq",)
    ed25519_witnesses = Witnesses(1)
    ed_policy = parse_policy(ed25519_witnesses.lines() + "quorum w1\n")
    ed_note = ed25519_witnesses.cosign(checkpoint(extensions=("ext one",)), "w1")
    moved = checkpoint(extensions=("ext two",)) + ed_note.splitlines(keepends=True)[-1]
    assert evaluate(ed_policy, moved, NOW).invalid == ("w1",)  # cosignature/v1 covers the whole body


# -- quorums ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "cosigning", "satisfied"),
    [
        ("2 w1 w2 w3", ("w1", "w3"), True),
        ("2 w1 w2 w3", ("w2",), False),
        ("any w1 w2 w3", ("w3",), True),
        ("any w1 w2 w3", (), False),
        ("all w1 w2 w3", ("w1", "w2", "w3"), True),
        ("all w1 w2 w3", ("w1", "w2"), False),
    ],
)
def test_group_thresholds(group: str, cosigning: tuple[str, ...], satisfied: bool) -> None:
    witnesses = Witnesses()
    policy = parse_policy(witnesses.lines() + f"group g {group}\nquorum g\n")
    verdict = evaluate(policy, witnesses.cosign(checkpoint(), *cosigning), NOW)
    assert verdict.satisfied is satisfied
    assert tuple(cosigner.name for cosigner in verdict.cosigners) == cosigning
    assert verdict.missing == tuple(name for name in ("w1", "w2", "w3") if name not in cosigning)


def test_nested_groups_need_each_level() -> None:
    witnesses = Witnesses(5)
    policy = parse_policy(
        witnesses.lines() + "group x 2 w1 w2 w3\ngroup y any w4 w5\ngroup both all x y\nquorum both\n"
    )
    cases = {("w1", "w2", "w4"): True, ("w1", "w4", "w5"): False, ("w1", "w2", "w3"): False, ("w2", "w3", "w5"): True}
    for cosigning, satisfied in cases.items():
        assert evaluate(policy, witnesses.cosign(checkpoint(), *cosigning), NOW).satisfied is satisfied


def test_a_single_witness_quorum_and_quorum_none() -> None:
    witnesses = Witnesses(2)
    single = parse_policy(witnesses.lines() + "quorum w2\n")
    assert not evaluate(single, witnesses.cosign(checkpoint(), "w1"), NOW).satisfied
    assert evaluate(single, witnesses.cosign(checkpoint(), "w2"), NOW).satisfied
    none = parse_policy(witnesses.lines() + "quorum none\n")
    assert none.quorum is None
    verdict = evaluate(none, checkpoint(), NOW)
    assert verdict.satisfied and verdict.missing == ("w1", "w2")


# -- policy text -----------------------------------------------------------------------------------


def test_whole_line_comments_blank_lines_tabs_and_urls() -> None:
    witnesses = Witnesses(2)
    text = f"# staging witnesses\n\n  witness\tw1 {witnesses.vkey('w1')} https://w1.example/witness   # not a comment\n"
    with pytest.raises(PolicyError, match=r"^line 3: a witness line is"):
        parse_policy(text + "quorum w1\n")  # comments are whole lines (tlog-policy)
    text = f"# staging witnesses\n\n  witness\tw1 {witnesses.vkey('w1')} https://w1.example/witness \t\n"
    policy = parse_policy(text + f"witness w2 {witnesses.vkey('w2')}\n   # indented comment\nquorum w1")
    assert [(w.name, w.url) for w in policy.witnesses] == [("w1", "https://w1.example/witness"), ("w2", None)]


def test_log_lines_are_exposed_for_the_trust_root_check() -> None:
    log_public = LOG_KEY.public_key()
    log_id = hashlib.sha256(b"log.example.com/test\n\x01" + raw(log_public)).digest()[:4]
    vkey = f"log.example.com/test+{log_id.hex()}+{typed(1, raw(log_public))}"
    policy = parse_policy(f"log {vkey} https://log.example.com\nquorum none\n")
    (log,) = policy.logs
    assert (log.origin, log.url, log.verifier.key_id) == ("log.example.com/test", "https://log.example.com", log_id)
    assert log.spki_der == log_public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


POLICY_ERRORS = [
    ("witness a {a}\nquorum a\nquorum a\n", 3, "a second quorum line (the first is line 2)"),
    ("witness a {a}\n", None, "no quorum line (a policy has exactly one: quorum <name>|none)"),
    ("witness a {a}\ngroup g 1 a\nquorum x\n", 3, 'unknown witness "x" in quorum'),
    ("witness a {a}\nwitness b {b}\ngroup g 2 a x\nquorum g\n", 3, 'unknown witness "x" in group g'),
    ("group g 1 a\nwitness a {a}\nquorum g\n", 1, 'unknown witness "a" in group g'),
    ("witness a {a}\ngroup g 1 a a\nquorum g\n", 2, '"a" is already a member of group g'),
    ("witness a {a}\ngroup g 1 a\ngroup h 1 a\nquorum g\n", 3, '"a" is already a member of group g'),
    ("witness a {a}\nwitness b {b}\ngroup g 3 a b\nquorum g\n", 3, "group g: threshold 3 is not between 1 and 2"),
    ("witness a {a}\ngroup g 0 a\nquorum g\n", 2, "group g: threshold 0 is not between 1 and 1"),
    ("witness a {a}\ngroup g most a\nquorum g\n", 2, 'group g: threshold "most" is not a number, any or all'),
    ("witness a {a}\ngroup g any\nquorum g\n", 2, "a group line is: group <name> <k>|any|all <member>..."),
    ("witness a {a}\nwitness a {b}\nquorum a\n", 2, '"a" is already defined'),
    ("witness a {a}\ngroup a 1 a\nquorum a\n", 2, '"a" is already defined'),
    ("witness none {a}\nquorum none\n", 1, 'the name "none" is reserved'),
    ("witness a {a}\nwitness b {a}\nquorum a\n", 2, "witness b has the same key as witness a"),
    ("witness a\nquorum none\n", 1, "a witness line is: witness <name> <vkey> [<url>]"),
    ("witness a {a} https://a.example extra\nquorum none\n", 1, "a witness line is: witness <name> <vkey> [<url>]"),
    ("witness a notakey\nquorum none\n", 1, "witness a: a vkey is <name>+<8 hex key id>+<base64 type and key>"),
    ("quorum none\nwitnesses a {a}\n", 2, 'unknown keyword "witnesses" (log, witness, group or quorum)'),
    ("quorum\n", 1, "a quorum line is: quorum <name>|none"),
    ("quorum a b\n", 1, "a quorum line is: quorum <name>|none"),
    ("log\nquorum none\n", 1, "a log line is: log <vkey> [<url>]"),
    ("log {a}\nquorum none\n", 1, "log key: key type 0x04 is not a log key (0x01 Ed25519, 0x02 ECDSA P-256)"),
    ("quorum none\r\n", 1, "control characters other than tab are not allowed"),
]


@pytest.mark.parametrize(("template", "line", "reason"), POLICY_ERRORS)
def test_every_policy_error_names_its_line_and_reason(template: str, line: int | None, reason: str) -> None:
    witnesses = Witnesses(2)
    text = template.format(a=witnesses.vkey("w1"), b=witnesses.vkey("w2"))
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert (caught.value.line, caught.value.reason) == (line, reason)
    assert str(caught.value) == (reason if line is None else f"line {line}: {reason}")


def test_duplicate_log_keys_and_oversized_policies_are_refused() -> None:
    log_public = raw(LOG_KEY.public_key())
    log_id = hashlib.sha256(b"log.example.com/test\n\x01" + log_public).digest()[:4].hex()
    line = f"log log.example.com/test+{log_id}+{typed(1, log_public)}\n"
    with pytest.raises(PolicyError, match=r"^line 2: log log.example.com/test: the same key is already a log"):
        parse_policy(line + line + "quorum none\n")
    with pytest.raises(PolicyError, match=r"^the policy is longer than"):
        parse_policy("#" * (256 * 1024 + 1))


# -- the real thing: Rekor v2 staging, cosigned by three public witnesses --------------------------


def test_the_staging_policy_accepts_the_real_staging_checkpoint() -> None:
    verdict = evaluate(
        parse_policy(STAGING_POLICY), fixture_checkpoint("rekor2-dsse-happy-path.bundle.sigstore.json"), AFTER_COSIGNING
    )
    assert verdict.satisfied
    assert verdict.cosigners == tuple(Cosigner(name, COSIGNED_AT) for name in ("geomys", "mullvad", "google"))
    assert (verdict.invalid, verdict.missing, verdict.future) == ((), (), ())


def test_one_flipped_cosignature_byte_makes_that_witness_invalid() -> None:
    note = fixture_checkpoint("rekor2-dsse-happy-path.bundle.sigstore.json")
    names = [signature.name for signature in split_note(note)[1]]
    flipped = flip_last_byte_of_line(note, names.index("witness.stagemole.eu"))
    verdict = evaluate(parse_policy(STAGING_POLICY), flipped, AFTER_COSIGNING)
    assert verdict.invalid == ("mullvad",)
    assert [cosigner.name for cosigner in verdict.cosigners] == ["geomys", "google"]
    assert verdict.satisfied  # 2 of 3 still hold: the caller refuses the checkpoint on `invalid`
    strict = parse_policy(STAGING_POLICY.replace("group g 2", "group g all"))
    assert not evaluate(strict, flipped, AFTER_COSIGNING).satisfied


def test_a_policy_naming_other_witnesses_misses_the_quorum() -> None:
    witnesses = Witnesses()
    policy = parse_policy(witnesses.lines() + "group g 2 w1 w2 w3\nquorum g\n")
    verdict = evaluate(policy, fixture_checkpoint("rekor2-dsse-happy-path.bundle.sigstore.json"), AFTER_COSIGNING)
    assert (verdict.satisfied, verdict.cosigners, verdict.missing) == (False, (), ("w1", "w2", "w3"))


def test_the_unknown_witness_of_the_conformance_bundle_is_ignored() -> None:
    note = fixture_checkpoint("rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json")
    assert "witness.example" in [signature.name for signature in split_note(note)[1]]
    verdict = evaluate(parse_policy(STAGING_POLICY), note, AFTER_COSIGNING)
    assert (verdict.satisfied, verdict.invalid, verdict.missing) == (False, (), ("geomys", "mullvad", "google"))
    assert evaluate(parse_policy(STAGING_POLICY.replace("quorum g", "quorum none")), note, AFTER_COSIGNING).satisfied
