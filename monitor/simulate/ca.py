"""A Fulcio-like local certificate authority: a root, an intermediate and short-lived leaf certificates.

Leaves look like Fulcio's: 10-minute validity, an empty subject, the identity in a critical SAN, and
the Fulcio extensions under OID 1.3.6.1.4.1.57264.1.N encoded as Fulcio does (N 1..6 raw bytes,
N >= 8 DER UTF8String). EC P-256 everywhere, and leaves are DER-encoded here directly (exactly as
cryptography's CertificateBuilder encodes them, which the tests check), so issuing one costs about
one signature.

Given a CT log (`ct`), the CA does what Fulcio does: it signs a precertificate (the leaf's TBS plus
the critical poison extension, last), logs it, and issues the certificate with the log's SCT in an
SCT list extension in place of the poison: removing either extension gives the same TBS, the one
the CT leaf holds. That costs two more signatures (the precertificate's and the log's).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from hashlib import sha256
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from monitor.contract import CODEFRESH_ISSUER

FULCIO_OID_PREFIX = "1.3.6.1.4.1.57264.1"
RAW_EXTENSIONS = range(1, 7)
ISSUER_V1 = 1
ISSUER_V2 = 8
USERNAME_SAN = 7
LEAF_VALIDITY = timedelta(minutes=10)
CA_VALIDITY = timedelta(days=3650)
BACKDATE = timedelta(days=1)
DER_UTF8_STRING_TAG = 0x0C
DER_X509_V3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
DER_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")  # AlgorithmIdentifier, no parameters
DER_EMPTY_NAME = bytes.fromhex("3000")
DER_TRUE = bytes.fromhex("0101ff")
SAN_URI_TAG, SAN_EMAIL_TAG = 0x86, 0x81  # GeneralName [6] uniformResourceIdentifier, [1] rfc822Name
CT_POISON_OID = "1.3.6.1.4.1.11129.2.4.3"
CT_SCT_LIST_OID = "1.3.6.1.4.1.11129.2.4.2"
DER_NULL = bytes.fromhex("0500")

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class CertIdentity:
    """What a leaf certificate asserts: the OIDC issuer, the SAN, and Fulcio extensions by N.

    The issuer is always written as both 1.1 and 1.8, so `extensions` must not hold 1, 7 or 8.
    """

    issuer: str
    san_uri: str | None = None
    san_email: str | None = None
    extensions: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IssuedCert:
    certificate: x509.Certificate
    der: bytes
    pem: bytes
    private_key: ec.EllipticCurvePrivateKey
    precertificate: bytes | None = None  # the precertificate DER, when the certificate was logged in CT


@dataclass(frozen=True)
class Precertificate:
    """A precertificate DER, and the TBS a CT log's leaf holds for it (the TBS without the poison)."""

    der: bytes
    leaf_tbs: bytes


class PrecertificateLog(Protocol):
    """A CT log the CA submits precertificates to; it answers with the serialized SCT."""

    def log_precertificate(self, precertificate: Precertificate, issuer_key_hash: bytes) -> bytes: ...


