"""The chain check of a certificate read from a CT log, and the CA that issued it.

A precert entry counts only if its precertificate chains to a Fulcio CA of the trust root valid at
its notBefore, and if the leaf's issuer_key_hash is SHA-256 of that CA's key (RFC 6962 §3.2): a leaf
naming another issuer is a log lie, not a certificate (`CtEntryError`, recorded as undecodable). An
x509 entry (a final certificate someone submitted) is checked like a Rekor certificate. The issuing
CA found here, with the serial number, is what joins a CT certificate with its Rekor signing.
"""

from __future__ import annotations

from monitor.identity.fulcio import ChainVerifier, FulcioCertificate
from monitor.tlog.ct import PRECERT_ENTRY, CtEntry, CtEntryError
from monitor.trust import TrustRoot


class CtChainVerifier:
    """Picklable, like ChainVerifier (results cached by certificate hash)."""

    def __init__(self, trust_root: TrustRoot, cache_size: int = 4096):
        self._precertificates = ChainVerifier(trust_root, cache_size, precertificates=True)
        self._certificates = ChainVerifier(trust_root, cache_size)

    def issuing_ca(self, entry: CtEntry, certificate: FulcioCertificate) -> bytes | None:
        """SHA-256 of the key of the trust root's CA that issued `certificate` (the entry's, parsed),
        or None when it does not chain; CtEntryError when a precert leaf names another issuer."""
        if entry.entry_type != PRECERT_ENTRY:
            return self._certificates.issuer_key_hash(certificate)
        issuer = self._precertificates.issuer_key_hash(certificate)
        if issuer is not None and issuer != entry.issuer_key_hash:
            raise CtEntryError("issuer_mismatch", "the leaf's issuer_key_hash is not the key of the CA that signed it")
        return issuer
