"""Fulcio certificates: the cheap issuer, extensions by name, SAN, and chain verification at notBefore."""

from __future__ import annotations

import base64
import copy
import json
import pickle
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.entries import decode_entry
from monitor.identity.fulcio import (
    EXTENSION_NAMES,
    CertificateError,
    ChainVerifier,
    certificate_issuer,
    parse_fulcio_certificate,
)
from monitor.simulate.ca import (
    CODEFRESH_ISSUER,
    CertIdentity,
    LocalCA,
    codefresh_identity,
    der_utf8_string,
    fulcio_oid,
    github_identity,
    key_usage,
    new_p256_key,
    self_signed_test_certificate,
    utc_now,
)
from monitor.trust import TrustRoot, load_trust_root, parse_trust_root
from tests.paths import SIGSTORE as FIXTURES

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def bundle_certificate(name: str) -> bytes:
    bundle = json.loads((FIXTURES / name).read_text())
    body = base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])
    return decode_entry(body).certificates[0]


GITHUB_WHEEL = bundle_certificate("bundle_v3_github.whl.sigstore")
GITHUB_DSSE = bundle_certificate("happy-path-intoto-in-dsse-v3.bundle.sigstore.json")
STAGING_EMAIL = bundle_certificate("staging-rekor-v2.txt.sigstore.json")
STAGING_GITHUB = bundle_certificate("rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json")
DOCKER_TEST = decode_entry(
    base64.b64decode(json.loads((FIXTURES / "docker-attest.tlog.mock.go.TestEntry.json").read_text())["body"])
).certificates[0]
REAL_CERTIFICATES = [GITHUB_WHEEL, GITHUB_DSSE, STAGING_EMAIL, STAGING_GITHUB, DOCKER_TEST]


@pytest.fixture(scope="module")
def public_good() -> TrustRoot:
    return load_trust_root(str(FIXTURES / "trusted_root.json"))


@pytest.fixture(scope="module")
def staging() -> TrustRoot:
    return load_trust_root(str(FIXTURES / "trusted_root.staging.json"))


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA.generate()


def local_trust_root(ca: LocalCA, valid_from: str = "2000-01-01T00:00:00Z") -> TrustRoot:
    authority = {
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
        "validFor": {"start": valid_from},
    }
    return parse_trust_root({"certificateAuthorities": [authority], "tlogs": []}, None, "test")


def leaf(ca: LocalCA, *, extensions: dict[int, bytes], san: x509.GeneralName, code_signing: bool = True) -> bytes:
    """A leaf from the local CA with raw extension values by Fulcio N and one SAN."""
    key = new_p256_key()
    usage = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utc_now())
        .not_valid_after(utc_now() + timedelta(minutes=10))
        .add_extension(key_usage(digital_signature=True, key_cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.intermediate_cert.public_key()), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([san]), critical=True)
    )
    for n, value in extensions.items():
        builder = builder.add_extension(x509.UnrecognizedExtension(fulcio_oid(n), value), critical=False)
    return builder.sign(ca.intermediate_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# -- the issuer --------------------------------------------------------------------------------------


BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)


@pytest.mark.parametrize(
    ("der", "issuer", "identity", "san_kind"),
    [
        (
            GITHUB_WHEEL,
            GITHUB_ISSUER,
            "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
            "uri",
        ),
        (GITHUB_DSSE, GITHUB_ISSUER, BEACON, "uri"),
        (STAGING_GITHUB, GITHUB_ISSUER, BEACON, "uri"),
        (STAGING_EMAIL, "https://github.com/login/oauth", "jku@goto.fi", "email"),
        (DOCKER_TEST, None, None, None),  # CN=test with a DNS SAN only: no Fulcio identity
    ],
)
def test_issuer_and_identity_of_real_certificates(
    der: bytes, issuer: str | None, identity: str | None, san_kind: str | None
) -> None:
    assert certificate_issuer(der) == issuer
    cert = parse_fulcio_certificate(der)
    assert (cert.issuer, cert.identity, cert.san_kind) == (issuer, identity, san_kind)


def test_issuer_prefers_1_8_and_falls_back_to_1_1(ca: LocalCA) -> None:
    san = x509.UniformResourceIdentifier("https://example.com/x")
    only_v1 = leaf(ca, extensions={1: b"https://issuer.v1"}, san=san)
    both = leaf(ca, extensions={1: b"https://issuer.v1", 8: der_utf8_string("https://issuer.v2")}, san=san)
    empty_v2 = leaf(ca, extensions={1: b"https://issuer.v1", 8: der_utf8_string("")}, san=san)
    for der, expected in [(only_v1, "https://issuer.v1"), (both, "https://issuer.v2"), (empty_v2, "https://issuer.v1")]:
        assert certificate_issuer(der) == expected
        assert parse_fulcio_certificate(der).issuer == expected


