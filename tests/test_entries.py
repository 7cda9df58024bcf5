"""Entry bodies of every kind -> certificates, public keys and digest; hostile bodies -> EntryDecodeError."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.entries import MAX_BODY_BYTES, DecodedEntry, EntryDecodeError, decode_entry
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.simulate.entries import (
    dsse_body,
    hashedrekord_body,
    hashedrekord_v002_body,
    intoto_v002_body,
    public_key_pem,
)
from tests.paths import SIGSTORE as FIXTURES

DIGEST = "ab" * 32
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
PGP_KEY = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF...\n-----END PGP PUBLIC KEY BLOCK-----\n"


def bundle_body(name: str) -> bytes:
    bundle = json.loads((FIXTURES / name).read_text())
    return base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])


def bundle_certificate(name: str) -> bytes:
    material = json.loads((FIXTURES / name).read_text())["verificationMaterial"]
    if "certificate" in material:
        return base64.b64decode(material["certificate"]["rawBytes"])
    return base64.b64decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(kind: str, api_version: str, spec: dict[str, Any]) -> bytes:
    return rfc8785.dumps({"apiVersion": api_version, "kind": kind, "spec": spec})


def sha256(value: str = DIGEST) -> dict[str, str]:
    return {"algorithm": "sha256", "value": value}


@pytest.fixture(scope="module")
def issued():  # type: ignore[no-untyped-def]
    ca = LocalCA.generate()
    return ca.issue(
        codefresh_identity(
            account_id="a1", account_name="acme", pipeline_id="p1", pipeline_name="proj/pipe", workflow_id="w1"
        )
    )


# -- the real fixtures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "api_version", "digest"),
    [
        (
            "bundle_v3_github.whl.sigstore",
            "hashedrekord",
            "0.0.1",
            "sha256:c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201",
        ),
        (
            "happy-path-intoto-in-dsse-v3.bundle.sigstore.json",
            "dsse",
            "0.0.1",
            "sha256:d6b209ba9dde3b1ee5edebb88d1b1b917b72eeb614328e7ba667f5b7ab70e987",
        ),
        (
            "staging-rekor-v2.txt.sigstore.json",
            "hashedrekord",
            "0.0.2",
            "sha256:15f67246115921bb7c1de0e7e9e9275c8016dc254a0c009888944b7ed3644aaa",
        ),
        (
            "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json",
            "hashedrekord",
            "0.0.2",
            "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf",
        ),
    ],
)
def test_real_entries_yield_the_bundle_certificate(name: str, kind: str, api_version: str, digest: str) -> None:
    decoded = decode_entry(bundle_body(name))
    assert decoded == DecodedEntry(kind, api_version, (bundle_certificate(name),), 0, digest)


def test_v2_entry_decodes_from_its_canonical_body() -> None:
    raw = bundle_body("staging-rekor-v2.txt.sigstore.json")
    assert raw == rfc8785.dumps(json.loads(raw))  # the leaf bytes are the JCS form
    assert decode_entry(raw).certificates[0][:2] == b"\x30\x82"


def test_public_key_intoto_entry_carries_no_certificate() -> None:
    decoded = decode_entry(bundle_body("bundle-publish.json"))
    assert (decoded.kind, decoded.api_version, decoded.certificates, decoded.public_keys) == (
        "intoto",
        "0.0.2",
        (),
        1,
    )


def test_rekor_v1_rest_entry_with_a_self_signed_certificate() -> None:
    entry = json.loads((FIXTURES / "docker-attest.tlog.mock.go.TestEntry.json").read_text())
    decoded = decode_entry(base64.b64decode(entry["body"]))
    assert decoded.kind == "hashedrekord"
    assert len(decoded.certificates) == 1
    assert decoded.artifact_digest == "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


# -- every kind ------------------------------------------------------------------------------------


def test_simulator_bodies(issued) -> None:  # type: ignore[no-untyped-def]
    key = issued.private_key
    artifact_digest = f"sha256:{hashlib.sha256(b'artifact').hexdigest()}"
    assert decode_entry(hashedrekord_body(issued.pem, b"artifact", key)).certificates == (issued.der,)
    assert decode_entry(hashedrekord_v002_body(issued.der, b"artifact", key)).artifact_digest == artifact_digest
    assert decode_entry(dsse_body(issued.pem, b"{}", key)).certificates == (issued.der,)
    intoto = decode_entry(intoto_v002_body(public_key_pem(key), b"{}", key))
    assert (intoto.certificates, intoto.public_keys) == ((), 1)


def every_kind(pem: bytes, der: bytes, key_pem: bytes) -> list[tuple[bytes, int, int, str | None]]:
    """(body, certificates, public keys, digest) for each kind of FORMATS.md §2."""
    x509, pgp, hashed = {"content": b64(pem)}, {"content": b64(PGP_KEY)}, {"hash": sha256()}
    v2_digest = {"algorithm": "SHA2_256", "digest": b64(bytes.fromhex(DIGEST))}
    v2_key = {"verifier": {"publicKey": {"rawBytes": "MA=="}}}
    v2_certificate = {"verifier": {"x509Certificate": {"rawBytes": b64(der)}}}
    digest = f"sha256:{DIGEST}"
    return [
        (body("rekord", "0.0.1", {"signature": {"format": "x509", "publicKey": x509}, "data": hashed}), 1, 0, digest),
        (body("rekord", "0.0.1", {"signature": {"format": "pgp", "publicKey": pgp}, "data": hashed}), 0, 1, digest),
        (body("intoto", "0.0.1", {"publicKey": b64(pem), "content": {"payloadHash": sha256()}}), 1, 0, digest),
        (body("cose", "0.0.1", {"publicKey": b64(pem), "data": {"payloadHash": sha256()}}), 1, 0, digest),
        (body("jar", "0.0.1", {"signature": {"publicKey": x509}, "archive": hashed}), 1, 0, digest),
        (body("alpine", "0.0.1", {"publicKey": {"content": b64(key_pem)}, "package": hashed}), 0, 1, digest),
        (body("helm", "0.0.1", {"publicKey": pgp, "chart": {**hashed, "provenance": {}}}), 0, 1, digest),
        (body("rpm", "0.0.1", {"publicKey": pgp, "package": hashed}), 0, 1, digest),
        (body("tuf", "0.0.1", {"root": {"content": {"signed": {"keys": {"k1": {}, "k2": {}}}}}}), 0, 2, None),
        (body("rfc3161", "0.0.1", {"tsr": {"content": "MAA="}}), 0, 0, None),
        (body("hashedrekord", "0.0.2", {"hashedRekordV002": {"data": v2_digest, "signature": v2_key}}), 0, 1, digest),
        (body("dsse", "0.0.2", {"dsseV002": {"payloadHash": v2_digest, "signatures": [v2_certificate]}}), 1, 0, digest),
    ]


def test_every_kind(issued) -> None:  # type: ignore[no-untyped-def]
    key_pem = public_key_pem(issued.private_key)
    for raw, certificates, public_keys, digest in every_kind(issued.pem, issued.der, key_pem):
        decoded = decode_entry(raw)
        assert (len(decoded.certificates), decoded.public_keys, decoded.artifact_digest) == (
            certificates,
            public_keys,
            digest,
        ), raw[:60]
        assert decoded.certificates in ((), (issued.der,))


def test_a_pem_chain_reports_the_signing_certificate_once(issued) -> None:  # type: ignore[no-untyped-def]
    other = LocalCA.generate().issue(
        codefresh_identity(account_id="x", account_name="y", pipeline_id="z", pipeline_name="p/q", workflow_id="w")
    )
    chain_pem = issued.pem + other.pem
    signatures = [{"signature": "MA==", "verifier": b64(chain_pem)}, {"signature": "MQ==", "verifier": b64(issued.pem)}]
    decoded = decode_entry(body("dsse", "0.0.1", {"signatures": signatures, "payloadHash": sha256()}))
    assert decoded.certificates == (issued.der,)


# -- the typed error -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (b"[1, 2]", "not_json"),
        (b"[" * 100_000, "not_json"),
        (b'{"kind": "hashedrekord", "apiVersion": "0.0.1"}', "missing_field"),
        (b'{"kind": 1, "apiVersion": "0.0.1", "spec": {}}', "bad_field"),
        (b'{"kind": "gitpush", "apiVersion": "0.0.1", "spec": {}}', "unknown_kind"),
        (b'{"kind": "intoto", "apiVersion": "0.0.3", "spec": {}}', "unknown_version"),
        (body("hashedrekord", "0.0.1", {"signature": {"publicKey": {}}}), "missing_field"),
        (body("hashedrekord", "0.0.1", {"signature": {"publicKey": {"content": "%%%"}}}), "bad_base64"),
        (body("hashedrekord", "0.0.1", {"signature": {"publicKey": {"content": b64(b"no pem here")}}}), "bad_pem"),
        (body("hashedrekord", "0.0.1", {"signature": {"publicKey": {"content": b64(BROKEN_PEM)}}}), "bad_pem"),
        (body("dsse", "0.0.1", {"signatures": {"verifier": "x"}}), "bad_field"),
        (body("dsse", "0.0.1", {"signatures": ["x"]}), "bad_field"),
        (body("cose", "0.0.1", {"publicKey": b64(PGP_KEY), "data": {"payloadHash": sha256("zz")}}), "bad_digest"),
        (body("hashedrekord", "0.0.2", {"hashedRekordV002": {"signature": {"verifier": {}}}}), "missing_field"),
        (b" " * (MAX_BODY_BYTES + 1), "too_large"),
    ],
)
def test_bad_bodies_raise_one_typed_error(raw: bytes, reason: str) -> None:
    with pytest.raises(EntryDecodeError) as caught:
        decode_entry(raw)
    assert caught.value.reason == reason


# -- property tests --------------------------------------------------------------------------------

REAL_BODIES = [
    bundle_body(name)
    for name in (
        "bundle_v3_github.whl.sigstore",
        "happy-path-intoto-in-dsse-v3.bundle.sigstore.json",
        "bundle-publish.json",
        "staging-rekor-v2.txt.sigstore.json",
    )
]
KINDS = ["hashedrekord", "rekord", "intoto", "dsse", "cose", "jar", "alpine", "helm", "rpm", "tuf", "rfc3161"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "signature",
        "publicKey",
        "content",
        "data",
        "hash",
        "envelope",
        "signatures",
        "verifier",
        "format",
        "hashedRekordV002",
        "dsseV002",
        "x509Certificate",
        "rawBytes",
        "root",
        "tsr",
        "package",
        "chart",
        "payloadHash",
    ]
)
specs = st.recursive(
    json_values,
    lambda children: st.dictionaries(spec_keys, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=25,
)


def decodes_or_raises_typed(raw: bytes) -> None:
    try:
        decoded = decode_entry(raw)
    except EntryDecodeError as exc:
        assert exc.reason and isinstance(exc.detail, str)
    else:
        assert all(isinstance(der, bytes) and der for der in decoded.certificates)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_the_typed_error(raw: bytes) -> None:
    decodes_or_raises_typed(raw)


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.sampled_from(["0.0.1", "0.0.2"]), specs)
def test_random_specs_only_raise_the_typed_error(kind: str, api_version: str, spec: Any) -> None:
    decodes_or_raises_typed(json.dumps({"kind": kind, "apiVersion": api_version, "spec": spec}).encode())


@settings(max_examples=300)
@given(st.sampled_from(REAL_BODIES), st.data())
def test_mutated_real_bodies_only_raise_the_typed_error(raw: bytes, data: st.DataObject) -> None:
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    decodes_or_raises_typed(bytes(mutated))


@settings(max_examples=200)
@given(st.sampled_from(REAL_BODIES), st.data())
def test_real_bodies_with_a_replaced_value_only_raise_the_typed_error(raw: bytes, data: st.DataObject) -> None:
    entry = json.loads(raw)
    node, key = entry, "spec"
    while isinstance(node[key], dict) and node[key] and data.draw(st.booleans()):
        node, key = node[key], data.draw(st.sampled_from(sorted(node[key])))
    node[key] = data.draw(json_values)
    decodes_or_raises_typed(json.dumps(entry).encode())
