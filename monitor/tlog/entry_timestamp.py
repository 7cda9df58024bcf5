"""Rekor v1 signed entry timestamps (SETs): the log's promise of an entry's integratedTime.

The signed payload is the JCS (RFC 8785) canonical JSON of {body, integratedTime, logID, logIndex}
(body base64, logID hex, logIndex global), signed ECDSA-SHA256 by the log key (FORMATS.md §1).
"""

from __future__ import annotations

import base64

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


def signed_entry_timestamp_payload(body: bytes, integrated_time: int, log_id: bytes, log_index: int) -> bytes:
    return rfc8785.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "integratedTime": integrated_time,
            "logID": log_id.hex(),
            "logIndex": log_index,
        }
    )


def verify_signed_entry_timestamp(
    public_key: PublicKeyTypes, signature: bytes, *, body: bytes, integrated_time: int, log_id: bytes, log_index: int
) -> bool:
    """True when `signature` is the log's ECDSA signature over the entry's SET payload."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        payload = signed_entry_timestamp_payload(body, integrated_time, log_id, log_index)
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, rfc8785.CanonicalizationError, ValueError):
        return False
    return True