def test_a_malformed_1_8_fails_the_full_parse_but_not_the_cheap_path(ca: LocalCA) -> None:
    der = leaf(
        ca,
        extensions={1: CODEFRESH_ISSUER.encode(), 8: CODEFRESH_ISSUER.encode()},  # 1.8 without its DER wrapping
        san=x509.UniformResourceIdentifier("https://g.codefresh.io/a/p/q:1/2"),
    )
    assert certificate_issuer(der) == CODEFRESH_ISSUER
    with pytest.raises(CertificateError) as caught:
        parse_fulcio_certificate(der)
    assert caught.value.reason == "bad_extension"


def test_issuer_bytes_inside_another_extension_are_not_the_issuer(ca: LocalCA) -> None:
    forged_v2 = bytes.fromhex("060a2b0601040183bf30010804") + bytes([2 + len(CODEFRESH_ISSUER)])
    decoy = forged_v2 + der_utf8_string(CODEFRESH_ISSUER)
    der = leaf(
        ca,
        extensions={1: GITHUB_ISSUER.encode(), 2: decoy, 8: der_utf8_string(GITHUB_ISSUER)},
        san=x509.UniformResourceIdentifier("https://github.com/a/b/.github/workflows/c.yml@refs/heads/main"),
    )
    assert certificate_issuer(der) == GITHUB_ISSUER


# -- extensions and SAN ------------------------------------------------------------------------------


def test_github_certificate_carries_every_extension_1_to_22_by_name() -> None:
    cert = parse_fulcio_certificate(GITHUB_WHEEL)
    expected_names = [EXTENSION_NAMES[n] for n in range(1, 23) if n != 7]
    assert list(cert.extensions) == expected_names
    assert cert.extensions["issuer_v1"] == cert.extensions["issuer"] == GITHUB_ISSUER  # raw 1.1, DER 1.8
    assert cert.extensions["github_workflow_repository"] == "trailofbits/rfc8785.py"
    assert cert.extensions["github_workflow_ref"] == "refs/tags/v0.1.2"
    assert cert.extensions["runner_environment"] == "github-hosted"
    assert cert.extensions["source_repository_identifier"] == "768213997"
    assert cert.extensions["run_invocation_uri"] == (
        "https://github.com/trailofbits/rfc8785.py/actions/runs/8351058501/attempts/1"
    )
    assert cert.extensions["source_repository_visibility_at_signing"] == "public"
    assert cert.identity == "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
    assert cert.san_kind == "uri"
    assert cert.not_before.isoformat() == "2024-03-19T22:41:15+00:00"
    assert cert.not_after - cert.not_before == timedelta(minutes=10)


def test_extensions_23_and_24_and_email_san(ca: LocalCA) -> None:
    identity = CertIdentity(
        issuer="https://accounts.google.com",
        san_email="dev@example.com",
        extensions={23: "production", 24: "1234567890"},
    )
    cert = parse_fulcio_certificate(ca.issue(identity).der)
    assert (cert.identity, cert.san_kind) == ("dev@example.com", "email")
    assert cert.extensions["deployment_environment"] == "production"
    assert cert.extensions["token_subject"] == "1234567890"


def test_username_othername_san(ca: LocalCA) -> None:
    san = x509.OtherName(fulcio_oid(7), der_utf8_string("alice!example.com"))
    cert = parse_fulcio_certificate(leaf(ca, extensions={8: der_utf8_string("https://example.com")}, san=san))
    assert (cert.identity, cert.san_kind) == ("alice!example.com", "othername")


def test_a_certificate_without_fulcio_extensions() -> None:
    cert = parse_fulcio_certificate(DOCKER_TEST)
    assert (cert.issuer, cert.identity, cert.san_kind, cert.extensions) == (None, None, None, {})


# -- chain verification ------------------------------------------------------------------------------


def test_production_github_certificates_chain_to_public_good_at_not_before(
    public_good: TrustRoot, staging: TrustRoot
) -> None:
    for der in (GITHUB_WHEEL, GITHUB_DSSE):
        cert = parse_fulcio_certificate(der)
        assert ChainVerifier(public_good).verify(cert)
        assert not ChainVerifier(staging).verify(cert)


