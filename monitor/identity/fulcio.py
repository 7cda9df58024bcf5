"""Fulcio certificates: the OIDC issuer (cheaply), every Fulcio extension by name, the SAN identity,
and chain verification against the trust root's Fulcio CAs valid at the certificate's notBefore.

Extensions 1.3.6.1.4.1.57264.1.N are raw bytes for N 1..6 and a DER UTF8String from N 8 on
(FORMATS.md §5). The issuer is 1.8, falling back to the deprecated 1.1.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from monitor.errors import ReasonedError
from monitor.lru import LruCache
from monitor.trust import TrustRoot, Validity

FULCIO_OID_PREFIX = "1.3.6.1.4.1.57264.1"
EXTENSION_NAMES: dict[int, str] = {
    1: "issuer_v1",
    2: "github_workflow_trigger",
    3: "github_workflow_sha",
    4: "github_workflow_name",
    5: "github_workflow_repository",
    6: "github_workflow_ref",
    8: "issuer",
    9: "build_signer_uri",
    10: "build_signer_digest",
    11: "runner_environment",
    12: "source_repository_uri",
    13: "source_repository_digest",
    14: "source_repository_ref",
    15: "source_repository_identifier",
    16: "source_repository_owner_uri",
    17: "source_repository_owner_identifier",
    18: "build_config_uri",
    19: "build_config_digest",
    20: "build_trigger",
    21: "run_invocation_uri",
    22: "source_repository_visibility_at_signing",
    23: "deployment_environment",
    24: "token_subject",
}
RAW_EXTENSIONS = range(1, 7)
ISSUER_V1 = 1
ISSUER_V2 = 8
USERNAME_SAN_OID = x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.7")
_EXTENSION_NUMBERS = {f"{FULCIO_OID_PREFIX}.{n}": n for n in EXTENSION_NAMES}

_SEQUENCE = 0x30
_OID = 0x06
_BOOLEAN = 0x01
_OCTET_STRING = 0x04
_UTF8_STRING = 0x0C
_EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT in TBSCertificate
# What cryptography raises for malformed certificates.
_X509_ERRORS = (ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _oid_der(dotted: str) -> bytes:
    """The DER content bytes of an OBJECT IDENTIFIER."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_FULCIO_PREFIX_DER = _oid_der(FULCIO_OID_PREFIX)


def _oid_tlv(dotted: str) -> bytes:
    content = _oid_der(dotted)
    return bytes([_OID, len(content)]) + content


_ISSUER_V1_TLV = _oid_tlv(f"{FULCIO_OID_PREFIX}.{ISSUER_V1}")
_ISSUER_V2_TLV = _oid_tlv(f"{FULCIO_OID_PREFIX}.{ISSUER_V2}")


class CertificateError(ReasonedError):
    """A certificate that cannot be parsed; `reason` is a stable token for metrics."""


@dataclass(frozen=True)
class FulcioCertificate:
    der: bytes
    sha256: str
    issuer: str | None
    identity: str | None  # the SAN value
    san_kind: str | None  # "uri" | "email" | "othername"
    not_before: datetime
    not_after: datetime
    extensions: dict[str, str]  # Fulcio extensions by snake_case name
    serial: int = 0


# -- the cheap issuer ------------------------------------------------------------------------------


