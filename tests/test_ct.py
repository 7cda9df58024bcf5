"""CT protocol: entries, tree heads and the RFC 6962 / static-ct-api clients, against hostile input.

Entries are built by the simulator's CA (real precertificates, real signatures) and by hand; every
parser must accept what it builds and raise only its typed error for anything else. The clients
face a hostile peer over real HTTP that answers whatever a test tells it to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from monitor.analyser import ChunkAnalyser
from monitor.analysis import Judges
from monitor.config import WatchSettings
from monitor.ct_recorder import CertificateRecorder
from monitor.der import DerError, encode_tlv, read_tlv
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import ChainVerifier, parse_fulcio_certificate
from monitor.policy import Policy
from monitor.simulate.ca import LocalCA, Precertificate, codefresh_identity, email_identity, new_p256_key
from monitor.simulate.log import SimLog
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH
from monitor.simulate.trustroot import trusted_root
from monitor.tlog.answers import MalformedError, parse_answer
from monitor.tlog.ct import (
    _POISON_OID_TLV,
    PRECERT_ENTRY,
    X509_ENTRY,
    CtEntryError,
    CtLogEntry,
    ExtraData,
    TimestampedEntry,
    _poison_extensions,
    decode_ct_entry,
    encode_extra_data,
    encode_tile_leaf,
    leaf_index_extensions,
    merkle_tree_leaf,
    parse_extra_data,
    parse_merkle_tree_leaf,
    parse_tile_extra,
    serial_number,
    split_data_tile,
    tbs_certificate,
    tbs_without_poison,
)
from monitor.tlog.ct_client import Rfc6962Client, StaticCtClient, parse_entries, parse_entries_typed
from monitor.tlog.ct_head import (
    CtHeadError,
    DigitallySigned,
    SignedTreeHead,
    ct_note_key_id,
    log_id_of,
    open_ct_checkpoint,
    parse_digitally_signed,
    parse_sth,
    sign_digitally,
    sth_note,
    tree_head_signed_data,
)
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.merkle import aligned_subtrees, leaf_hash
from monitor.tlog.note import NoteError
from monitor.trust import LogKey, Validity, parse_trust_root
from tests.harness import CLIENT_RETRY

ROOT = hashlib.sha256(b"a root").digest()
ISSUER_KEY_HASH = bytes(range(32))
NOW_MS = 1_760_000_000_000
ORIGIN = "ct.example/2022"
CA = LocalCA.generate()
LEAF_KEY = new_p256_key()


def precertificate(**identity: str) -> Precertificate:
    fields = {**FULCIO_TEST_CODEFRESH, "workflow_id": "w1", **identity}
    return CA.precertificate(codefresh_identity(**fields), key=LEAF_KEY)


PRECERT = precertificate()
PRECERT_LEAF_ENTRY = TimestampedEntry(NOW_MS, PRECERT_ENTRY, PRECERT.leaf_tbs, CA.issuer_key_hash)
PRECERT_LEAF = merkle_tree_leaf(PRECERT_LEAF_ENTRY)
PRECERT_EXTRA = encode_extra_data(ExtraData(PRECERT.der, tuple(CA.chain_der())))
CERTIFICATE = CA.issue(email_identity("dev@example.com"), key=LEAF_KEY).der
X509_LEAF = merkle_tree_leaf(TimestampedEntry(NOW_MS, X509_ENTRY, CERTIFICATE))
X509_EXTRA = encode_extra_data(ExtraData(None, tuple(CA.chain_der())))


def every_truncation(data: bytes) -> list[bytes]:
    return [data[:length] for length in range(len(data))]


# -- MerkleTreeLeaf ---------------------------------------------------------------------------------


def test_a_precert_leaf_reads_back_what_was_built() -> None:
    assert PRECERT_LEAF[:12] == bytes([0, 0]) + NOW_MS.to_bytes(8, "big") + bytes([0, PRECERT_ENTRY])
    assert PRECERT_LEAF[12:44] == CA.issuer_key_hash
    assert parse_merkle_tree_leaf(PRECERT_LEAF) == PRECERT_LEAF_ENTRY


def test_an_x509_leaf_reads_back_what_was_built() -> None:
    entry = parse_merkle_tree_leaf(X509_LEAF)
    assert (entry.entry_type, entry.certificate, entry.issuer_key_hash, entry.extensions) == (
        X509_ENTRY,
        CERTIFICATE,
        None,
        b"",
    )
    assert X509_LEAF[12:15] == len(CERTIFICATE).to_bytes(3, "big")


@pytest.mark.parametrize("leaf", [PRECERT_LEAF, X509_LEAF])
def test_every_truncated_or_extended_leaf_is_malformed(leaf: bytes) -> None:
    for hostile in [*every_truncation(leaf), leaf + b"\x00"]:
        with pytest.raises(CtEntryError) as raised:
            parse_merkle_tree_leaf(hostile)
        assert raised.value.reason == "malformed_leaf", len(hostile)


def test_unknown_versions_leaf_types_and_entry_types_are_unsupported() -> None:
    for hostile in (b"\x01" + PRECERT_LEAF[1:], b"\x00\x01" + PRECERT_LEAF[2:], PRECERT_LEAF[:10] + b"\x00\x02"):
        with pytest.raises(CtEntryError) as raised:
            parse_merkle_tree_leaf(hostile + PRECERT_LEAF[12:])
        assert raised.value.reason == "unsupported_leaf"


def test_lengths_beyond_the_data_are_refused_without_reading_them() -> None:
    huge_certificate = X509_LEAF[:12] + b"\xff\xff\xff" + X509_LEAF[15:]
    huge_extensions = X509_LEAF[:-2] + b"\xff\xff"
    empty_certificate = X509_LEAF[:12] + b"\x00\x00\x00\x00\x00"
    for hostile in (huge_certificate, huge_extensions, empty_certificate):
        with pytest.raises(CtEntryError, match="malformed_leaf"):
            parse_merkle_tree_leaf(hostile)


@given(st.binary(max_size=300))
def test_random_bytes_are_a_leaf_or_a_ct_entry_error(data: bytes) -> None:
    for leaf in (data, PRECERT_LEAF[:12] + data, X509_LEAF[:12] + data):
        try:
            parse_merkle_tree_leaf(leaf)
        except CtEntryError:
            pass


def test_building_refuses_what_cannot_be_encoded() -> None:
    for entry in (
        TimestampedEntry(NOW_MS, PRECERT_ENTRY, b"tbs", None),
        TimestampedEntry(NOW_MS, PRECERT_ENTRY, b"tbs", b"short"),
        TimestampedEntry(NOW_MS, X509_ENTRY, b"cert", ISSUER_KEY_HASH),
        TimestampedEntry(NOW_MS, 7, b"cert"),
        TimestampedEntry(-1, X509_ENTRY, b"cert"),
        TimestampedEntry(NOW_MS, X509_ENTRY, b"c" * (1 << 24)),
        TimestampedEntry(NOW_MS, X509_ENTRY, b"cert", extensions=b"e" * (1 << 16)),
    ):
        with pytest.raises(ValueError):
            merkle_tree_leaf(entry)


def test_the_static_leaf_index_extension() -> None:
    extensions = leaf_index_extensions(1234567)
    assert extensions == bytes.fromhex("000005000012d687")
    entry = TimestampedEntry(NOW_MS, X509_ENTRY, CERTIFICATE, extensions=extensions)
    assert parse_merkle_tree_leaf(merkle_tree_leaf(entry)).leaf_index() == 1234567
    assert TimestampedEntry(NOW_MS, X509_ENTRY, CERTIFICATE, extensions=b"\x01\x00\x01\xaa").leaf_index() is None
    for hostile in (extensions + extensions, bytes.fromhex("0000040000000001"), extensions[:-1], b"\x00"):
        with pytest.raises(CtEntryError):
            TimestampedEntry(NOW_MS, X509_ENTRY, CERTIFICATE, extensions=hostile).leaf_index()


# -- extra data and data tiles ----------------------------------------------------------------------


def test_extra_data_reads_back_what_was_built() -> None:
    chain = tuple(CA.chain_der())
    assert parse_extra_data(PRECERT_EXTRA, PRECERT_ENTRY) == ExtraData(PRECERT.der, chain)
    assert parse_extra_data(X509_EXTRA, X509_ENTRY) == ExtraData(None, chain)
    assert parse_extra_data(b"\x00\x00\x00", X509_ENTRY) == ExtraData(None, ())


@pytest.mark.parametrize(("extra", "entry_type"), [(PRECERT_EXTRA, PRECERT_ENTRY), (X509_EXTRA, X509_ENTRY)])
def test_every_truncated_or_extended_extra_data_is_malformed(extra: bytes, entry_type: int) -> None:
    for hostile in [*every_truncation(extra), extra + b"\x00", b"\xff\xff\xff" + extra[3:]]:
        with pytest.raises(CtEntryError) as raised:
            parse_extra_data(hostile, entry_type)
        assert raised.value.reason == "malformed_extra_data"


def tile_of(leaves: list[tuple[bytes, ExtraData]]) -> bytes:
    return b"".join(encode_tile_leaf(leaf, extra) for leaf, extra in leaves)


FINGERPRINTS = tuple(hashlib.sha256(der).digest() for der in CA.chain_der())
TILE_LEAVES = [(PRECERT_LEAF, ExtraData(PRECERT.der, FINGERPRINTS)), (X509_LEAF, ExtraData(None, FINGERPRINTS[:1]))]


def test_a_data_tile_splits_into_its_leaves() -> None:
    tile = tile_of(TILE_LEAVES)
    assert split_data_tile(tile, 2) == [
        (PRECERT_LEAF, len(PRECERT.der).to_bytes(3, "big") + PRECERT.der + b"\x00\x40" + b"".join(FINGERPRINTS)),
        (X509_LEAF, b"\x00\x20" + FINGERPRINTS[0]),
    ]
    (_, tail), _ = split_data_tile(tile, 2)
    assert parse_tile_extra(tail, PRECERT_ENTRY) == ExtraData(PRECERT.der, FINGERPRINTS)


def test_a_data_tile_with_missing_extra_or_bad_bytes_is_malformed() -> None:
    tile = tile_of(TILE_LEAVES)
    for hostile, width in [
        *((truncated, 2) for truncated in every_truncation(tile)),
        (tile + b"\x00", 2),
        (tile, 3),
        (tile, 1),
        (tile_of([(X509_LEAF, ExtraData(None, (b"not 32 bytes",)))]), 1),
    ]:
        with pytest.raises(CtEntryError):
            split_data_tile(hostile, width)


# -- certificates read just enough: the precertificate check ---------------------------------------


def test_removing_the_poison_gives_the_leaf_tbs_byte_for_byte() -> None:
    assert tbs_without_poison(PRECERT.der) == PRECERT.leaf_tbs
    precert = x509.load_der_x509_certificate(PRECERT.der)
    assert precert.extensions.get_extension_for_class(x509.PrecertPoison).critical
    assert serial_number(PRECERT.leaf_tbs) == precert.serial_number
    assert tbs_certificate(CERTIFICATE) == x509.load_der_x509_certificate(CERTIFICATE).tbs_certificate_bytes


def test_a_certificate_without_the_poison_or_with_two_is_not_a_precertificate() -> None:
    with pytest.raises(CtEntryError, match="not 0"):
        tbs_without_poison(CERTIFICATE)
    poison = bytes.fromhex("3013060a2b06010401d6790204030101ff04020500")
    tbs = x509.load_der_x509_certificate(PRECERT.der).tbs_certificate_bytes
    signature = PRECERT.der[PRECERT.der.index(tbs) + len(tbs) :]  # the algorithm and the signature
    doubled = replace_extensions(tbs, lambda extensions: extensions + poison)
    with pytest.raises(CtEntryError, match="not 2"):
        tbs_without_poison(encode_tlv(0x30, doubled + signature))
    broken = replace_extensions(tbs, lambda extensions: extensions + b"\x04\x00")
    with pytest.raises(CtEntryError, match="not a SEQUENCE"):
        tbs_without_poison(encode_tlv(0x30, broken + signature))


def replace_extensions(tbs: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """The TBS with its extensions' content changed (test helper: it re-encodes the lengths)."""
    _, pos, end = read_tlv(tbs, 0, len(tbs))
    head_end = pos
    while pos < end:
        tag, content, element_end = read_tlv(tbs, pos, end)
        if tag == 0xA3:
            head_end = pos
            _, inner, inner_end = read_tlv(tbs, content, element_end)
            extensions = tbs[inner:inner_end]
        pos = element_end
    return encode_tlv(
        0x30, tbs[read_tlv(tbs, 0, len(tbs))[1] : head_end] + encode_tlv(0xA3, encode_tlv(0x30, change(extensions)))
    )