def test_staging_certificates_chain_to_staging_only(public_good: TrustRoot, staging: TrustRoot) -> None:
    for der in (STAGING_EMAIL, STAGING_GITHUB):
        cert = parse_fulcio_certificate(der)
        assert ChainVerifier(staging).verify(cert)
        assert not ChainVerifier(public_good).verify(cert)


def test_docker_attest_test_certificate_does_not_chain(public_good: TrustRoot) -> None:
    assert not ChainVerifier(public_good).verify(parse_fulcio_certificate(DOCKER_TEST))
    issued = self_signed_test_certificate()
    assert not ChainVerifier(public_good).verify(parse_fulcio_certificate(issued.der))


def test_only_authorities_valid_at_not_before_count() -> None:
    root: dict[str, Any] = json.loads((FIXTURES / "trusted_root.json").read_text())
    moved = copy.deepcopy(root)
    for authority in moved["certificateAuthorities"]:
        authority["validFor"] = {"start": "2025-01-01T00:00:00Z"}
    cert = parse_fulcio_certificate(GITHUB_WHEEL)  # issued 2024-03-19
    assert ChainVerifier(parse_trust_root(root, None, "as is")).verify(cert)
    assert not ChainVerifier(parse_trust_root(moved, None, "moved")).verify(cert)


def test_simulator_certificates_chain_to_their_own_ca(ca: LocalCA) -> None:
    cert = parse_fulcio_certificate(ca.issue(github_identity()).der)
    assert ChainVerifier(local_trust_root(ca)).verify(cert)
    assert not ChainVerifier(local_trust_root(LocalCA.generate())).verify(cert)
    later = (cert.not_before + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert not ChainVerifier(local_trust_root(ca, valid_from=later)).verify(cert)


def test_code_signing_is_required(ca: LocalCA) -> None:
    der = leaf(
        ca,
        extensions={8: der_utf8_string(CODEFRESH_ISSUER)},
        san=x509.UniformResourceIdentifier("https://g.codefresh.io/a/p/q:1/2"),
        code_signing=False,
    )
    assert not ChainVerifier(local_trust_root(ca)).verify(parse_fulcio_certificate(der))


def test_chain_verifier_pickles_and_caches(ca: LocalCA) -> None:
    verifier = ChainVerifier(local_trust_root(ca), cache_size=1)
    copied = pickle.loads(pickle.dumps(verifier))
    first = parse_fulcio_certificate(ca.issue(codefresh_identity(
        account_id="a", account_name="b", pipeline_id="c", pipeline_name="d/e", workflow_id="f"
    )).der)  # fmt: skip
    second = parse_fulcio_certificate(ca.issue(github_identity()).der)
    assert copied.verify(first) and copied.verify(second) and copied.verify(first)


# -- hostile certificates ----------------------------------------------------------------------------


# cryptography warns about (and still parses) certificates with a non-positive serial number.
HOSTILE_WARNINGS = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def parses_or_raises_typed(der: bytes, verifier: ChainVerifier) -> None:
    issuer = certificate_issuer(der)
    assert issuer is None or isinstance(issuer, str)
    try:
        cert = parse_fulcio_certificate(der)
    except CertificateError as exc:
        assert exc.reason
        return
    assert isinstance(verifier.verify(cert), bool)


@HOSTILE_WARNINGS
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(REAL_CERTIFICATES), st.data())
def test_mutated_certificates_raise_only_the_typed_error(der: bytes, data: st.DataObject) -> None:
    mutated = bytearray(der)
    for _ in range(data.draw(st.integers(1, 6))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    parses_or_raises_typed(bytes(mutated), HOSTILE_VERIFIER)


@HOSTILE_WARNINGS
@settings(max_examples=200, deadline=None)
@given(st.sampled_from(REAL_CERTIFICATES), st.data())
def test_truncated_and_extended_certificates_raise_only_the_typed_error(der: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(der)))
    parses_or_raises_typed(der[:cut] + data.draw(st.binary(max_size=16)), HOSTILE_VERIFIER)


@HOSTILE_WARNINGS
@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_typed_error(der: bytes) -> None:
    parses_or_raises_typed(b"\x30\x82" + der, HOSTILE_VERIFIER)
    parses_or_raises_typed(der, HOSTILE_VERIFIER)


HOSTILE_VERIFIER = ChainVerifier(load_trust_root(str(FIXTURES / "trusted_root.json")))
