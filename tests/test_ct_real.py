"""Real Fulcio certificates: the CT leaf their log holds for them, rebuilt by the code that reads CT entries.

For each real Fulcio certificate of the fixtures, the MerkleTreeLeaf that its CT log (public-good
ctfe.sigstore.dev/2022, or a staging log) holds is rebuilt with tlog/ct.py: a precert entry with the
issuer key hash of the Fulcio intermediate of the shipped trust root and the certificate's TBS without
its SCT list. The certificate's embedded SCT, signed by that log over the same bytes, must verify over
it, and `inspect` must name the log and the leaf's hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.cli import main
from monitor.identity.sct import embedded_scts
from monitor.tlog.ct import PRECERT_ENTRY, CtLogEntry, TimestampedEntry, merkle_tree_leaf, parse_merkle_tree_leaf
from monitor.tlog.ct import serial_number as tbs_serial_number
from monitor.tlog.ct_head import DigitallySigned, verify_digitally_signed
from monitor.trust import TrustRoot, load_trust_root

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sigstore"
SHA256, ECDSA = 4, 3

# fixture -> (shipped trust root, the CT log of its SCT, whether that log is a static-ct-api one)
CERTIFICATES = {
    "bundle_v3_github.whl.sigstore": ("public-good", "https://ctfe.sigstore.dev/2022", False),
    "happy-path-intoto-in-dsse-v3.bundle.sigstore.json": ("public-good", "https://ctfe.sigstore.dev/2022", False),
    "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json": ("staging", "https://ctfe.sigstage.dev/2022-2", False),
    "staging-rekor-v2.txt.sigstore.json": ("staging", "https://ctfe.sigstage.dev/2022-2", False),
    "rekor2-dsse-happy-path.bundle.sigstore.json": ("staging", "https://log2026-1.ctfe.sigstage.dev", True),
}


def certificate_of(name: str) -> x509.Certificate:
    material = json.loads((FIXTURES / name).read_text())["verificationMaterial"]
    raw = material["certificate"] if "certificate" in material else material["x509CertificateChain"]["certificates"][0]
    return x509.load_der_x509_certificate(base64.b64decode(raw["rawBytes"]))


def intermediate_key_hash(certificate: x509.Certificate, trust: TrustRoot) -> bytes:
    """SHA-256 of the SPKI of the trust root's Fulcio CA certificate that signed `certificate`."""
    for authority in trust.fulcio:
        for ca in authority.certificates:
            if ca.subject == certificate.issuer:
                certificate.verify_directly_issued_by(ca)
                return hashlib.sha256(
                    ca.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                ).digest()
    raise AssertionError("no Fulcio CA of the trust root issued it")


@pytest.mark.parametrize("name", sorted(CERTIFICATES))
def test_the_ct_leaf_of_a_real_certificate_is_what_its_sct_signed(name: str) -> None:
    root, log_url, static = CERTIFICATES[name]
    trust = load_trust_root(root)
    certificate = certificate_of(name)
    (sct,) = certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    (log,) = [key for key in trust.ctlogs if key.log_id == sct.log_id]
    assert log.base_url == log_url

    timestamp = round(sct.timestamp.timestamp() * 1000)
    issuer = intermediate_key_hash(certificate, trust)
    entry = TimestampedEntry(
        timestamp, PRECERT_ENTRY, certificate.tbs_precertificate_bytes, issuer, sct.extension_bytes
    )
    leaf = merkle_tree_leaf(entry)
    assert parse_merkle_tree_leaf(leaf) == entry
    assert tbs_serial_number(entry.certificate) == certificate.serial_number
    assert (entry.leaf_index() is not None) is static  # a static-ct-api log says where the leaf is

    signature = DigitallySigned(SHA256, ECDSA, sct.signature)
    assert verify_digitally_signed(log, signature, leaf)
    assert not verify_digitally_signed(log, signature, leaf[:-1] + b"\x01")

    (embedded,) = embedded_scts(certificate, trust) or []
    assert embedded.verified and embedded.log == log and embedded.leaf_input == leaf
    assert embedded.leaf_hash == CtLogEntry.of(0, leaf, b"").leaf_hash == hashlib.sha256(b"\x00" + leaf).digest()
    assert embedded.leaf_index == entry.leaf_index()


def test_inspect_names_the_ct_log_and_leaf_of_each_sct(tmp_path: Path) -> None:
    config = tmp_path / "rekorwatch.yaml"
    config.write_text(json.dumps({"trust": {"root": "public-good", "refresh": False}}))
    result = CliRunner().invoke(main, ["inspect", "-c", str(config), str(FIXTURES / "bundle_v3_github.whl.sigstore")])
    assert result.exit_code == 0, result.output
    (certificate,) = json.loads(result.stdout)["certificates"]
    (sct,) = certificate["scts"]
    (expected,) = embedded_scts(certificate_of("bundle_v3_github.whl.sigstore"), load_trust_root("public-good")) or []
    assert expected.leaf_hash is not None
    assert sct == {
        "ct_log": "https://ctfe.sigstore.dev/2022",
        "log_id": "dd3d306ac6c7113263191e1c99673702a24a5eb8de3cadff878a72802f29ee8e",
        "timestamp": "2024-03-19T22:41:15Z",
        "leaf_hash": expected.leaf_hash.hex(),
        "leaf_index": None,
        "verified": True,
    }
    assert certificate["sct_verified"] is True