@given(st.integers(min_value=0, max_value=len(PRECERT.der) - 1), st.integers(min_value=1, max_value=255))
def test_a_corrupted_precertificate_never_raises_anything_but_a_ct_entry_error(position: int, flip: int) -> None:
    corrupted = bytearray(PRECERT.der)
    corrupted[position] ^= flip
    try:
        tbs_without_poison(bytes(corrupted))
    except CtEntryError as error:
        assert error.reason == "malformed_certificate"


def test_der_headers_are_read_strictly() -> None:
    assert read_tlv(b"\x04\x81\x80" + b"x" * 128, 0, 131) == (4, 3, 131)
    for hostile in (b"\x04", b"\x04\x05abc", b"\x1f\x01\x00", b"\x04\x80", b"\x04\x85\x00\x00\x00\x00\x01x"):
        with pytest.raises(DerError):
            read_tlv(hostile, 0, len(hostile))


def test_a_serial_number_longer_than_32_octets_is_refused() -> None:
    tbs = encode_tlv(0x30, bytes.fromhex("a003020102") + encode_tlv(0x02, b"\x01" * 33))
    with pytest.raises(CtEntryError, match="serialNumber"):
        serial_number(tbs)
    assert serial_number(encode_tlv(0x30, encode_tlv(0x02, b"\x00\xff"))) == 255  # no version: v1


