"""Embedded SCTs (RFC 6962 §3.2): which CT log of the trust root saw this certificate, at which leaf?

Extra assurance only (DESIGN.md: reported as `sct_verified`, it never changes a verdict). An SCT
signs the MerkleTreeLeaf its log holds for the precertificate: a precert entry with the issuer's key
hash and the certificate's TBS without its SCT list extension, at the SCT's timestamp, with the SCT's
extensions. That leaf is rebuilt here with the code that reads CT entries (tlog/ct.py), so a verified
SCT also names the leaf (and its hash) a CT monitor finds in that log. The log is found by its id
(SHA-256 of its key) among the trust root's `ctlogs`; the issuer among its Fulcio CA certificates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.tlog.ct import PRECERT_ENTRY, CtEntryError, TimestampedEntry, merkle_tree_leaf, parse_merkle_tree_leaf
from monitor.tlog.merkle import leaf_hash
from monitor.trust import LogKey, TrustRoot

SignedCertificateTimestamp = x509.certificate_transparency.SignedCertificateTimestamp


@dataclass(frozen=True)
class EmbeddedSct:
    """One embedded SCT: its log (None when the trust root does not list it) and the leaf it promises.

    `leaf_input` is the MerkleTreeLeaf the log holds for the certificate, None when no issuer of the
    trust root matches the certificate's; `verified` is whether the SCT's signature verifies over it.
    """

    log_id: bytes
    log: LogKey | None
    timestamp: int  # milliseconds since the epoch
    leaf_input: bytes | None
    verified: bool

    @property
    def leaf_hash(self) -> bytes | None:
        return None if self.leaf_input is None else leaf_hash(self.leaf_input)

    @property
    def leaf_index(self) -> int | None:
        """The leaf index a static-ct-api log states in the SCT (unverified), else None."""
        if self.leaf_input is None:
            return None
        try:
            return parse_merkle_tree_leaf(self.leaf_input).leaf_index()
        except CtEntryError:
            return None


def _issuer_key_hashes(certificate: x509.Certificate, trust: TrustRoot) -> list[bytes]:
    return [
        hashlib.sha256(ca_cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
        for authority in trust.fulcio
        for ca_cert in authority.certificates
        if ca_cert.subject == certificate.issuer
    ]


def sct_milliseconds(sct: SignedCertificateTimestamp) -> int:
    return round(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000)


def precert_leaf(sct: SignedCertificateTimestamp, issuer_key_hash: bytes, tbs: bytes) -> bytes:
    """The MerkleTreeLeaf (= the SCT's signed data) of a precertificate with this TBS and issuer."""
    entry = TimestampedEntry(sct_milliseconds(sct), PRECERT_ENTRY, tbs, issuer_key_hash, sct.extension_bytes)
    return merkle_tree_leaf(entry)


def embedded_scts(certificate: x509.Certificate, trust: TrustRoot) -> list[EmbeddedSct] | None:
    """Every SCT embedded in the certificate, checked against the trust root; None when it has none."""
    try:
        scts = certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        tbs = certificate.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError):
        return None
    issuer_key_hashes = _issuer_key_hashes(certificate, trust)
    logs = {log.log_id: log for log in trust.ctlogs}
    return [_checked(sct, logs.get(sct.log_id), issuer_key_hashes, tbs) for sct in scts]


def _checked(
    sct: SignedCertificateTimestamp, log: LogKey | None, issuer_key_hashes: list[bytes], tbs: bytes
) -> EmbeddedSct:
    leaves = [precert_leaf(sct, key_hash, tbs) for key_hash in issuer_key_hashes]
    for leaf in leaves:
        if log is not None and _signature_verifies(sct, log.public_key, leaf):
            return EmbeddedSct(sct.log_id, log, sct_milliseconds(sct), leaf, verified=True)
    return EmbeddedSct(sct.log_id, log, sct_milliseconds(sct), leaves[0] if leaves else None, verified=False)


def verify_embedded_scts(certificate: x509.Certificate, trust: TrustRoot) -> bool | None:
    """True when an embedded SCT verifies with a CT log key of the trust root; False when none
    does; None when the certificate carries no SCT (nothing to check)."""
    scts = embedded_scts(certificate, trust)
    return None if scts is None else any(sct.verified for sct in scts)


def _signature_verifies(sct: SignedCertificateTimestamp, key: object, data: bytes) -> bool:
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
