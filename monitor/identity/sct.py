"""Embedded SCTs (RFC 6962 §3.2): did a CT log of the trust root see this precertificate?

Extra assurance only (DESIGN.md: reported as `sct_verified`, it never changes a verdict). The
signed structure is `version ‖ signature_type ‖ timestamp ‖ entry_type=precert ‖ issuer_key_hash
‖ tbs_certificate (without the SCT extension) ‖ extensions`, signed by the CT log's key; the log
is found by its id (SHA-256 of its key) among the trust root's `ctlogs`.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.trust import TrustRoot

SCT_V1 = 0
CERTIFICATE_TIMESTAMP = 0
PRECERT_ENTRY = 1


def verify_embedded_scts(certificate: x509.Certificate, trust: TrustRoot) -> bool | None:
    """True when an embedded SCT verifies with a CT log key of the trust root; False when none
    does; None when the certificate carries no SCT (nothing to check)."""
    try:
        scts = certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        tbs = certificate.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError):
        return None
    issuer_key_hashes = [
        hashlib.sha256(ca_cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
        for authority in trust.fulcio
        for ca_cert in authority.certificates
        if ca_cert.subject == certificate.issuer
    ]
    logs = {log.log_id: log for log in trust.ctlogs}
    return any(
        _signature_verifies(sct, logs[sct.log_id].public_key, _signed_data(sct, key_hash, tbs))
        for sct in scts
        if sct.log_id in logs
        for key_hash in issuer_key_hashes
    )


def _signed_data(sct: x509.certificate_transparency.SignedCertificateTimestamp, key_hash: bytes, tbs: bytes) -> bytes:
    milliseconds = round(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000)
    return b"".join(
        [
            struct.pack(">BBQH", SCT_V1, CERTIFICATE_TIMESTAMP, milliseconds, PRECERT_ENTRY),
            key_hash,
            len(tbs).to_bytes(3, "big"),
            tbs,
            struct.pack(">H", len(sct.extension_bytes)),
            sct.extension_bytes,
        ]
    )


def _signature_verifies(
    sct: x509.certificate_transparency.SignedCertificateTimestamp, key: object, data: bytes
) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sct.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sct.signature, data, PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True