# -- decoding served entries ------------------------------------------------------------------------


def test_a_precert_entry_decodes_to_its_precertificate_and_serial() -> None:
    decoded = decode_ct_entry(CtLogEntry.of(7, PRECERT_LEAF, PRECERT_EXTRA))
    assert (decoded.log_index, decoded.leaf_hash, decoded.timestamp) == (7, leaf_hash(PRECERT_LEAF), NOW_MS)
    assert (decoded.entry_type, decoded.certificate, decoded.issuer_key_hash) == (
        PRECERT_ENTRY,
        PRECERT.der,
        CA.issuer_key_hash,
    )
    assert decoded.serial_number == x509.load_der_x509_certificate(PRECERT.der).serial_number
    tile = tile_of(TILE_LEAVES)
    leaves = split_data_tile(tile, 2)
    from_tile = [decode_ct_entry(CtLogEntry.of(at, *leaf, tile_leaf=True)) for at, leaf in enumerate(leaves)]
    assert from_tile[0].certificate == PRECERT.der and from_tile[0].extra.chain == FINGERPRINTS
    assert from_tile[1].certificate == CERTIFICATE and from_tile[1].serial_number == decoded_serial(CERTIFICATE)


def decoded_serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def test_a_precertificate_that_is_not_the_leaf_is_caught() -> None:
    other = precertificate(workflow_id="w2")  # the same identity, another certificate
    tampered = encode_extra_data(ExtraData(other.der, tuple(CA.chain_der())))
    with pytest.raises(CtEntryError) as raised:
        decode_ct_entry(CtLogEntry.of(0, PRECERT_LEAF, tampered))
    assert raised.value.reason == "precertificate_mismatch"
    tampered_tile = tile_of([(PRECERT_LEAF, ExtraData(other.der, FINGERPRINTS))])
    ((leaf, tail),) = split_data_tile(tampered_tile, 1)
    with pytest.raises(CtEntryError, match="precertificate_mismatch"):
        decode_ct_entry(CtLogEntry.of(0, leaf, tail, tile_leaf=True))