class _DerError(Exception):
    pass


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`, which must end by `end`."""
    if pos + 2 > end:
        raise _DerError
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        octets = length & 0x7F
        if not 0 < octets <= 4 or pos + octets > end:
            raise _DerError
        length = int.from_bytes(data[pos : pos + octets], "big")
        pos += octets
    if pos + length > end:
        raise _DerError
    return tag, pos, pos + length


def _extensions_region(der: bytes) -> tuple[int, int] | None:
    """(start, end) of the contents of the Extensions SEQUENCE, None when there is none."""
    tag, cert_start, cert_end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE:
        raise _DerError
    tag, pos, tbs_end = _tlv(der, cert_start, cert_end)
    if tag != _SEQUENCE:
        raise _DerError
    while pos < tbs_end:
        tag, start, pos = _tlv(der, pos, tbs_end)
        if tag == _EXTENSIONS_TAG:
            tag, extensions_start, extensions_end = _tlv(der, start, pos)
            if tag != _SEQUENCE:
                raise _DerError
            return extensions_start, extensions_end
    return None


def _issuer_walked(der: bytes) -> str | None:
    """The issuer, reading only DER headers: stops at the first 1.8 that holds a non-empty issuer."""
    region = _extensions_region(der)
    if region is None:
        return None
    pos, end = region
    v1 = None
    while pos < end:
        tag, extension_start, pos = _tlv(der, pos, end)
        if tag != _SEQUENCE:
            raise _DerError
        # An Extension starts with its OID TLV; both issuer OIDs are short enough for a one-byte length.
        value_start = extension_start + len(_ISSUER_V2_TLV)
        oid_tlv = der[extension_start:value_start]
        if oid_tlv == _ISSUER_V2_TLV:
            issuer = _issuer(None, _extension_value(der, value_start, pos), strict=False)
            if issuer:
                return issuer
        elif oid_tlv == _ISSUER_V1_TLV and v1 is None:
            v1 = _extension_value(der, value_start, pos)
    return _issuer(v1, None, strict=False)


def _extension_value(der: bytes, pos: int, end: int) -> bytes:
    """The extnValue after an Extension's OID: skip `critical` if present, unwrap the OCTET STRING."""
    tag, start, value_end = _tlv(der, pos, end)
    if tag == _BOOLEAN:
        tag, start, value_end = _tlv(der, value_end, end)
    if tag != _OCTET_STRING or value_end != end:
        raise _DerError
    return der[start:value_end]


def _issuer_values_parsed(der: bytes) -> tuple[bytes | None, bytes | None]:
    """The same through a full X.509 parse; (None, None) when that fails."""
    try:
        extensions = x509.load_der_x509_certificate(der).extensions
    except _X509_ERRORS:
        return None, None
    raw = _raw_fulcio_extensions(extensions)
    return raw.get(ISSUER_V1), raw.get(ISSUER_V2)


def may_claim_issuer(der: bytes, issuers: Iterable[bytes]) -> bool:
    """Whether a certificate may claim one of `issuers` (UTF-8): False only when none of them occurs
    in its bytes, which costs a byte search per issuer and no parsing.

    Never a false negative against `certificate_issuer` (nor the full parse): the issuer it returns
    is the whole content of extension 1.8 (a DER UTF8String) or 1.1 (raw bytes), decoded as strict
    UTF-8. In DER (definite lengths, primitive strings: cryptography parses nothing else) that
    content is contiguous in the certificate, and strict UTF-8 decoding round-trips, so the issuer's
    UTF-8 bytes are a substring of the DER. A hit only means "look closer": a SAN or another
    extension may hold the same bytes.
    """
    for issuer in issuers:  # not any(): its generator costs more than the search, on every certificate
        if issuer in der:
            return True
    return False


def certificate_issuer(der: bytes) -> str | None:
    """The OIDC issuer a certificate claims (1.8, else 1.1), without a full X.509 parse.

    This runs on every certificate of every entry: a certificate without the Fulcio OID arc
    anywhere in its bytes has no Fulcio extension (DER is exact), so it costs one `in`. Otherwise
    only the DER headers down to the extensions are read; anything unexpected falls back to
    a full parse.
    """
    if _FULCIO_PREFIX_DER not in der:
        return None
    try:
        return _issuer_walked(der)
    except _DerError:
        return _issuer(*_issuer_values_parsed(der), strict=False)


def _issuer(v1: bytes | None, v2: bytes | None, *, strict: bool) -> str | None:
    """1.8 when it holds a non-empty UTF8String, else 1.1. `strict`: a malformed 1.8 raises."""
    if v2 is not None:
        try:
            issuer = decode_utf8_string(v2)
        except CertificateError:
            if strict:
                raise
            issuer = ""
        if issuer:
            return issuer
    if v1:
        try:
            return v1.decode("utf-8")
        except UnicodeDecodeError:
            if strict:
                raise CertificateError("bad_extension", "issuer_v1 is not UTF-8") from None
    return None


def decode_utf8_string(value: bytes) -> str:
    """A whole DER UTF8String (tag 0x0C, definite length) -> str."""
    try:
        tag, start, end = _tlv(value, 0, len(value))
    except _DerError:
        raise CertificateError("bad_extension", "not a DER UTF8String") from None
    if tag != _UTF8_STRING or end != len(value):
        raise CertificateError("bad_extension", "not a DER UTF8String")
    try:
        return value[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateError("bad_extension", "UTF8String is not UTF-8") from None


# -- the full parse --------------------------------------------------------------------------------


def _raw_fulcio_extensions(extensions: x509.Extensions) -> dict[int, bytes]:
    raw = {}
    for extension in extensions:
        number = _EXTENSION_NUMBERS.get(extension.oid.dotted_string)
        if number is not None and isinstance(extension.value, x509.UnrecognizedExtension):
            raw[number] = extension.value.value
    return raw


def _extension_text(number: int, value: bytes) -> str:
    if number in RAW_EXTENSIONS:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise CertificateError("bad_extension", f"{EXTENSION_NAMES[number]} is not UTF-8") from None
    return decode_utf8_string(value)


def _other_name_text(name: x509.OtherName) -> str:
    try:
        return decode_utf8_string(name.value)
    except CertificateError:
        raise CertificateError("bad_san", "the username SAN is not a UTF8String") from None


def _san_identity(extensions: x509.Extensions) -> tuple[str | None, str | None]:
    """(identity, kind) from the first URI, email or Fulcio username otherName of the SAN."""
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None, None
    for name in names:
        if isinstance(name, x509.UniformResourceIdentifier):
            return name.value, "uri"
        if isinstance(name, x509.RFC822Name):
            return name.value, "email"
        if isinstance(name, x509.OtherName) and name.type_id == USERNAME_SAN_OID:
            return _other_name_text(name), "othername"
    return None, None


def parse_fulcio_certificate(der: bytes) -> FulcioCertificate:
    """Parse a (possibly hostile) DER certificate; raises CertificateError only."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions
        identity, san_kind = _san_identity(extensions)
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except _X509_ERRORS as exc:
        raise CertificateError("bad_certificate", str(exc)[:160]) from None
    raw = _raw_fulcio_extensions(extensions)
    return FulcioCertificate(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        issuer=_issuer(raw.get(ISSUER_V1), raw.get(ISSUER_V2), strict=True),
        identity=identity,
        san_kind=san_kind,
        not_before=not_before,
        not_after=not_after,
        extensions={EXTENSION_NAMES[n]: _extension_text(n, value) for n, value in sorted(raw.items())},
        serial=certificate.serial_number,
    )


# -- chain verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Authority:
    validity: Validity
    chain_der: tuple[bytes, ...]  # intermediates first, root last


def _require_code_signing(_policy: Policy, _certificate: x509.Certificate, usage: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise ValueError("the certificate is not for code signing")


@functools.cache
def _extension_policies(precertificates: bool) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """Web PKI defaults, except the EKU: Fulcio leaves must be code-signing, CAs may carry any.

    A precertificate (what Fulcio logs in CT) is a leaf with the critical poison extension; the
    precertificate policy requires it, the default one refuses it (it is no signing certificate).
    """
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().require_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_code_signing
    )
    if precertificates:
        ee_policy = ee_policy.require_present(x509.PrecertPoison, Criticality.CRITICAL, None)
    return ca_policy, ee_policy


class ChainVerifier:
    """Does a certificate chain to a Fulcio CA of the trust root valid at its notBefore, and which CA signed it?

    The chain is verified at notBefore (Fulcio leaves live ten minutes) and the leaf must carry
    the code-signing EKU. With `precertificates`, the leaves are precertificates (CT precert
    entries) instead of certificates. Results are cached by certificate hash; trust stores by the
    set of authorities valid at a moment. Picklable (holds DER only), so it can go to worker processes.
    """

    def __init__(self, trust_root: TrustRoot, cache_size: int = 4096, *, precertificates: bool = False):
        self._authorities = tuple(
            _Authority(ca.validity, tuple(cert.public_bytes(Encoding.DER) for cert in ca.certificates))
            for ca in trust_root.fulcio
        )
        self._cache_size = cache_size
        self._precertificates = precertificates
        self._clear_caches()

    def __getstate__(self) -> dict[str, object]:
        return {
            "authorities": self._authorities,
            "cache_size": self._cache_size,
            "precertificates": self._precertificates,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self._authorities = state["authorities"]  # type: ignore[assignment]
        self._cache_size = state["cache_size"]  # type: ignore[assignment]
        self._precertificates = state["precertificates"]  # type: ignore[assignment]
        self._clear_caches()

    def _clear_caches(self) -> None:
        self._results: LruCache[str, bytes] = LruCache(self._cache_size)  # b"" when it does not chain
        self._stores: dict[tuple[int, ...], Store] = {}

    def verify(self, cert: FulcioCertificate) -> bool:
        return self.issuer_key_hash(cert) is not None

    def issuer_key_hash(self, cert: FulcioCertificate) -> bytes | None:
        """SHA-256 of the SubjectPublicKeyInfo of the trust root's CA certificate that signed `cert`
        (CT's issuer_key_hash), or None when `cert` does not chain."""
        cached = self._results.get(cert.sha256)
        if cached is None:
            cached = self._results.put(cert.sha256, self._verify_uncached(cert) or b"")
        return cached or None

    def _verify_uncached(self, cert: FulcioCertificate) -> bytes | None:
        store = self._store_at(cert.not_before)
        if store is None:
            return None
        ca_policy, ee_policy = _extension_policies(self._precertificates)
        verifier = (
            PolicyBuilder()
            .store(store)
            .time(cert.not_before)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(x509.load_der_x509_certificate(cert.der), []).chain
        except (VerificationError, *_X509_ERRORS):
            return None
        if len(chain) < 2:  # a trust anchor itself: no CA signed it
            return None
        spki = chain[1].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(spki).digest()

    def _store_at(self, moment: datetime) -> Store | None:
        """Every certificate of the authorities valid at `moment`, as trust anchors.

        The trust root pins intermediates as firmly as roots, so (as sigstore-python does) they
        anchor chains too: a Fulcio leaf then costs one signature check instead of two.
        """
        key = tuple(i for i, ca in enumerate(self._authorities) if ca.validity.contains(moment))
        if not key:
            return None
        if key not in self._stores:
            chains = (self._authorities[i].chain_der for i in key)
            self._stores[key] = Store([x509.load_der_x509_certificate(der) for chain in chains for der in chain])
        return self._stores[key]
