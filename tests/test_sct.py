"""Embedded SCTs: verified against the trust root's CT logs (extra assurance, `sct_verified`)."""

from __future__ import annotations

import base64
import json

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.identity.sct import verify_embedded_scts
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.trust import parse_trust_root
from tests.paths import SIGSTORE as FIXTURES

PUBLIC_GOOD = json.loads((FIXTURES / "trusted_root.json").read_text())


def github_leaf() -> x509.Certificate:
    bundle = json.loads((FIXTURES / "bundle_v3_github.whl.sigstore").read_text())
    raw = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]
    return x509.load_der_x509_certificate(base64.b64decode(raw))


def test_the_production_certificate_was_logged_by_the_public_good_ct_log() -> None:
    assert verify_embedded_scts(github_leaf(), parse_trust_root(PUBLIC_GOOD, None, "public-good")) is True


def test_a_ct_log_key_that_is_not_the_signer_does_not_verify() -> None:
    impostor = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = base64.b64encode(impostor.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
    root = json.loads(json.dumps(PUBLIC_GOOD))
    for ctlog in root["ctlogs"]:
        ctlog["publicKey"]["rawBytes"] = spki  # same log ids, other keys
    assert verify_embedded_scts(github_leaf(), parse_trust_root(root, None, "tampered")) is False


def test_without_the_issuing_ca_nothing_verifies() -> None:
    root = {**PUBLIC_GOOD, "certificateAuthorities": []}
    assert verify_embedded_scts(github_leaf(), parse_trust_root(root, None, "no-fulcio")) is False


def test_a_certificate_without_scts_has_nothing_to_check() -> None:
    ca = LocalCA.generate()
    issued = ca.issue(
        codefresh_identity(account_id="a", account_name="b", pipeline_id="c", pipeline_name="d/e", workflow_id="f")
    )
    assert verify_embedded_scts(issued.certificate, parse_trust_root(PUBLIC_GOOD, None, "public-good")) is None