def test_a_served_entry_is_a_source_entry_whatever_it_holds() -> None:
    garbage = CtLogEntry.of(3, b"not a leaf", b"")
    assert (garbage.body, garbage.uuid, garbage.integrated_time) == (
        b"not a leaf",
        leaf_hash(b"not a leaf").hex(),
        None,
    )
    with pytest.raises(CtEntryError):
        decode_ct_entry(garbage)


def test_the_chain_check_names_the_issuing_ca_and_refuses_a_leaf_naming_another() -> None:
    trust = parse_trust_root(trusted_root("http://sim.test", SimLog("sim.test"), CA), None, "sim")
    chains = CtChainVerifier(trust)
    decoded = decode_ct_entry(CtLogEntry.of(0, PRECERT_LEAF, PRECERT_EXTRA))
    assert chains.issuing_ca(decoded, parse_fulcio_certificate(decoded.certificate)) == CA.issuer_key_hash
    lying = merkle_tree_leaf(TimestampedEntry(NOW_MS, PRECERT_ENTRY, PRECERT.leaf_tbs, ISSUER_KEY_HASH))
    decoded = decode_ct_entry(CtLogEntry.of(0, lying, PRECERT_EXTRA))
    with pytest.raises(CtEntryError, match="issuer_mismatch"):
        chains.issuing_ca(decoded, parse_fulcio_certificate(decoded.certificate))
    x509_entry = decode_ct_entry(CtLogEntry.of(1, X509_LEAF, X509_EXTRA))
    assert chains.issuing_ca(x509_entry, parse_fulcio_certificate(CERTIFICATE)) == CA.issuer_key_hash
    rogue = LocalCA.generate("rogue").precertificate(
        codefresh_identity(**FULCIO_TEST_CODEFRESH, workflow_id="w"), key=LEAF_KEY
    )
    rogue_leaf = merkle_tree_leaf(TimestampedEntry(NOW_MS, PRECERT_ENTRY, rogue.leaf_tbs, ISSUER_KEY_HASH))
    decoded = decode_ct_entry(CtLogEntry.of(2, rogue_leaf, encode_extra_data(ExtraData(rogue.der, ()))))
    assert chains.issuing_ca(decoded, parse_fulcio_certificate(decoded.certificate)) is None


def codefresh_analyser(in_thread: bool) -> ChunkAnalyser:
    """An analyser watching the simulator's Codefresh account, with the simulator's trust root."""
    trust = parse_trust_root(trusted_root("http://sim.test", SimLog("sim.test"), CA), None, "sim")
    account = {
        "account_id": FULCIO_TEST_CODEFRESH["account_id"],
        "account_name": FULCIO_TEST_CODEFRESH["account_name"],
        "pipelines": [{"id": FULCIO_TEST_CODEFRESH["pipeline_id"]}],
    }
    policy = Policy(WatchSettings.model_validate({"codefresh": [account]}))
    return ChunkAnalyser(Judges.of(policy, trust), in_thread=in_thread)


@pytest.mark.parametrize("in_thread", [True, False], ids=["a thread", "a decode process"])
async def test_a_ct_entry_whose_decoding_fails_unforeseen_is_undecodable_and_the_others_are_analysed(
    in_thread: bool,
) -> None:
    """No entry stops the tail (monitor/analysis.py). No known entry makes the CT decoder raise
    anything but CtEntryError; a leaf that is not bytes stands in for the bug a hostile entry might
    find, in a thread and across the decode process's pipe."""
    analyser = codefresh_analyser(in_thread)
    good = CtLogEntry.of(100, PRECERT_LEAF, PRECERT_EXTRA)
    hostile = CtLogEntry(101, None, b"", leaf_hash(b""))  # type: ignore[arg-type]
    try:
        outcomes = (await analyser.analyse_ct([good, hostile, good], hash_from=100)).outcomes
    finally:
        await analyser.close()
    assert sorted(outcomes) == [0, 1, 2]
    assert outcomes[0] == outcomes[2] and outcomes[0].finding.judgement.verdict == "expected"
    failed = outcomes[1]
    assert isinstance(failed, CtEntryError) and failed.reason == "internal_error"
    assert failed.detail.startswith("TypeError: ") and "(at ct.py:" in failed.detail