@cache
def fulcio_oid(n: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.{n}")


def der_utf8_string(value: str) -> bytes:
    """DER encoding of an ASN.1 UTF8String: tag 0x0C, definite length, the UTF-8 bytes."""
    return der_tlv(DER_UTF8_STRING_TAG, value.encode())


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_integer(value: int) -> bytes:
    """A non-negative INTEGER: minimal big-endian octets, a leading zero when the top bit is set."""
    return der_tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_time(moment: datetime) -> bytes:
    """RFC 5280 Time: UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds, UTC."""
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    if 1950 <= moment.year < 2050:
        return der_tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return der_tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


@cache
def der_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    content = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        septets = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            septets.append(0x80 | (arc & 0x7F))
        content += bytes(reversed(septets))
    return der_tlv(0x06, bytes(content))


def der_extension(oid: str, value: bytes, *, critical: bool = False) -> bytes:
    """An Extension: extnID, critical only when TRUE (DER omits a default), extnValue."""
    return der_tlv(0x30, der_oid(oid) + (DER_TRUE if critical else b"") + der_tlv(0x04, value))


def der_extension_of(value: x509.ExtensionType, *, critical: bool = False) -> bytes:
    return der_extension(value.oid.dotted_string, value.public_bytes(), critical=critical)


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def fulcio_extension_value(n: int, value: str) -> bytes:
    """Fulcio's encoding of extension 1.N: raw bytes for N 1..6, a DER UTF8String from N 8 on."""
    return value.encode() if n in RAW_EXTENSIONS else der_utf8_string(value)


def fulcio_extension_values(identity: CertIdentity) -> list[tuple[int, bytes]]:
    """The issuer as 1.1 and 1.8, then the identity's extensions in OID order; empty values omitted."""
    reserved = {ISSUER_V1, USERNAME_SAN, ISSUER_V2} & set(identity.extensions)
    if reserved:
        raise ValueError(f"extensions {sorted(reserved)} are written by the CA, not by the identity")
    values = {ISSUER_V1: identity.issuer, ISSUER_V2: identity.issuer, **identity.extensions}
    return [(n, fulcio_extension_value(n, values[n])) for n in sorted(values) if values[n]]


def fulcio_extensions(identity: CertIdentity) -> list[x509.UnrecognizedExtension]:
    """`fulcio_extension_values` as cryptography extensions."""
    return [x509.UnrecognizedExtension(fulcio_oid(n), value) for n, value in fulcio_extension_values(identity)]


def subject_alternative_name_der(identity: CertIdentity) -> bytes:
    """The SAN extension's value: GeneralNames with the URI, then the email (both IA5, so ASCII)."""
    names = b""
    if identity.san_uri:
        names += der_tlv(SAN_URI_TAG, identity.san_uri.encode("ascii"))
    if identity.san_email:
        names += der_tlv(SAN_EMAIL_TAG, identity.san_email.encode("ascii"))
    if not names:
        raise ValueError("a certificate identity needs a SAN URI or email")
    return der_tlv(0x30, names)


def subject_alternative_name(identity: CertIdentity) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    if identity.san_uri:
        names.append(x509.UniformResourceIdentifier(identity.san_uri))
    if identity.san_email:
        names.append(x509.RFC822Name(identity.san_email))
    if not names:
        raise ValueError("a certificate identity needs a SAN URI or email")
    return x509.SubjectAlternativeName(names)


def extension(value: x509.ExtensionType, *, critical: bool = False) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def new_p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def pem_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def pem_of_der(der: bytes) -> bytes:
    """The PEM `CERTIFICATE` of DER bytes, as cryptography writes it (64-character lines)."""
    text = base64.b64encode(der)
    lines = b"\n".join(text[start : start + 64] for start in range(0, len(text), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


# The last leaf key's SubjectPublicKeyInfo and SubjectKeyIdentifier extension (populate reuses one key).
_leaf_key_parts: dict[int, tuple[ec.EllipticCurvePrivateKey, bytes, bytes]] = {}


def leaf_key_parts(key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    cached = _leaf_key_parts.get(id(key))
    if cached is None or cached[0] is not key:
        public_key = key.public_key()
        spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        cached = (key, spki, der_extension_of(x509.SubjectKeyIdentifier.from_public_key(public_key)))
        _leaf_key_parts.clear()
        _leaf_key_parts[id(key)] = cached
    return cached[1], cached[2]


def issued(certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> IssuedCert:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return IssuedCert(certificate=certificate, der=der, pem=pem_of_der(der), private_key=private_key)


def ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate (CA:TRUE, keyCertSign), valid from a day ago for ten years."""
    start = utc_now() - BACKDATE
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage(digital_signature=False, key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def key_usage(*, digital_signature: bool, key_cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def organization_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekorwatch"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


LEAF_KEY_USAGE = key_usage(digital_signature=True, key_cert_sign=False)
CODE_SIGNING = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
LEAF_EXTENSIONS_HEAD = der_extension_of(LEAF_KEY_USAGE, critical=True) + der_extension_of(CODE_SIGNING)
SAN_OID = x509.SubjectAlternativeName.oid.dotted_string
DER_POISON_EXTENSION = der_extension(CT_POISON_OID, DER_NULL, critical=True)


def sct_list_extension(sct: bytes) -> bytes:
    """The SCT list extension holding one serialized SCT: OCTET STRING { u16 list length ‖ u16 length ‖ SCT }."""
    entry = len(sct).to_bytes(2, "big") + sct
    return der_extension(CT_SCT_LIST_OID, der_tlv(0x04, len(entry).to_bytes(2, "big") + entry))


@dataclass(frozen=True)
class LocalCA:
    """A root and an intermediate; the intermediate issues Fulcio-like leaves."""

    name: str
    root_cert: x509.Certificate
    intermediate_cert: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, name: str = "rekorwatch-sim") -> LocalCA:
        root_key, intermediate_key = new_p256_key(), new_p256_key()
        root_name = organization_name(name)
        intermediate_name = organization_name(f"{name}-intermediate")
        root = ca_certificate(root_name, root_key, root_name, root_key, path_length=None)
        intermediate = ca_certificate(intermediate_name, intermediate_key, root_name, root_key, path_length=0)
        return cls(name, root, intermediate, intermediate_key)

    def to_pem(self) -> bytes:
        """Root, intermediate and the intermediate's key as PEM, so another process can issue leaves."""
        key = self.intermediate_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return pem_of(self.root_cert) + pem_of(self.intermediate_cert) + key

    @classmethod
    def from_pem(cls, pem: bytes) -> LocalCA:
        """The CA that `to_pem` wrote."""
        root, intermediate = x509.load_pem_x509_certificates(pem)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        name = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return cls(str(name), root, intermediate, key)

    def chain_der(self) -> list[bytes]:
        """The CA certificates, intermediate first then root (a trusted_root certChain's order)."""
        return [
            certificate.public_bytes(serialization.Encoding.DER)
            for certificate in (self.intermediate_cert, self.root_cert)
        ]

    def issue(
        self,
        identity: CertIdentity,
        *,
        not_before: datetime | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        ct: PrecertificateLog | None = None,
    ) -> IssuedCert:
        """A Fulcio-like leaf for `identity`; pass `key` to reuse one leaf key across many certificates.

        Extensions: key usage (critical), code signing, subject and authority key ids, the SAN
        (critical), then the Fulcio ones. Encoded here; what CertificateBuilder would encode. With
        `ct`, the precertificate is logged there first and the certificate embeds the log's SCT.
        """
        leaf_key = key or new_p256_key()
        head, extensions = self._leaf_parts(identity, not_before or utc_now(), leaf_key)
        precertificate = None
        if ct is not None:
            precertificate = self._precertificate(head, extensions)
            extensions += sct_list_extension(ct.log_precertificate(precertificate, self.issuer_key_hash))
        der = self._signed(_tbs(head, extensions))
        return IssuedCert(
            x509.load_der_x509_certificate(der),
            der,
            pem_of_der(der),
            leaf_key,
            None if precertificate is None else precertificate.der,
        )

    def precertificate(
        self, identity: CertIdentity, *, not_before: datetime | None = None, key: ec.EllipticCurvePrivateKey
    ) -> Precertificate:
        """Only the precertificate of a leaf for `identity` (one signature), as a CT log receives it."""
        return self._precertificate(*self._leaf_parts(identity, not_before or utc_now(), key))

    def _leaf_parts(
        self, identity: CertIdentity, start: datetime, key: ec.EllipticCurvePrivateKey
    ) -> tuple[bytes, bytes]:
        """The TBS fields before the extensions, and the extensions, of a leaf."""
        spki, subject_key_identifier = leaf_key_parts(key)
        extensions = b"".join(
            [
                LEAF_EXTENSIONS_HEAD,
                subject_key_identifier,
                self.authority_key_identifier_der,
                der_extension(SAN_OID, subject_alternative_name_der(identity), critical=True),
                *(der_extension(f"{FULCIO_OID_PREFIX}.{n}", value) for n, value in fulcio_extension_values(identity)),
            ]
        )
        head = (
            DER_X509_V3
            + der_integer(x509.random_serial_number())
            + DER_ECDSA_WITH_SHA256
            + self.issuer_name_der
            + der_tlv(0x30, der_time(start) + der_time(start + LEAF_VALIDITY))
            + DER_EMPTY_NAME
            + spki
        )
        return head, extensions

    def _precertificate(self, head: bytes, extensions: bytes) -> Precertificate:
        return Precertificate(self._signed(_tbs(head, extensions + DER_POISON_EXTENSION)), _tbs(head, extensions))

    def _signed(self, tbs: bytes) -> bytes:
        signature = self.intermediate_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        return der_tlv(0x30, tbs + DER_ECDSA_WITH_SHA256 + der_tlv(0x03, b"\x00" + signature))

    @cached_property
    def issuer_key_hash(self) -> bytes:
        """SHA-256 of the intermediate's SubjectPublicKeyInfo: CT's issuer_key_hash for its leaves."""
        public_key = self.intermediate_cert.public_key()
        return sha256(
            public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).digest()

    @cached_property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        ski = self.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    @cached_property
    def authority_key_identifier_der(self) -> bytes:
        return der_extension_of(self.authority_key_identifier)

    @cached_property
    def issuer_name_der(self) -> bytes:
        return self.intermediate_cert.subject.public_bytes()


def _tbs(head: bytes, extensions: bytes) -> bytes:
    return der_tlv(0x30, head + der_tlv(0xA3, der_tlv(0x30, extensions)))


def self_signed_test_certificate() -> IssuedCert:
    """A self-signed `CN=test` code-signing certificate like docker/attest's fixture: chains to nothing."""
    key = new_p256_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    start = utc_now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .add_extension(LEAF_KEY_USAGE, critical=True)
        .add_extension(CODE_SIGNING, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return issued(certificate, key)


def codefresh_identity(
    *,
    account_id: str,
    account_name: str,
    pipeline_id: str,
    pipeline_name: str,
    workflow_id: str,
    platform_url: str = "https://g.codefresh.io",
    scm_repo_url: str = "",
    scm_ref: str = "",
    runner_environment: str = "",
    build_config_pipeline_id: str | None = None,
) -> CertIdentity:
    """Fulcio's Codefresh mapping (FORMATS.md §5).

    `build_config_pipeline_id` forges a 1.18 BuildConfigURI that disagrees with the SAN's pipeline id.
    """
    build_url = f"{platform_url}/build/{workflow_id}"
    config_pipeline_id = build_config_pipeline_id or pipeline_id
    extensions = {
        9: build_url,
        11: runner_environment,
        12: scm_repo_url,
        14: scm_ref,
        18: f"{platform_url}/api/pipelines/{config_pipeline_id}",
        21: build_url,
        24: f"account:{account_id}:pipeline:{pipeline_id}",
    }
    return CertIdentity(
        issuer=CODEFRESH_ISSUER,
        san_uri=f"{platform_url}/{account_name}/{pipeline_name}:{account_id}/{pipeline_id}",
        extensions={n: value for n, value in extensions.items() if value},
    )


def github_identity(
    *,
    repository: str = "myorg/app",
    workflow_path: str = ".github/workflows/release.yml",
    ref: str = "refs/heads/main",
    sha: str = "0" * 40,
    trigger: str = "push",
    run_id: str = "1",
) -> CertIdentity:
    """Fulcio's GitHub Actions mapping: the deprecated raw 1.2-1.6 and the 1.9-1.22 set."""
    repository_url = f"https://github.com/{repository}"
    workflow_ref = f"{repository_url}/{workflow_path}@{ref}"
    owner = repository.split("/", 1)[0]
    return CertIdentity(
        issuer=GITHUB_ISSUER,
        san_uri=workflow_ref,
        extensions={
            2: trigger,
            3: sha,
            4: workflow_path.rsplit("/", 1)[-1].removesuffix(".yml").removesuffix(".yaml"),
            5: repository,
            6: ref,
            9: workflow_ref,
            10: sha,
            11: "github-hosted",
            12: repository_url,
            13: sha,
            14: ref,
            16: f"https://github.com/{owner}",
            18: workflow_ref,
            19: sha,
            20: trigger,
            21: f"{repository_url}/actions/runs/{run_id}/attempts/1",
            22: "public",
            24: f"repo:{repository}:ref:{ref}",
        },
    )


def email_identity(email: str, issuer: str = GOOGLE_ISSUER) -> CertIdentity:
    return CertIdentity(issuer=issuer, san_email=email)
