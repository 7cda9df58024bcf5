"""Canonical Rekor entry bodies, built as Rekor builds them: JCS (RFC 8785) JSON, as bytes.

The shapes follow the real leaves in fixtures/sigstore (decode a bundle's `canonicalizedBody`).
Every signature is a real ECDSA P-256 / SHA-256 signature made with the given private key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
JCS_EXACT_INTEGERS = 2**53  # RFC 8785 writes numbers as IEEE doubles: integers below this are exact


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """An ASN.1 ECDSA-SHA256 signature."""
    return private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def canonical(entry: dict[str, Any]) -> bytes:
    """The RFC 8785 (JCS) bytes of `entry`.

    For plain JSON (see `jcs_plain`) that is exactly json.dumps with sorted keys, no whitespace and
    no ASCII escaping, which is several times faster than the rfc8785 package; anything else goes
    to rfc8785.
    """
    if jcs_plain(entry):
        return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(entry)


def jcs_plain(value: Any) -> bool:
    """Whether json.dumps spells `value` as RFC 8785 does: ASCII strings (both escape only `"`, `\\`
    and control characters, the same way), ASCII object keys (so code point order is UTF-16 order),
    booleans, null, integers JCS writes exactly, and arrays and objects of those. No floats."""
    kind = type(value)
    if kind is str:
        return value.isascii()
    if kind is int:
        return -JCS_EXACT_INTEGERS < value < JCS_EXACT_INTEGERS
    if kind is dict:
        return all(type(key) is str and key.isascii() and jcs_plain(item) for key, item in value.items())
    if kind is list:
        return all(jcs_plain(item) for item in value)
    return kind is bool or value is None


def public_key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM `PUBLIC KEY` of a key, for entries signed with a plain key instead of a certificate."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pre_authentication_encoding(payload_type: str, payload: bytes) -> bytes:
    """DSSE's PAE: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def hashedrekord_body(cert_pem_or_key_pem: bytes, artifact: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """hashedrekord v0.0.1: the artifact's SHA-256, a signature over the artifact, and the b64 PEM."""
    return canonical(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": sha256_hex(artifact)}},
                "signature": {
                    "content": b64(sign(private_key, artifact)),
                    "publicKey": {"content": b64(cert_pem_or_key_pem)},
                },
            },
        }
    )


def dsse_envelope(payload_type: str, payload: bytes, signature: bytes) -> dict[str, Any]:
    return {
        "payload": b64(payload),
        "payloadType": payload_type,
        "signatures": [{"sig": b64(signature)}],
    }


def dsse_body(
    cert_pem_or_key_pem: bytes,
    payload: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> bytes:
    """dsse v0.0.1: envelope and payload hashes, and one signature over the PAE with its b64 PEM verifier."""
    signature = sign(private_key, pre_authentication_encoding(payload_type, payload))
    envelope = canonical(dsse_envelope(payload_type, payload, signature))
    return canonical(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": sha256_hex(envelope)},
                "payloadHash": {"algorithm": "sha256", "value": sha256_hex(payload)},
                "signatures": [{"signature": b64(signature), "verifier": b64(cert_pem_or_key_pem)}],
            },
        }
    )


def intoto_v002_body(
    key_pem: bytes,
    payload: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> bytes:
    """intoto v0.0.2: the envelope without its payload; `sig` is base64 twice, as Rekor stores it."""
    signature = sign(private_key, pre_authentication_encoding(payload_type, payload))
    envelope = canonical(dsse_envelope(payload_type, payload, signature))
    return canonical(
        {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {
                        "payloadType": payload_type,
                        "signatures": [{"publicKey": b64(key_pem), "sig": b64(b64(signature).encode())}],
                    },
                    "hash": {"algorithm": "sha256", "value": sha256_hex(envelope)},
                    "payloadHash": {"algorithm": "sha256", "value": sha256_hex(payload)},
                }
            },
        }
    )


def hashedrekord_v002_body(cert_der: bytes | None, artifact: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Rekor v2 hashedrekord v0.0.2: base64 digest; the verifier is the DER certificate, or with
    `cert_der=None` the key's DER SPKI (a plain-key signing)."""
    verifier: dict[str, object] = {"keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    if cert_der is None:
        spki = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        verifier["publicKey"] = {"rawBytes": b64(spki)}
    else:
        verifier["x509Certificate"] = {"rawBytes": b64(cert_der)}
    return canonical(
        {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(artifact).digest())},
                    "signature": {"content": b64(sign(private_key, artifact)), "verifier": verifier},
                }
            },
        }
    )