@pytest.mark.parametrize("in_thread", [True, False], ids=["a thread", "a decode process"])
async def test_an_analysed_ct_chunk_keeps_only_its_entries_with_outcomes_and_its_leaves_folded(in_thread: bool) -> None:
    """Until its turn to commit, a CT chunk holds its subtrees and the entries its record needs,
    not every entry's leaf and chain (about 3.7 KB each)."""
    analyser = codefresh_analyser(in_thread)
    served = [(X509_LEAF, X509_EXTRA), (PRECERT_LEAF, PRECERT_EXTRA), (b"not a leaf", b""), (X509_LEAF, X509_EXTRA)]
    entries = [CtLogEntry.of(100 + position, leaf, extra) for position, (leaf, extra) in enumerate(served)]
    try:
        analysed = await CertificateRecorder(analyser).analyse(entries, 100)
    finally:
        await analyser.close()
    assert sorted(analysed.analysis) == [1, 2]  # the watched precertificate, the malformed leaf
    assert len(analysed.entries) == 4 and [analysed.entries[1], analysed.entries[2]] == entries[1:3]
    with pytest.raises(LookupError):
        analysed.entries[0]
    assert analysed.subtrees == tuple(aligned_subtrees(100, [entry.leaf_hash for entry in entries]))


def test_a_precertificate_is_no_signing_certificate_and_a_certificate_no_precertificate() -> None:
    trust = parse_trust_root(trusted_root("http://sim.test", SimLog("sim.test"), CA), None, "sim")
    precert, certificate = parse_fulcio_certificate(PRECERT.der), parse_fulcio_certificate(CERTIFICATE)
    assert ChainVerifier(trust).verify(certificate) and not ChainVerifier(trust).verify(precert)
    precertificates = ChainVerifier(trust, precertificates=True)
    assert precertificates.verify(precert) and not precertificates.verify(certificate)
    assert precertificates.issuer_key_hash(precert) == CA.issuer_key_hash  # cached now: the same answer
    assert precertificates.issuer_key_hash(precert) == CA.issuer_key_hash
    shipped = pickle.loads(pickle.dumps(precertificates))  # to a worker process, mode included
    assert shipped.verify(precert) and not shipped.verify(certificate)


# -- tree heads: the STH, its signature, the CT checkpoint ------------------------------------------

CT_KEY = ec.generate_private_key(ec.SECP256R1())


def log_key(public: Any, *, start: datetime | None = None, end: datetime | None = None) -> LogKey:
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    validity = Validity(start or datetime(2020, 1, 1, tzinfo=UTC), end)
    return LogKey(f"https://{ORIGIN}", hashlib.sha256(spki).digest(), spki, "PKIX_ECDSA_P256_SHA_256", validity)


KEY = log_key(CT_KEY.public_key())


def signed_sth(size: int = 10, timestamp: int = NOW_MS, signer: ec.EllipticCurvePrivateKey = CT_KEY) -> SignedTreeHead:
    return SignedTreeHead(size, timestamp, ROOT, sign_digitally(signer, tree_head_signed_data(timestamp, size, ROOT)))


def note_of(sth: SignedTreeHead, key: LogKey = KEY) -> str:
    return sth_note(sth, ORIGIN, log_id_of(key))


def test_an_sth_becomes_a_checkpoint_with_the_static_ct_signature_line() -> None:
    sth = signed_sth()
    note = note_of(sth)
    body, line = note.split("\n\n")
    assert body == f"{ORIGIN}\n10\n{base64.b64encode(ROOT).decode()}"
    name, payload = line.removeprefix("— ").rstrip("\n").split(" ")
    raw = base64.b64decode(payload)
    log_id = hashlib.sha256(KEY.spki_der).digest()
    assert name == ORIGIN and raw[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x05" + log_id).digest()[:4]
    assert raw[4:12] == NOW_MS.to_bytes(8, "big") and raw[12:] == sth.signature
    assert raw[12:14] == b"\x04\x03"  # SHA-256, ECDSA
    checkpoint = open_ct_checkpoint(note, [KEY], origin=ORIGIN)
    assert (checkpoint.size, checkpoint.root_hash, checkpoint.timestamp) == (10, ROOT, NOW_MS)
    assert (checkpoint.origin, checkpoint.extensions, checkpoint.note, checkpoint.log_key) == (ORIGIN, (), note, KEY)


def test_a_tree_head_signed_by_another_key_or_over_other_data_is_refused() -> None:
    intruder = ec.generate_private_key(ec.SECP256R1())
    for note, message in (
        (note_of(signed_sth(signer=intruder)), "invalid tree head signature"),
        (note_of(signed_sth(signer=intruder), log_key(intruder.public_key())), "no tree head signature"),
        (note_of(signed_sth()).replace("\n10\n", "\n11\n"), "invalid tree head signature"),
        (note_of(signed_sth()).replace(f"{ORIGIN}\n", "other.example\n", 1), "is not"),
    ):
        with pytest.raises(CtHeadError, match=message):
            open_ct_checkpoint(note, [KEY], origin=ORIGIN)


def test_the_key_must_be_valid_at_the_tree_heads_time() -> None:
    moment = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    expired = log_key(CT_KEY.public_key(), end=moment)
    not_yet = log_key(CT_KEY.public_key(), start=moment + timedelta(milliseconds=1))
    for key in (expired, not_yet):
        with pytest.raises(CtHeadError, match="not valid at the tree head's time"):
            open_ct_checkpoint(note_of(signed_sth(), key), [key], origin=ORIGIN)
    still = log_key(CT_KEY.public_key(), end=moment + timedelta(milliseconds=1))
    assert open_ct_checkpoint(note_of(signed_sth(), still), [still], origin=ORIGIN).size == 10


def test_the_signature_algorithm_must_be_the_keys_own_and_the_hash_sha256() -> None:
    message = tree_head_signed_data(NOW_MS, 10, ROOT)
    ecdsa = CT_KEY.sign(message, ec.ECDSA(hashes.SHA256()))
    for hash_algorithm, signature_algorithm in ((4, 1), (5, 3), (2, 3)):
        signed = DigitallySigned(hash_algorithm, signature_algorithm, ecdsa).to_bytes()
        with pytest.raises(CtHeadError, match="invalid"):
            open_ct_checkpoint(note_of(SignedTreeHead(10, NOW_MS, ROOT, signed)), [KEY], origin=ORIGIN)
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_log = log_key(rsa_key.public_key())
    rsa_signature = rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    accepted = SignedTreeHead(10, NOW_MS, ROOT, DigitallySigned(4, 1, rsa_signature).to_bytes())
    assert open_ct_checkpoint(note_of(accepted, rsa_log), [rsa_log], origin=ORIGIN).log_key == rsa_log
    as_ecdsa = SignedTreeHead(10, NOW_MS, ROOT, DigitallySigned(4, 3, rsa_signature).to_bytes())
    with pytest.raises(CtHeadError, match="invalid"):
        open_ct_checkpoint(note_of(as_ecdsa, rsa_log), [rsa_log], origin=ORIGIN)


def test_other_signers_are_ignored_but_a_bad_line_of_the_log_rejects_the_note() -> None:
    note = note_of(signed_sth())
    witness = "— witness.example " + base64.b64encode(b"\x01\x02\x03\x04" + b"w" * 72).decode() + "\n"
    assert open_ct_checkpoint(note + witness, [KEY], origin=ORIGIN).size == 10
    forged = note_of(signed_sth(signer=ec.generate_private_key(ec.SECP256R1())))
    forged_line = forged.split("\n\n")[1]
    with pytest.raises(CtHeadError, match="invalid"):
        open_ct_checkpoint(note + forged_line, [KEY], origin=ORIGIN)
    with pytest.raises(CtHeadError, match="no tree head signature"):
        open_ct_checkpoint(note.split("\n\n")[0] + "\n\n" + witness, [KEY], origin=ORIGIN)


def test_a_ct_checkpoint_has_no_extension_lines_and_well_formed_signatures() -> None:
    sth = signed_sth()
    with_extension = note_of(sth).replace(
        base64.b64encode(ROOT).decode() + "\n", base64.b64encode(ROOT).decode() + "\nextra\n"
    )
    with pytest.raises(CtHeadError, match="no extension lines"):
        open_ct_checkpoint(with_extension, [KEY], origin=ORIGIN)
    key_id = ct_note_key_id(ORIGIN, log_id_of(KEY))
    for payload in (key_id, key_id + b"\x00" * 8, key_id + b"\x00" * 8 + b"\x04\x03\x00\x10abc"):
        line = f"— {ORIGIN} {base64.b64encode(payload).decode()}\n"
        with pytest.raises(NoteError):
            open_ct_checkpoint(note_of(sth).split("\n\n")[0] + "\n\n" + line, [KEY], origin=ORIGIN)


def test_digitally_signed_lengths_are_exact() -> None:
    assert parse_digitally_signed(b"\x04\x03\x00\x02ab") == DigitallySigned(4, 3, b"ab")
    for hostile in (b"", b"\x04\x03\x00", b"\x04\x03\x00\x03ab", b"\x04\x03\x00\x01ab", b"\x04\x03\x00\x00"):
        with pytest.raises(CtHeadError):
            parse_digitally_signed(hostile)


STH = signed_sth()


def sth_document(**changes: Any) -> dict[str, Any]:
    sth = STH
    document = {
        "tree_size": sth.tree_size,
        "timestamp": sth.timestamp,
        "sha256_root_hash": base64.b64encode(sth.root_hash).decode(),
        "tree_head_signature": base64.b64encode(sth.signature).decode(),
    }
    return {**document, **changes}


def test_a_get_sth_answer_is_parsed_strictly() -> None:
    assert parse_sth(sth_document()) == STH
    for hostile in (
        sth_document(tree_size=-1),
        sth_document(tree_size=True),
        sth_document(tree_size=2**63),
        sth_document(timestamp="1"),
        sth_document(sha256_root_hash=base64.b64encode(b"short").decode()),
        sth_document(sha256_root_hash="not base64!"),
        sth_document(tree_head_signature=base64.b64encode(b"\x04\x03\x00\x09abc").decode()),
        {key: value for key, value in sth_document().items() if key != "timestamp"},
        [sth_document()],
    ):
        with pytest.raises(MalformedError):
            parse_sth(hostile)


# -- the clients, against a hostile peer over HTTP --------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""


@dataclass
class Peer:
    """An HTTP server answering what `respond` says; it records what was asked and how many at once."""

    respond: Callable[[str, dict[str, str]], Answer] = lambda path, query: Answer(404)
    url: str = ""
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append((request.path, dict(request.query)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            answer = self.respond(request.path, dict(request.query))
            return web.Response(status=answer.status, body=answer.body)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    hostile = Peer()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", hostile.handle)
    async with TestServer(app) as server:
        hostile.url = str(server.make_url("/log"))
        yield hostile


def as_json(document: Any) -> Answer:
    return Answer(body=json.dumps(document).encode())


def leaf_of(index: int) -> bytes:
    return f"leaf {index}".encode()


def entries_answer(start: int, end: int, *, most: int = 1000) -> Answer:
    items = [
        {"leaf_input": base64.b64encode(leaf_of(index)).decode(), "extra_data": base64.b64encode(b"extra").decode()}
        for index in range(start, min(end + 1, start + most))
    ]
    return as_json({"entries": items})


def truncating(most: int) -> Callable[[str, dict[str, str]], Answer]:
    def respond(path: str, query: dict[str, str]) -> Answer:
        assert path == "/log/ct/v1/get-entries"
        return entries_answer(int(query["start"]), int(query["end"]), most=most)

    return respond


async def test_a_truncated_get_entries_answer_is_asked_again_from_where_it_stopped(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    peer.respond = truncating(3)
    client = Rfc6962Client(peer.url, http, retry=CLIENT_RETRY, batch_size=10, log_id=b"id")
    entries = await client.get_entries(5, 15)
    assert [(entry.log_index, entry.leaf_input) for entry in entries] == [(i, leaf_of(i)) for i in range(5, 15)]
    assert all(entry.leaf_hash == leaf_hash(entry.leaf_input) and entry.log_id == b"id" for entry in entries)
    asked = [(query["start"], query["end"]) for _, query in peer.asked]
    assert asked == [("5", "14"), ("8", "14"), ("11", "14"), ("14", "14")]  # end inclusive


async def test_batches_are_fetched_concurrently_within_the_bound(peer: Peer, http: aiohttp.ClientSession) -> None:
    peer.respond = truncating(1000)
    client = Rfc6962Client(peer.url, http, retry=CLIENT_RETRY, batch_size=4, concurrency=3)
    entries = await client.get_entries(0, 40)
    assert [entry.log_index for entry in entries] == list(range(40))
    assert len(peer.asked) == 10 and 1 < peer.max_in_flight <= 3


@pytest.mark.parametrize(
    "answer",
    [
        entries_answer(0, 5),  # more than the 3 asked
        as_json({"entries": []}),  # nothing: the client would ask forever
        as_json({"entries": [{"leaf_input": "!!", "extra_data": ""}]}),
        as_json({"entries": [{"leaf_input": "AA=="}]}),
        as_json({"entries": {}}),
        as_json([]),
        Answer(body=b"{not json"),
        Answer(404),
        Answer(400),
    ],
)
async def test_a_get_entries_answer_no_honest_log_gives_is_a_protocol_error(
    peer: Peer, http: aiohttp.ClientSession, answer: Answer
) -> None:
    peer.respond = lambda path, query: answer
    with pytest.raises(LogProtocolError):
        await Rfc6962Client(peer.url, http, retry=CLIENT_RETRY).get_entries(0, 3)


MALFORMED_ENTRIES = [
    entries_answer(0, 5).body,  # more than the 3 asked
    json.dumps({"entries": []}).encode(),
    json.dumps({"entries": [{"leaf_input": "!!", "extra_data": ""}]}).encode(),
    json.dumps({"entries": [{"leaf_input": "AA=="}]}).encode(),
    json.dumps({"entries": [{"leaf_input": None, "extra_data": ""}]}).encode(),
    json.dumps({"entries": {}}).encode(),
    json.dumps([]).encode(),
    b"{not json",
    b'{"note": "\xff", "entries": [{"leaf_input": "AAAA", "extra_data": ""}]}',  # not UTF-8, where unread
]


def test_the_typed_shortcut_reads_get_entries_as_the_general_way_and_takes_nothing_it_refuses() -> None:
    honest = entries_answer(7, 9).body
    typed = parse_entries_typed(honest, 7, 3, b"id")
    assert typed == parse_entries(json.loads(honest), 7, 3, b"id") and len(typed) == 3
    for raw in MALFORMED_ENTRIES:
        assert parse_entries_typed(raw, 0, 3) is None, raw
        with pytest.raises(LogProtocolError):
            parse_answer(raw, "http://ct.test", "entries", lambda document: parse_entries(document, 0, 3))
    # Padding binascii's strict mode lets through and msgspec does not: the general way decides.
    lenient = json.dumps({"entries": [{"leaf_input": "AAAA====", "extra_data": ""}]}).encode()
    assert parse_entries_typed(lenient, 0, 3) is None
    assert parse_entries(json.loads(lenient), 0, 3)[0].leaf_input == bytes(3)


async def test_a_malformed_get_entries_answer_is_named_by_the_general_way(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    peer.respond = lambda path, query: as_json({"entries": [{"leaf_input": "!!", "extra_data": ""}]})
    with pytest.raises(LogProtocolError, match=r"entries\[0\]\.leaf_input: is not valid base64"):
        await Rfc6962Client(peer.url, http, retry=CLIENT_RETRY).get_entries(0, 3)


async def test_a_log_that_sheds_load_is_asked_again(peer: Peer, http: aiohttp.ClientSession) -> None:
    answers = iter([Answer(503), Answer(429), as_json(sth_document())])
    peer.respond = lambda path, query: next(answers)
    assert await Rfc6962Client(peer.url, http, retry=CLIENT_RETRY).get_sth() == STH
    assert [path for path, _ in peer.asked] == ["/log/ct/v1/get-sth"] * 3


async def test_proofs_are_asked_for_and_parsed_strictly(peer: Peer, http: aiohttp.ClientSession) -> None:
    hashes = [bytes([n]) * 32 for n in range(3)]
    encoded = [base64.b64encode(item).decode() for item in hashes]
    answers = {
        "/log/ct/v1/get-sth-consistency": as_json({"consistency": encoded}),
        "/log/ct/v1/get-proof-by-hash": as_json({"leaf_index": 4, "audit_path": encoded}),
    }
    peer.respond = lambda path, query: answers[path]
    client = Rfc6962Client(peer.url, http, retry=CLIENT_RETRY)
    assert await client.get_sth_consistency(0, 9) == [] and await client.get_sth_consistency(9, 9) == []
    assert peer.asked == []
    assert await client.get_sth_consistency(3, 9) == hashes
    proof = await client.get_proof_by_hash(ROOT, 9)
    assert (proof.leaf_index, proof.audit_path) == (4, tuple(hashes))
    assert peer.asked[-1][1] == {"hash": base64.b64encode(ROOT).decode(), "tree_size": "9"}
    with pytest.raises(LogProtocolError, match="beyond the tree"):
        await client.get_proof_by_hash(ROOT, 4)
    for hostile in (
        {"consistency": encoded * 50},
        {"consistency": [base64.b64encode(b"short").decode()]},
        {"consistency": "AAAA"},
        {},
    ):
        answers["/log/ct/v1/get-sth-consistency"] = as_json(hostile)
        with pytest.raises(LogProtocolError):
            await client.get_sth_consistency(3, 9)


async def test_a_static_ct_data_tile_that_does_not_split_is_a_protocol_error(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    tile = tile_of(TILE_LEAVES)
    peer.respond = lambda path, query: Answer(body=tile if path == "/log/tile/data/000.p/2" else tile[:-1])
    client = StaticCtClient(peer.url, http, retry=CLIENT_RETRY, log_id=b"id")
    entries = await client.get_entries(0, 2, 2)
    assert [(entry.leaf_input, entry.tile_leaf, entry.log_id) for entry in entries] == [
        (PRECERT_LEAF, True, b"id"),
        (X509_LEAF, True, b"id"),
    ]
    assert decode_ct_entry(entries[0]).certificate == PRECERT.der
    with pytest.raises(LogProtocolError, match=r"tile/data/000\.p/1: .* bytes after the data tile's 1 leaves"):
        await client.get_entries(0, 1, 1)


def test_the_poison_is_only_an_extension_that_holds_its_whole_oid() -> None:
    """An extension too short for the poison's OID, followed by the OID's remaining bytes, is not the
    poison: removing it would make a TBS that was never signed."""
    truncated = b"\x30\x02" + _POISON_OID_TLV[:2]
    assert _poison_extensions(truncated + _POISON_OID_TLV[2:], 0, len(truncated)) == []
    whole = b"\x30" + bytes([len(_POISON_OID_TLV) + 2]) + _POISON_OID_TLV + b"\x04\x00"
    assert _poison_extensions(whole, 0, len(whole)) == [(0, len(whole))]
